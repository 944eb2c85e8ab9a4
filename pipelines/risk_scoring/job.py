"""Risk-scoring job: train and compare (default), or batch-score Parquet with a saved model.

    spark-submit pipelines/risk_scoring/job.py --dataset credit_data --output DIR
    python -m bigdl_py.pipelines.risk_scoring.job --dataset loans --output DIR [--quick]
    python -m bigdl_py.pipelines.risk_scoring.job score --model DIR/model --input IN.parquet --output OUT.parquet
    python -m bigdl_py.pipelines.risk_scoring.job cv --dataset loans --folds 5 --repeats 2 --output DIR

Training prints the metrics table (network vs MLlib baselines vs rules) and a JSON
summary; scoring prints the row counts per bad-row issue (policy in scoring.py).
"""
import argparse
import json
import sys


def _parser():
    p = argparse.ArgumentParser(prog="risk_scoring.job", description=__doc__.split("\n")[0])
    p.add_argument("command", nargs="?", choices=("train", "score", "cv"), default="train")
    p.add_argument("--dataset", choices=("credit_data", "loans"), default="credit_data")
    p.add_argument("--output", required=True, help="train: output folder; score: output Parquet path")
    p.add_argument("--quick", action="store_true", help="few epochs and a small scoring run")
    p.add_argument("--master", default=None, help="Spark master when not under spark-submit (default local[*])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-by", choices=("random", "time"), default="random")
    p.add_argument("--score-rows", type=int, default=None, help="synthetic rows to score after training")
    p.add_argument("--model", help="score: the saved PipelineModel folder (DIR/model)")
    p.add_argument("--input", help="score: Parquet to score")
    p.add_argument("--folds", type=int, default=5, help="cv: folds per repeat (>= 3)")
    p.add_argument("--repeats", type=int, default=1, help="cv: fold assignments (seeds seed, seed+1, ...)")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command == "score" and not (args.model and args.input):
        raise SystemExit("score: --model and --input are required")
    # Imported here so --help works without starting Spark.
    from bigdl_py.spark_session import get_or_create_session

    spark = get_or_create_session(master=args.master, app_name=f"risk_scoring-{args.command}")
    if args.command == "score":
        from pyspark.ml import PipelineModel

        from bigdl_py.pipelines.risk_scoring import scoring

        info = scoring.load_scoring_info(args.model)
        summary = scoring.score_to_parquet(PipelineModel.load(args.model), spark.read.parquet(args.input), info,
                                           args.output)
        print(json.dumps(summary))
        return summary
    if args.command == "cv":
        import os

        from bigdl_py.pipelines.risk_scoring.cross_validation import cross_validate

        os.makedirs(args.output, exist_ok=True)
        summary = cross_validate(spark, args.dataset, args.folds, args.repeats, args.seed, args.quick,
                                 output_path=os.path.join(args.output, "cv.json"))
        print(summary["table"])
        print(json.dumps(dict(targets=summary["targets"], network_minus=summary["network_minus"])))
        return summary
    from bigdl_py.pipelines.risk_scoring.pipeline import run_risk_pipeline

    summary = run_risk_pipeline(spark, args.dataset, args.output, quick=args.quick, seed=args.seed,
                                split_by=args.split_by, score_rows=args.score_rows)
    print(summary["metrics_table"])
    print(json.dumps(dict(targets=summary["targets"], scoring=summary["scoring"], paths=summary["paths"])))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
