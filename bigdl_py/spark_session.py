"""Use the SparkSession the user has, or start an embedded local one.

No config files and no global engine: every entry point calls get_or_create_session()
and gets the active session (spark-submit, pyspark shell, Jupyter) or, when there is
none, an embedded `local[*]` session bound to loopback.
"""
import os
import sys

# An embedded local session stays on loopback and quiet.
LOCAL_ONLY = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
}
# Settings for any session we create (an already running session is left as it is).
DEFAULTS = {
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
    """The active SparkSession, or a new one.

    Under spark-submit the master comes from spark-submit; otherwise a new session is
    an embedded `local[*]` one (or `master` when given), bound to loopback.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started this Python
    if master is None and not submitted:
        master = "local[*]"
    builder = SparkSession.builder.appName(app_name)
    settings = dict(DEFAULTS)
    if master is not None:
        builder = builder.master(master)
        if master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            settings.update(LOCAL_ONLY)
    for key, value in {**settings, **(conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
