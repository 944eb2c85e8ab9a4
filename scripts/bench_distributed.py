"""Distributed training benchmark: LeNet-5 on MNIST in local[2], one epoch.

Prints JSON lines: the Spark floor measured in the same run (`trivial_job_ms`, a
trivial shuffle job), then one line per global batch size with end-to-end samples/s
(epoch wall time), test accuracy, and the mean per-iteration split (compute, sync,
data feed, overhead, bytes through the driver). BigDL 2.4's figures measured on this
machine are printed as anchors (BigDL itself is not run here).

    python scripts/bench_distributed.py [--quick] [--batches 256 1024]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ANCHOR_BIGDL = {"system": "bigdl-2.4 (anchor, measured earlier on this machine)", "samples_s": [1400, 1600],
                "test_accuracy_after_one_epoch": 0.925}


def median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def spark_floor(sc, repeats=9):
    """The latency any iteration built from Spark jobs pays on this machine."""
    trivial = median_ms(lambda: sc.parallelize(range(2), 2).map(lambda v: v).collect(), repeats)
    shuffle = median_ms(lambda: sc.parallelize(range(2), 2).map(lambda v: (v, v)).partitionBy(2).collect(), repeats)
    return trivial, shuffle


def run_case(spark, train_df, test_df, batch, train_rows, partitions, base_lr):
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss, zoo
    from bigdl_py.optim import SGD, EveryEpoch, MaxEpoch, Top1Accuracy, Warmup, linear_scaling_lr

    # Linear scaling from base_lr at batch 256, with gradual warm-up for larger batches.
    lr = linear_scaling_lr(base_lr, batch, base_batch_size=256)
    iterations = -(-train_rows // batch)
    schedule = Warmup(max(1, iterations // 5)) if batch > 256 else None
    opt = DistriOptimizer(zoo.lenet5(seed=0), CrossEntropyLoss(), SGD(momentum=0.9), train_df, batch_size=batch,
                          end_trigger=MaxEpoch(1), learning_rate=lr, schedule=schedule,
                          feature_shape=(28, 28, 1), num_partitions=partitions)
    opt.set_validation(test_df, [Top1Accuracy()], trigger=EveryEpoch())
    t = time.perf_counter()
    opt.optimize()
    wall = time.perf_counter() - t
    steady = opt.metrics[2:] or opt.metrics  # the first iterations load data and compiled kernels

    def mean(key):
        return round(float(np.mean([m[key] for m in steady])), 1)

    return dict(case="lenet5_mnist_one_epoch", batch=batch, lr=round(lr, 4), iterations=len(opt.metrics),
                samples_s=round(train_rows / wall, 1), epoch_wall_s=round(wall, 1),
                test_accuracy=round(opt.history[-1]["Top1Accuracy"], 4), compute_ms=mean("compute_ms"),
                sync_ms=mean("sync_ms"), data_ms=mean("data_ms"), overhead_ms=mean("overhead_ms"),
                wall_ms=mean("wall_ms"), driver_bytes=int(mean("driver_bytes")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12,000 training digits instead of 60,000")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--base-lr", type=float, default=0.0125, help="SGD lr at batch 256, scaled linearly")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from bigdl_py.data.mnist import load_mnist
    from bigdl_py.main import mnist_dataframe
    from bigdl_py.spark_session import get_or_create_session

    spark = get_or_create_session(master="local[2]", app_name="bench_distributed")
    sc = spark.sparkContext
    x, y, x_test, y_test = load_mnist()
    if args.quick:
        x, y = x[:12000], y[:12000]
    partitions = 2
    train_df = mnist_dataframe(spark, x, y, partitions).cache()
    test_df = mnist_dataframe(spark, x_test, y_test, partitions).cache()
    train_df.count(), test_df.count()
    trivial, shuffle = spark_floor(sc)
    print(json.dumps(dict(floor=True, trivial_job_ms=round(trivial, 1), trivial_shuffle_job_ms=round(shuffle, 1),
                          master="local[2]", loadavg=os.getloadavg())), flush=True)
    for batch in args.batches:
        line = run_case(spark, train_df, test_df, batch, len(x), partitions, args.base_lr)
        line["overhead_vs_trivial_job"] = round((line["wall_ms"] - line["compute_ms"]) / trivial, 2)
        print(json.dumps(line), flush=True)
    print(json.dumps(dict(anchor=ANCHOR_BIGDL)), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
