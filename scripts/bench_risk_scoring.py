"""Batch-scoring benchmark of the risk network: synthetic rows generated on the executors,
scored by the saved PipelineModel, written to Parquet with the score.

Prints JSON lines. In the same run it measures Spark's floor for the same job without
the model (generate the same rows and write them to Parquet), so the network's cost
shows as a ratio whatever the machine's load:
    {"case": "floor",   "rows": ..., "rows_s": ..., "peak_executor_rss_mb": ...}
    {"case": "network", "run": "first", "rows": ..., "rows_s": ..., "peak_executor_rss_mb": ..., "floor_ratio": ..., counts}
    {"case": "network", "run": "second", ...}

The network scores the table twice: the first run also pays the session's one-time
start-up (Python workers importing bigdl_py, the JVM compiling the feature stages'
code paths; ~1.4x slower than the second run here), the second is what a scoring
service or the next batch of a job sees.

    scripts/bench_risk_scoring.py [--quick] [--model-dir DIR] [--rows N] [--master local[2]]

--model-dir is a job output folder (model/ and marginals.json); without it a quick
training run makes one first.
"""
import argparse
import json
import os
import tempfile
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="200,000 rows instead of 10,000,000")
    p.add_argument("--rows", type=int, default=None)
    p.add_argument("--partitions", type=int, default=None, help="default: 4 per core")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--dataset", default="credit_data", choices=("credit_data", "loans"))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--work-dir", default=None, help="where the Parquet goes (default: a temp folder)")
    args = p.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from bigdl_py.pipelines.risk_scoring import synthetic
    from bigdl_py.pipelines.risk_scoring.memory import ProcessTreePeak
    from bigdl_py.pipelines.risk_scoring.pipeline import run_risk_pipeline, score_synthetic
    from bigdl_py.spark_session import get_or_create_session

    spark = get_or_create_session(master=args.master, app_name="bench_risk_scoring")
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_risk_scoring-")
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = os.path.join(work, "trained")
        run_risk_pipeline(spark, args.dataset, model_dir, quick=True, score_rows=1000)
    paths = dict(model=os.path.join(model_dir, "model"), marginals=os.path.join(model_dir, "marginals.json"))
    rows = args.rows or (200_000 if args.quick else 10_000_000)
    partitions = args.partitions or 4 * spark.sparkContext.defaultParallelism

    with open(paths["marginals"]) as f:
        marginals = json.load(f)
    floor_out = os.path.join(work, "floor.parquet")
    with ProcessTreePeak(spark) as peak:
        start = time.perf_counter()
        synthetic.generate(spark, marginals, rows, partitions).write.mode("overwrite").parquet(floor_out)
        floor_s = time.perf_counter() - start
    floor = dict(case="floor", rows=rows, partitions=partitions, wall_s=floor_s, rows_s=rows / floor_s,
                 peak_executor_rss_mb=peak.peak_mb)
    print(json.dumps(floor), flush=True)
    for run in ("first", "second"):
        ours = score_synthetic(spark, paths, os.path.join(work, "scored.parquet"), rows, partitions,
                               bad_fraction=0.01)
        print(json.dumps(dict(case="network", run=run, floor_ratio=ours["rows_s"] / floor["rows_s"],
                              target_rows_s=200_000, meets_target=ours["rows_s"] >= 200_000, **ours)), flush=True)


if __name__ == "__main__":
    main()
