"""Use the SparkSession the user has, or start an embedded local one.

No config files and no global engine: every entry point calls get_or_create_session()
and gets the active session (spark-submit, pyspark shell, Jupyter) or, when there is
none, an embedded `local[*]` session bound to loopback.
"""
import os
import sys

# Settings for a session we start ourselves. A user's own session is left as it is.
LOCAL_DEFAULTS = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    # Kernels are single-threaded per task (one replica per core); numba's default
    # would start one thread per core in every Python worker and oversubscribe.
    "spark.executorEnv.NUMBA_NUM_THREADS": "1",
    "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
    "spark.executorEnv.OMP_NUM_THREADS": "1",
    # A barrier stage that cannot get its slots fails fast instead of after minutes.
    "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "1s",
    "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures": "3",
}


def get_or_create_session(master=None, app_name="bigdl_py", conf=None):
    """The active SparkSession, or a new embedded one (`local[*]` unless `master` is given)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    builder = SparkSession.builder.appName(app_name).master(master or "local[*]")
    for key, value in {**LOCAL_DEFAULTS, **(conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
