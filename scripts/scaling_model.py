"""Scaling model: one iteration's cost per sync backend, calibrated here, extrapolated to 512 nodes.

Weak scaling: every node (one executor, one training task) keeps the same per-node
batch, so an ideal cluster runs every iteration in the compute time and the
scaling efficiency is E(N) = compute / iteration(N).

  blockmanager: iteration = compute + job(N) + 2 M (N-1)/N / bw_node
      job(N) = a + b N: one Spark job per iteration (two stages of N tasks: gradient
      pieces, then reduce + sharded update); a and b are fitted to trivial shuffle
      jobs of 2..32 tasks on a local-cluster. The factor 2: every node sends the
      gradient pieces others own and fetches the weight slices it does not own.
      bw_node = min(link, the rate Spark moved numpy blocks through a shuffle here).
  ring: iteration = compute + all-reduce, the cheaper of ring
      2 (N-1) (alpha + M / (N bw)) and halving/doubling 2 log2(N) alpha + 2 M (N-1)/N / bw,
      alpha = network latency + the Python socket round-trip half measured here,
      bw = min(link, Python socket throughput measured on loopback). The barrier
      stage starts once per run, so there is no per-iteration Spark job. Overlap of
      communication with backward is ignored (a conservative bound).

Compute per node: measured per-sample time of our kernels on one core here, times
the per-node batch, divided by the node's cores (linear, an optimistic bound).
ResNet-50-sized: ResNet-20's measured time scaled by the FLOP ratio (4.09 G / 40.8 M
multiply-adds); EfficientNet-Lite0 and LeNet-5 measured directly.

Check: predictions for 2, 3 and 4 local-cluster executors (1 core each, on this
machine's cores: compute slows by executors / cores) against measured LeNet-5 runs.

    python scripts/scaling_model.py --calibrate       # measure, write output/scaling/calibration.json
    python scripts/scaling_model.py                   # model, table (.json, .md), plot (.png), check
    python scripts/scaling_model.py --quick --calibrate   # fewer repetitions, small runs
"""
import argparse
import inspect
import io
import json
import math
import multiprocessing
import os
import socket
import sys

import numpy as np

from bigdl_py.atomic import atomic_write_bytes, atomic_write_json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_distributed import median_ms  # noqa: E402  (one timing helper for the benchmarks)

NODES = [2, 4, 8, 16, 32, 64, 128, 256, 512]
LINKS_GBIT = [10, 25]
NET_LATENCY_S = 30e-6  # one-way datacenter Ethernet latency assumed for the extrapolation
CORES_PER_NODE = 16
# Per-node batch for each model in the extrapolation, and its parameter count (None: from our zoo).
MODELS = {"lenet5": dict(batch=512, params=None), "resnet50_sized": dict(batch=64, params=25_557_032),
          "efficientnet_lite0": dict(batch=64, params=None)}
RESNET50_OVER_RESNET20_FLOPS = 4.09e9 / 40.8e6


# ---- calibration: measured on this machine ---------------------------------------------------
def _median_s(fn, repeats):
    return median_ms(fn, repeats) / 1e3


def compute_per_sample(quick):
    """Seconds per sample of forward + backward on one core, per model (ours)."""
    from bigdl_py.kernels.threads import set_num_threads
    from bigdl_py.nn import CrossEntropyLoss, zoo

    set_num_threads(1)
    cases = {"lenet5": (zoo.lenet5(seed=0), (28, 28, 1), 256), "resnet20": (zoo.resnet20(seed=0), (32, 32, 3), 32),
             "efficientnet_lite0": (zoo.efficientnet_lite0(seed=0), (224, 224, 3), 4)}
    out, params = {}, {}
    for name, (model, shape, batch) in cases.items():
        x = np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32)
        y = np.zeros(batch, np.int64)
        loss = CrossEntropyLoss()
        params[name] = int(model.parameters_flat()[0].size)
        model.set_input_grad_needed(False)

        def step():
            out_ = model.forward(x)
            loss.forward(out_, y)
            model.backward(x, loss.backward(out_, y))

        step()  # compile / load kernels
        out[name] = _median_s(step, 2 if quick else 4) / batch
    out["resnet50_sized"] = out.pop("resnet20") * RESNET50_OVER_RESNET20_FLOPS
    return out, params


def _echo(port_queue):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port_queue.put(server.getsockname()[1])
        conn, _ = server.accept()
        with conn:
            while True:
                head = conn.recv(8)
                if not head:
                    return
                size = int.from_bytes(head, "little")
                view, got = bytearray(size), 0
                while got < size:
                    got += conn.recv_into(memoryview(view)[got:])
                conn.sendall(b"k")


