"""Peers side by side in local[2]: same model, data, global batch and epochs.

Systems: ours with the `ring` backend, ours with `blockmanager`, TorchDistributor
(torch CPU, DDP over Gloo, local_mode=False, 2 processes) and, for the MLP case,
Spark MLlib's MultilayerPerceptronClassifier (its own sigmoid hidden layers of the
same sizes, L-BFGS: its iterations are full passes, reported as `epochs`).
Cases:
  - mlp: 64-256-128-64-2 on synthetic but learnable tabular rows (2M by default):
    64 standard-normal features, label = the argmax of a fixed random ReLU
    teacher network's two outputs (a non-linear boundary; class balance ~50/50);
  - lenet5: LeNet-5 on MNIST (normalised pixels).
Both ours and torch train with Adam at the same constant lr.

JSON lines, one per (case, system): system, model, samples_s (steady state: training
iterations after the first two), wall_s (end to end: launch, data conversion,
training and the final test pass), test_accuracy, and what was run. A system that
cannot run says so with `skipped` and the reason.

    python scripts/bench_peers.py [--quick] [--cases mlp lenet5] [--mlp-rows 2000000]
"""
import argparse
import inspect
import json
import os
import sys
import tempfile
import time

import numpy as np

from bigdl_py.data.mnist import load_mnist, mnist_dataframe, normalize_mnist

MLP_SIZES = (64, 256, 128, 64, 2)
LR = {"mlp": 0.002, "lenet5": 0.002}
OUR_SYSTEMS = ("ours-ring", "ours-blockmanager")


# ---- data -----------------------------------------------------------------------------
def tabular(rows, seed):
    """Synthetic rows a 64-256-128-64-2 network can learn: labels from a random ReLU teacher."""
    teacher = np.random.default_rng(1234)
    w1 = teacher.normal(size=(64, 32)) / 8
    w2 = teacher.normal(size=(32, 2)) / np.sqrt(32)
    x = np.random.default_rng(seed).normal(size=(rows, 64)).astype(np.float32)
    h = np.maximum(x @ w1, 0)
    h -= h.mean(axis=0)  # centre so both classes are about equally frequent
    return x, (h @ w2).argmax(axis=1).astype(np.int64)


def load_case(case, rows, test_rows):
    """(x, y, x_test, y_test) of a case; rows/test_rows None: all of MNIST."""
    if case == "mlp":
        x, y = tabular(rows, seed=0)
        x_test, y_test = tabular(test_rows, seed=1)
        return x, y, x_test, y_test

    x, y, x_test, y_test = load_mnist()
    return normalize_mnist(x[:rows]), y[:rows], normalize_mnist(x_test[:test_rows]), y_test[:test_rows]


def dataframe(spark, case, x, y, partitions):
    """Tabular rows as 64 numeric columns (what MLlib and a table would have); digits as array<float>."""
    import pandas as pd

    if case == "lenet5":
        return mnist_dataframe(spark, x, y, partitions)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame["label"] = y.astype(np.float64)
    return spark.createDataFrame(frame).repartition(partitions)


def steady_samples_s(records):
    """Samples per second over the iterations after the first two (data load, compile)."""
    steady = records[2:] or records
    return sum(r["samples"] for r in steady) / sum(r["samples"] / r["samples_s"] for r in steady)


# ---- ours -----------------------------------------------------------------------------
def ring_missing():
    """Why the ring backend cannot run here, or None when it can."""
    from bigdl_py.engine.distri import DistriOptimizer

    if "sync" not in inspect.signature(DistriOptimizer.__init__).parameters:
        return "DistriOptimizer has no sync= argument yet (ring backend not merged)"
    return None


def run_ours(spark, case, sync, data, batch, epochs):
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss, zoo
    from bigdl_py.optim import Adam, EveryEpoch, MaxEpoch, Top1Accuracy

    x, y, x_test, y_test = data
    train_df = dataframe(spark, case, x, y, 2).cache()
    test_df = dataframe(spark, case, x_test, y_test, 2).cache()
    train_df.count(), test_df.count()  # data already in Spark: not part of the training wall time
    if case == "mlp":
        model, columns = zoo.mlp(MLP_SIZES, seed=0), dict(features_col=[f"f{i}" for i in range(64)])
    else:
        model, columns = zoo.lenet5(seed=0), dict(feature_shape=(28, 28, 1))
    extra = {} if ring_missing() else {"sync": sync}
    t = time.perf_counter()
    opt = DistriOptimizer(model, CrossEntropyLoss(), Adam(), train_df, batch_size=batch,
                          end_trigger=MaxEpoch(epochs), learning_rate=LR[case], num_partitions=2, **columns, **extra)
    opt.set_validation(test_df, [Top1Accuracy()], trigger=EveryEpoch()).set_progress(False)
    opt.optimize()
    wall = time.perf_counter() - t
    train_df.unpersist(), test_df.unpersist()
    return dict(samples_s=steady_samples_s(opt.history), wall_s=wall,
                test_accuracy=opt.history[-1]["Top1Accuracy"], iterations=len(opt.history))


