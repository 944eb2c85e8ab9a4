"""A small DistriOptimizer training job for cluster tests (spark-submit-able).

Trains the MLP (8-16-3) or LeNet-5 on a deterministic synthetic dataset laid out
in P partitions of given sizes, optionally checkpointing and resuming, and writes
the final flat weights to an .npy file. `oracle_weights(args)` trains the same
model with LocalOptimizer on the same partition sizes: the two must agree.

    python scripts/distri_job.py --master "local-cluster[2,1,1024]" --out w.npy
    spark-submit --master spark://127.0.0.1:7077 scripts/distri_job.py --out w.npy
    python scripts/distri_job.py --master "local[2]" --checkpoint-dir ck --checkpoint-every 3 --resume --out w.npy
    python scripts/distri_job.py --master "local-cluster[2,1,1024]" --sync ring --out w.npy

--pause-after N writes --marker (JSON: iteration, pid) after iteration N and then
waits (at most --pause-timeout seconds) until the --go file exists, so a test can
kill an executor or the driver at a known point of training. The last stdout
line is a JSON summary: first and last step this process ran, wall time, the backend
and the median per-iteration time split (a quick ring vs blockmanager comparison).
"""
import argparse
import json
import os
import time

import numpy as np

from bigdl_py.spark_session import get_or_create_session

