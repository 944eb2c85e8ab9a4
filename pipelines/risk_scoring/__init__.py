"""Risk-scoring networks on real credit data, trained and scored on Spark.

Main entry: `run_risk_pipeline(spark, dataset="credit_data", output_dir=..., quick=False)`;
command line: `python -m bigdl_py.pipelines.risk_scoring.job` (see job.py).
"""


def __getattr__(name):
    # Lazy: the data/metrics modules stay importable without loading Spark ML and the engine.
    if name == "run_risk_pipeline":
        from bigdl_py.pipelines.risk_scoring.pipeline import run_risk_pipeline
        return run_risk_pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
