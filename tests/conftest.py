"""Shared fixtures: one local Spark session for the whole test run."""
import os
import sys

import pytest

# All Spark traffic stays on loopback; Python workers use this interpreter.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# One thread per kernel: tests run beside Spark workers on 2 cores.
for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, "1")
# Every JVM the tests start (sessions, spark-submit, local-cluster executors, standalone workers)
# is young and short-lived: the C2 compiler spends most of a core on Spark's scheduler code while
# tasks run, and its code rarely pays back before the JVM exits. C1 only (measured: a local-cluster
# block-manager test and a spark-submit job, 126 s -> 97 s together). Tests only: `make run` and
# users' sessions keep the JVM's default.
os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")


@pytest.fixture(scope="session")
def spark():
    from bigdl_py.spark_session import get_or_create_session

    session = get_or_create_session(master="local[2]", app_name="bigdl_py-tests")
    yield session
    session.stop()