FEATURE_SHAPES = {"mlp": None, "lenet": (28, 28, 1)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--master", default=None, help="Spark master (default: spark-submit's, else local[*])")
    ap.add_argument("--model", choices=sorted(FEATURE_SHAPES), default="mlp")
    ap.add_argument("--sizes", default="90,0,121", help="rows per training partition, comma-separated")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=37)
    ap.add_argument("--optim", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None, help="write the final flat weights here (.npy)")
    ap.add_argument("--checkpoint-dir", default=None)
    ap.add_argument("--checkpoint-every", type=int, default=3)
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint, if any")
    ap.add_argument("--cache-root", default=None, help="folder for the converted partitions")
    ap.add_argument("--lineage-every", type=int, default=50)
    ap.add_argument("--lineage-root", default=None,
                    help="folder or URI every executor can write, for the recovery checkpoints (needed on clusters "
                         "without --checkpoint-dir)")
    ap.add_argument("--sync", choices=["blockmanager", "ring", "auto"], default="blockmanager")
    ap.add_argument("--log", default=None, help="training log (JSON lines, one per iteration)")
    ap.add_argument("--spark-log-level", default="ERROR", help="e.g. WARN or INFO to see task retries")
    ap.add_argument("--pause-after", type=int, default=None)
    ap.add_argument("--marker", default=None)
    ap.add_argument("--go", default=None)
    ap.add_argument("--pause-timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if args.pause_after is not None and args.marker is None:
        ap.error("--pause-after needs --marker")
    return args


def make_data(model, n, seed=0):
    """Deterministic synthetic (x, y): x float32 (n, 8) or (n, 28, 28, 1), integer labels."""
    rng = np.random.default_rng(seed)
    if model == "mlp":
        x = rng.standard_normal((n, 8)).astype(np.float32)
        return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)  # 3 learnable classes
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    return x, rng.integers(0, 10, n)


def make_model(model):
    from bigdl_py.nn import zoo

    return zoo.mlp([8, 16, 3], seed=1) if model == "mlp" else zoo.lenet5(seed=2)


def make_optim(name):
    from bigdl_py.optim import SGD, Adam

    return Adam() if name == "adam" else SGD(momentum=0.9)


def oracle_weights(args):
    """Flat weights after LocalOptimizer trains what the job trains (same partition order)."""
    from bigdl_py.engine.local import LocalOptimizer
    from bigdl_py.nn import CrossEntropyLoss
    from bigdl_py.optim import MaxIteration

    x, y = make_data(args.model, sum(args.sizes))
    model = make_model(args.model)
    LocalOptimizer(model, CrossEntropyLoss(), make_optim(args.optim), x, y, batch_size=args.batch_size,
                   end_trigger=MaxIteration(args.iterations), learning_rate=args.lr, seed=args.seed,
                   partition_sizes=args.sizes).set_progress(False).optimize()
    return model.parameters_flat()[0].copy()


def partitioned_df(spark, x, y, sizes):
    """A DataFrame whose partition p holds exactly rows [offset_p, offset_p + sizes[p])."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    rows = [[(x[i].reshape(-1).tolist(), float(y[i])) for i in range(offsets[p], offsets[p + 1])]
            for p in range(len(sizes))]
    rdd = spark.sparkContext.parallelize(range(len(sizes)), len(sizes)).flatMap(lambda p: rows[p])
    return spark.createDataFrame(rdd, "features array<float>, label double")


class PauseAt:
    """End trigger wrapper: after iteration `at`, write `marker` and wait for `go`."""

    def __init__(self, stop, at, marker, go, timeout):
        self.stop, self.at, self.marker, self.go, self.timeout = stop, at, marker, go, timeout

    def __call__(self, state):
        if self.at is not None and state.iteration == self.at:
            tmp = f"{self.marker}.tmp"
            with open(tmp, "w") as f:
                json.dump(dict(iteration=state.iteration, pid=os.getpid()), f)
            os.replace(tmp, self.marker)  # the test never sees a half-written marker
            deadline = time.monotonic() + self.timeout
            while self.go and not os.path.exists(self.go) and time.monotonic() < deadline:
                time.sleep(0.05)
        return self.stop(state)


def median_breakdown(metrics):
    """Median per-iteration milliseconds, the first iteration (start-up) left out."""
    steady = metrics[1:] or metrics
    keys = ("wall_ms", "compute_ms", "data_ms", "sync_ms", "overhead_ms", "driver_bytes")
    return {f"median_{k}": round(float(np.median([m[k] for m in steady])), 2) for k in keys} if steady else {}


def main(argv=None):
    args = parse_args(argv)
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss
    from bigdl_py.optim import MaxIteration, SeveralIteration

    t0 = time.perf_counter()
    spark = get_or_create_session(master=args.master, app_name="bigdl_py-distri-job")
    spark.sparkContext.setLogLevel(args.spark_log_level)
    try:
        x, y = make_data(args.model, sum(args.sizes))
        df = partitioned_df(spark, x, y, args.sizes)
        stop = PauseAt(MaxIteration(args.iterations), args.pause_after, args.marker, args.go, args.pause_timeout)
        opt = DistriOptimizer(make_model(args.model), CrossEntropyLoss(), make_optim(args.optim), df,
                              batch_size=args.batch_size, end_trigger=stop, learning_rate=args.lr,
                              seed=args.seed, num_partitions=len(args.sizes),
                              feature_shape=FEATURE_SHAPES[args.model], cache_root=args.cache_root,
                              lineage_every=args.lineage_every, lineage_root=args.lineage_root, sync=args.sync)
        opt.set_training_log(args.log)
        if args.checkpoint_dir:
            opt.set_checkpoint(args.checkpoint_dir, SeveralIteration(args.checkpoint_every), keep=2)
        model = opt.optimize(resume_from="latest" if args.resume and args.checkpoint_dir else None)
        weights = model.parameters_flat()[0]
        if args.out:
            tmp = f"{args.out}.tmp.npy"
            np.save(tmp, weights)
            os.replace(tmp, args.out)
        steps = [h["step"] for h in opt.history]
        print(json.dumps(dict(first_step=min(steps, default=None), last_step=max(steps, default=None),
                              loss=opt.history[-1]["loss"] if opt.history else None, sync=opt.sync_choice[0],
                              wall_s=round(time.perf_counter() - t0, 2), **median_breakdown(opt.metrics))),
              flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