def socket_link(quick):
    """Python TCP on loopback between two processes: (one-way small-message seconds, bytes/s)."""
    ctx = multiprocessing.get_context("fork")  # the child runs only socket code
    queue = ctx.Queue()
    proc = ctx.Process(target=_echo, args=(queue,), daemon=True)
    proc.start()
    try:
        with socket.create_connection(("127.0.0.1", queue.get(timeout=60))) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def send(payload):
                conn.sendall(len(payload).to_bytes(8, "little") + payload)
                conn.recv(1)  # the echo process acknowledges a whole message

            small, big = b"x" * 64, np.zeros(16 << 20, np.uint8).tobytes()
            rtt = _median_s(lambda: send(small), 20 if quick else 300)
            seconds = _median_s(lambda: send(big), 2 if quick else 8)
        return rtt / 2, len(big) / seconds
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()


def spark_constants(sc, executors, quick):
    """Shuffle-job latency vs task count (fit a + b*tasks) and Spark's numpy block rate (bytes/s)."""
    repeats = 3 if quick else 7
    tasks = [2, 4, 8] if quick else [2, 4, 8, 16, 32]

    def shuffle(n):
        return lambda: sc.parallelize(range(n), n).map(lambda v: (v, v)).partitionBy(n).count()

    job_s = {n: _median_s(shuffle(n), repeats) for n in tasks}
    # Scheduling cost cannot fall with more tasks: a negative slope is noise (a loaded
    # machine); then b = 0 and a is the median latency.
    b = max(float(np.polyfit(tasks, [job_s[n] for n in tasks], 1)[0]), 0.0)
    a = float(np.median([job_s[n] - b * n for n in tasks]))
    mb = 4 if quick else 16

    def heavy():
        (sc.parallelize(range(executors), executors)
         .map(lambda v: (v, np.ones(mb << 18, np.float32))).partitionBy(executors).map(lambda kv: kv[1].size).count())

    moved = executors * (mb << 20)
    block_s = max(_median_s(heavy, repeats) - job_s.get(executors, job_s[tasks[0]]), 1e-3)
    return dict(job_a_s=float(a), job_b_s_per_task=float(b), job_s_by_tasks={str(k): v for k, v in job_s.items()},
                spark_block_bytes_s=moved / block_s)


def measured_run(spark, sync, executors, batch_per_executor, iterations):
    """Mean steady iteration of LeNet-5 on `executors` executors: wall and compute seconds."""
    from bigdl_py.data.mnist import load_mnist, mnist_dataframe
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss, zoo
    from bigdl_py.optim import SGD, MaxIteration

    rows = executors * batch_per_executor * 4
    x, y = load_mnist()[:2]
    df = mnist_dataframe(spark, x[:rows], y[:rows], executors)
    kwargs = {} if sync == "blockmanager" else {"sync": sync}
    opt = DistriOptimizer(zoo.lenet5(seed=0), CrossEntropyLoss(), SGD(momentum=0.9), df,
                          batch_size=executors * batch_per_executor, end_trigger=MaxIteration(iterations),
                          learning_rate=0.01, feature_shape=(28, 28, 1), num_partitions=executors, **kwargs)
    opt.set_progress(False)
    opt.optimize()
    steady = opt.metrics[2:] or opt.metrics
    return dict(wall_s=float(np.mean([m["wall_ms"] for m in steady])) / 1e3,
                compute_s=float(np.mean([m["compute_ms"] for m in steady])) / 1e3)


def calibrate(quick, batch_per_executor):
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.spark_session import get_or_create_session

    per_sample, params = compute_per_sample(quick)
    latency, socket_bw = socket_link(quick)
    syncs = ["blockmanager"] + (["ring"] if "sync" in inspect.signature(DistriOptimizer.__init__).parameters else [])
    runs, spark_consts = {}, None
    for n in (2, 3, 4):
        spark = get_or_create_session(master=f"local-cluster[{n},1,1024]", app_name=f"scaling_{n}")
        try:
            if n == 4:
                spark_consts = spark_constants(spark.sparkContext, n, quick)
            for sync in syncs:
                runs[f"{sync}/{n}"] = measured_run(spark, sync, n, batch_per_executor, 6 if quick else 10)
        finally:
            spark.stop()
    return dict(machine_cores=os.cpu_count(), compute_s_per_sample=per_sample, params=params,
                socket_one_way_s=latency, socket_bytes_s=socket_bw, batch_per_executor=batch_per_executor,
                runs=runs, loadavg=os.getloadavg(), **spark_consts)


# ---- the model ---------------------------------------------------------------------------------
def blockmanager_s(cal, nodes, grad_bytes, link_bytes_s):
    bw = min(link_bytes_s, cal["spark_block_bytes_s"])
    return cal["job_a_s"] + cal["job_b_s_per_task"] * nodes + 2 * grad_bytes * (nodes - 1) / nodes / bw


