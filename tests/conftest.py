"""Shared fixtures: one local Spark session for the whole test run."""
import os
import sys

import pytest

from tests.jvm import use_c1_only

# All Spark traffic stays on loopback; Python workers use this interpreter.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# One thread per kernel: tests run beside Spark workers on 2 cores.
for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")
# The tests' JVMs run C1 only (why, and the MLlib exception: tests/jvm.py).
use_c1_only()


@pytest.fixture(scope="session")
def spark():
    from bigdl_py.spark_session import get_or_create_session

    session = get_or_create_session(master="local[2]", app_name="bigdl_py-tests")
    yield session
    session.stop()