# ---- TorchDistributor -------------------------------------------------------------------
def torch_train(case, folder, batch, epochs, lr):
    """One DDP process (run by TorchDistributor): train on this rank's shard, rank 0 tests."""
    import time

    import numpy as np
    import torch
    import torch.distributed as dist
    from torch import nn

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    if case == "mlp":
        sizes = [64, 256, 128, 64, 2]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        model = nn.Sequential(*layers)
    else:
        model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84),
                              nn.ReLU(), nn.Linear(84, 10))

    def load(name):
        a = np.load(f"{folder}/{name}.npy", allow_pickle=False)
        return torch.from_numpy(a.transpose(0, 3, 1, 2).copy() if a.ndim == 4 else a)  # NHWC -> NCHW

    x, y = load("x"), load("y")
    n = len(x) // world  # equal shards: DDP needs the same number of steps on every rank
    x, y = x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    local = batch // world
    g = torch.Generator().manual_seed(rank)
    steps, steady_t, steady_n = 0, 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for lo in range(0, len(x), local):
            t = time.perf_counter()
            idx = order[lo:lo + local]
            opt.zero_grad()
            loss_fn(ddp(x[idx]), y[idx]).backward()
            opt.step()
            steps += 1
            if steps > 2:
                steady_t += time.perf_counter() - t
                steady_n += len(idx) * world
    if rank != 0:
        return None
    model.eval()
    x_test, y_test = load("x_test"), load("y_test")
    with torch.no_grad():
        correct = sum(int((model(x_test[i:i + 4096]).argmax(1) == y_test[i:i + 4096]).sum())
                      for i in range(0, len(x_test), 4096))
    return dict(samples_s=steady_n / max(steady_t, 1e-9), test_accuracy=correct / len(x_test), iterations=steps)


def run_torch(spark, case, data, batch, epochs):
    from pyspark.ml.torch.distributor import TorchDistributor

    with tempfile.TemporaryDirectory(prefix="bench_peers_") as folder:
        for name, a in zip(("x", "y", "x_test", "y_test"), data):
            np.save(os.path.join(folder, f"{name}.npy"), a, allow_pickle=False)
        t = time.perf_counter()
        result = TorchDistributor(num_processes=2, local_mode=False, use_gpu=False).run(
            torch_train, case, folder, batch, epochs, LR[case])
        result["wall_s"] = time.perf_counter() - t
    return result


# ---- MLlib ------------------------------------------------------------------------------
def run_mllib(spark, data, max_iter):
    from pyspark.ml.classification import MultilayerPerceptronClassifier
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.feature import VectorAssembler

    x, y, x_test, y_test = data
    train_df = dataframe(spark, "mlp", x, y, 2).cache()
    test_df = dataframe(spark, "mlp", x_test, y_test, 2).cache()
    train_df.count(), test_df.count()
    assemble = VectorAssembler(inputCols=[f"f{i}" for i in range(64)], outputCol="features")
    t = time.perf_counter()
    model = MultilayerPerceptronClassifier(layers=list(MLP_SIZES), maxIter=max_iter, blockSize=1024, seed=0,
                                           solver="l-bfgs").fit(assemble.transform(train_df))
    wall_train = time.perf_counter() - t
    predictions = model.transform(assemble.transform(test_df))
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(predictions)
    wall = time.perf_counter() - t
    iterations = model.summary().totalIterations  # a method on this model class, not a property
    train_df.unpersist(), test_df.unpersist()
    return dict(samples_s=len(x) * iterations / wall_train, wall_s=wall, test_accuracy=accuracy,
                iterations=iterations, epochs=iterations, solver="l-bfgs", hidden_activation="sigmoid")


# ---- driver -----------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 tabular rows / 6,000 digits")
    parser.add_argument("--cases", nargs="+", choices=["mlp", "lenet5"], default=["mlp", "lenet5"])
    parser.add_argument("--systems", nargs="+", default=[*OUR_SYSTEMS, "torch-distributor", "mllib-mlp"])
    parser.add_argument("--mlp-rows", type=int, default=None, help="tabular rows (default 2M, --quick 20k)")
    parser.add_argument("--mnist-rows", type=int, default=None, help="training digits (default all, --quick 6k)")
    parser.add_argument("--test-rows", type=int, default=None, help="test rows (default 100k / all digits)")
    parser.add_argument("--batch", type=int, default=1024, help="global batch of every system")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--mllib-iterations", type=int, default=20, help="L-BFGS iterations (full passes)")
    parser.add_argument("--driver-memory", default="6g",
                        help="the 2M-row table passes through the local driver's heap (1g ran out)")
    args = parser.parse_args(argv)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from bigdl_py.spark_session import get_or_create_session

    spark = get_or_create_session(master="local[2]", app_name="bench_peers",
                                  conf={"spark.driver.memory": args.driver_memory})
    try:
        for case in args.cases:
            rows = {"mlp": args.mlp_rows or (20000 if args.quick else 2_000_000),
                    "lenet5": args.mnist_rows or (6000 if args.quick else None)}[case]
            test_rows = args.test_rows or {"mlp": 5000 if args.quick else 100000,
                                           "lenet5": 2000 if args.quick else None}[case]
            data = load_case(case, rows, test_rows)
            for system in args.systems:
                line = dict(system=system, model=case, train_rows=len(data[0]), test_rows=len(data[2]),
                            batch=args.batch, epochs=args.epochs, master="local[2]")
                if system == "mllib-mlp" and case != "mlp":
                    continue  # MLlib has no convolutional network
                if system == "ours-ring" and ring_missing():
                    line["skipped"] = ring_missing()
                elif system in OUR_SYSTEMS:
                    line.update(run_ours(spark, case, system.split("-")[1], data, args.batch, args.epochs))
                elif system == "torch-distributor":
                    line.update(run_torch(spark, case, data, args.batch, args.epochs), processes=2, backend="gloo")
                elif system == "mllib-mlp":
                    line.update(run_mllib(spark, data, args.mllib_iterations))
                else:
                    raise ValueError(f"--systems: unknown system {system!r}")
                for key in ("samples_s", "wall_s", "test_accuracy"):
                    if key in line:
                        line[key] = round(float(line[key]), 4 if key == "test_accuracy" else 1)
                print(json.dumps(line), flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