def ring_s(cal, nodes, grad_bytes, link_bytes_s, net_latency_s):
    alpha, bw = net_latency_s + cal["socket_one_way_s"], min(link_bytes_s, cal["socket_bytes_s"])
    ring = 2 * (nodes - 1) * (alpha + grad_bytes / nodes / bw)
    butterfly = 2 * math.ceil(math.log2(nodes)) * alpha + 2 * grad_bytes * (nodes - 1) / nodes / bw
    return min(ring, butterfly)


def sync_s(cal, backend, nodes, grad_bytes, link_bytes_s, net_latency_s):
    if backend == "blockmanager":
        return blockmanager_s(cal, nodes, grad_bytes, link_bytes_s)
    return ring_s(cal, nodes, grad_bytes, link_bytes_s, net_latency_s)


def extrapolate(cal):
    """Rows: model, backend, link, nodes, compute_s, sync_s, efficiency."""
    rows = []
    for model, spec in MODELS.items():
        params = spec["params"] or cal["params"][model]
        compute = cal["compute_s_per_sample"][model] * spec["batch"] / CORES_PER_NODE
        for link in LINKS_GBIT:
            for backend in ("blockmanager", "ring"):
                for n in NODES:
                    s = sync_s(cal, backend, n, 4 * params, link * 1e9 / 8, NET_LATENCY_S)
                    rows.append(dict(model=model, params=params, batch_per_node=spec["batch"], backend=backend,
                                     link_gbit=link, nodes=n, compute_s=compute, sync_s=s,
                                     efficiency=compute / (compute + s)))
    return rows


def local_check(cal):
    """Predicted vs measured iteration for the local-cluster runs (compute shares this machine's cores)."""
    out = []
    params = cal["params"]["lenet5"]
    for key, run in sorted(cal["runs"].items()):
        backend, n = key.split("/")
        n = int(n)
        compute = cal["compute_s_per_sample"]["lenet5"] * cal["batch_per_executor"] * max(1.0, n / cal["machine_cores"])
        predicted = compute + sync_s(cal, backend, n, 4 * params, math.inf, 0.0)
        out.append(dict(check=True, backend=backend, executors=n, predicted_s=round(predicted, 4),
                        measured_s=round(run["wall_s"], 4), measured_compute_s=round(run["compute_s"], 4),
                        error_pct=round(100 * (predicted - run["wall_s"]) / run["wall_s"], 1)))
    return out


def write_outputs(rows, folder):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    atomic_write_json(os.path.join(folder, "table.json"), rows)
    shown = [2, 8, 32, 128, 512]
    lines = ["| model | backend | link | " + " | ".join(f"E({n})" for n in shown) + " |",
             "|---|---|---|" + "---|" * len(shown)]
    for key in sorted({(r["model"], r["backend"], r["link_gbit"]) for r in rows}):
        eff = {r["nodes"]: r["efficiency"] for r in rows if (r["model"], r["backend"], r["link_gbit"]) == key}
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} Gbit | " + " | ".join(f"{eff[n]:.2f}" for n in shown) + " |")
    atomic_write_bytes(os.path.join(folder, "table.md"), ("\n".join(lines) + "\n").encode())
    fig, axes = plt.subplots(1, len(MODELS), figsize=(5 * len(MODELS), 4), sharey=True)
    for ax, model in zip(axes, MODELS):
        for backend in ("blockmanager", "ring"):
            for link, style in zip(LINKS_GBIT, ("-", "--")):
                sel = [r for r in rows if (r["model"], r["backend"], r["link_gbit"]) == (model, backend, link)]
                ax.plot([r["nodes"] for r in sel], [r["efficiency"] for r in sel], style, marker="o", markersize=3,
                        label=f"{backend}, {link} Gbit")
        ax.set_xscale("log", base=2)
        ax.set_title(model)
        ax.set_xlabel("nodes")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("scaling efficiency (weak, per-node batch fixed)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    atomic_write_bytes(os.path.join(folder, "scaling.png"), png.getvalue())
    plt.close(fig)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", action="store_true", help="measure the constants (writes calibration.json)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and iterations when calibrating")
    parser.add_argument("--out", default="output/scaling", help="folder for calibration, table and plot")
    parser.add_argument("--batch-per-executor", type=int, default=512, help="LeNet-5 batch of the local runs")
    args = parser.parse_args(argv)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "calibration.json")
    if args.calibrate or not os.path.exists(path):
        atomic_write_json(path, calibrate(args.quick, args.batch_per_executor))
    with open(path) as f:
        cal = json.load(f)
    print(json.dumps(dict(calibration=path, **{k: v for k, v in cal.items() if k != "runs"})), flush=True)
    for line in local_check(cal):
        print(json.dumps(line), flush=True)
    rows = extrapolate(cal)
    table = write_outputs(rows, args.out)
    for r in rows:
        if r["nodes"] in (2, 8, 32, 128, 512):
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    print(table, file=sys.stderr)


if __name__ == "__main__":
    main()
