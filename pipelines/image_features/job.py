"""Image feature extraction job: PNG/JPEG files -> Parquet of CNN features and top-k classes.

    spark-submit pipelines/image_features/job.py --input DIR --output DIR --model efficientnet-lite0
    python -m bigdl_py.pipelines.image_features.job --input DIR --output DIR [--batch-size N] [--on-bad-image error]

Prints the summary JSON (also written to OUTPUT/summary.json); progress goes to stderr.
Exit status 2 with the reason on stderr for bad arguments or (--on-bad-image error) a bad file.
"""
import argparse
import json
import sys


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="folder or Hadoop URI with images (read recursively)")
    ap.add_argument("--output", required=True, help="local output folder")
    ap.add_argument("--model", default="efficientnet-lite0", help="efficientnet-lite0 or a saved model directory")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--resize", choices=["crop", "plain"], default="crop")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--on-bad-image", choices=["skip", "error"], default="skip")
    ap.add_argument("--master", default=None, help="Spark master (default: spark-submit's, else local[*])")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on the driver")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from bigdl_py.pipelines.image_features.extract import extract_features
    from bigdl_py.spark_session import get_or_create_session

    spark = get_or_create_session(master=args.master, app_name="bigdl_py-image-features")
    try:
        summary = extract_features(spark, args.input, args.output, model=args.model, batch_size=args.batch_size,
                                   image_size=args.image_size, resize=args.resize, top_k=args.top_k,
                                   on_bad_image=args.on_bad_image, progress=not args.no_progress)
    except ValueError as e:
        print(f"image features: {e}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
