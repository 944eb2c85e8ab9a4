"""The JIT setting of the JVMs the tests start.

Every JVM the tests start (sessions, spark-submit, local-cluster executors, standalone workers)
is young and short-lived: on this 2-core machine the C2 compiler spent most of a core on
Spark's scheduler code beside the tasks, code that rarely paid back before the JVM exited. C1
only: a local-cluster block-manager test and a spark-submit job took 126 s -> 97 s together.
MLlib is the exception: its BLAS runs through the JDK's Vector API, which only C2 turns into
SIMD code (MLlib's MLP, 3 L-BFGS iterations on 4k rows: 142 s under C1, 15 s with C2), so
subprocesses that train MLlib models get `mllib_env()`. `make run` and user sessions keep the
JVM's default.
"""
import os

C1_ONLY = "-XX:TieredStopAtLevel=1"


def use_c1_only():
    os.environ.setdefault("JDK_JAVA_OPTIONS", C1_ONLY)


def mllib_env():
    """os.environ for a subprocess whose JVM runs MLlib's numerics: the JVM's default JIT."""
    return {k: v for k, v in os.environ.items() if not (k == "JDK_JAVA_OPTIONS" and v == C1_ONLY)}
