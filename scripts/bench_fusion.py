"""Inference benchmark of fuse_for_inference: ResNet-20 unfused vs fused vs torch (eval), samples/s.

One process, no Spark: our ResNet-20 as trained (eval mode: 21 BatchNorm passes, the
ReLUs fused into BatchNorm and Add), the same model after `nn.fuse_for_inference`
(BatchNorms folded into the convolutions, ReLUs in the convolution kernels) and torch
2.13 in eval mode with the same weights, at each thread count. torch is measured at its
best: NCHW and channels_last, each as is and after torch.fx's conv+BN fusion
(`torch.fx.experimental.optimization.fuse`); the fastest of the four is the peer.
All variants run interleaved, one call of each per round (bench_kernels.time_interleaved,
with its pause where the system changes), medians reported. Before timing, the fused and
unfused outputs must agree with torch's.

Prints one JSON line per thread count, then a summary line (CPU model, ISA, malloc and
thread settings):

    {"model", "batch", "threads", "ours_samples_s", "ours_fused_samples_s", "torch_samples_s",
     "torch_variant", "torch_by_variant_samples_s", "fused_speedup" (fused / unfused),
     "ratio" (ours unfused / torch), "fused_ratio" (ours fused / torch)}

    python scripts/bench_fusion.py [--threads 1,2] [--batch 64] [--budget 3] [--smoke]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_kernels  # noqa: E402  (first: pins the thread pools' variables before numpy loads)

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

# Fused, unfused and torch outputs agree to this fraction of the largest logit.
CHECK_TOL = 1e-4


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--batch", type=int, default=64, help="images per forward call (default 64)")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timing per thread count (default 3)")
    p.add_argument("--smoke", action="store_true", help="batch 2, a fraction of a second per thread count")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="do not re-execute with the MALLOC_*_THRESHOLD_ settings")
    return p.parse_args(argv)


def models(seed=0):
    """(ours, ours fused, {torch variant: module}) with one set of weights and non-trivial BatchNorms."""
    import torch
    from bench_train import torch_model
    from torch.fx.experimental.optimization import fuse

    from bigdl_py.nn import fuse_for_inference, zoo
    from bigdl_py.nn.torch_import import load_torch_state_dict

    torch.manual_seed(seed)
    net = torch_model("resnet20")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    ours = zoo.resnet20()
    # Both list each layer's weight, bias, running statistics in the same layer order.
    names = [f"{p}.{k}" for p, m in ours.named_modules() for k in [*m.params, *m.buffers]]
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_torch_state_dict(ours, state, dict(zip(state, names)))

    def twin():
        copy = torch_model("resnet20")
        copy.load_state_dict(net.state_dict())
        return copy.eval()

    peers = {}
    for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        peers[layout] = twin().to(memory_format=fmt)
        peers[f"{layout}+fx_fused"] = fuse(twin()).to(memory_format=fmt).eval()
    return ours.eval(), fuse_for_inference(ours), peers


def check_outputs(ours, fused, peers, x):
    """Every variant computes the same logits (a fast wrong model must not post a time)."""
    import torch

    want = ours.infer(x)
    scale = np.abs(want).max()
    got = {"ours_fused": fused.infer(x)}
    with torch.inference_mode():
        for name, net in peers.items():
            got[name] = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    worst = {k: float(np.abs(v - want).max() / scale) for k, v in got.items()}
    bad = {k: v for k, v in worst.items() if not v <= CHECK_TOL}
    if bad:
        raise SystemExit(f"outputs differ from ours unfused by more than {CHECK_TOL} of the largest logit: {bad}")


def measure(threads, batch, budget_s, ours, fused, peers, x):
    import torch

    bench_kernels.use_threads(threads, torch)
    x_nchw = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    inputs = {"nchw": x_nchw, "channels_last": x_nchw.contiguous(memory_format=torch.channels_last)}

    def torch_call(net, xt):
        def call():
            with torch.inference_mode():
                net(xt)
        return call

    fns = {"ours": lambda: ours.infer(x), "ours_fused": lambda: fused.infer(x)}
    fns.update({k: torch_call(net, inputs[k.split("+")[0]]) for k, net in peers.items()})
    medians, rounds = bench_kernels.time_interleaved(
        fns, budget_s, min_rounds=3, system=lambda k: k.startswith("ours"), settle_s=bench_kernels.SETTLE_S)
    rate = {k: batch / s for k, s in medians.items()}
    torch_best = max(peers, key=rate.get)
    return {
        "model": "resnet20", "batch": batch, "threads": threads,
        "ours_samples_s": round(rate["ours"], 1), "ours_fused_samples_s": round(rate["ours_fused"], 1),
        "torch_samples_s": round(rate[torch_best], 1), "torch_variant": torch_best,
        "torch_by_variant_samples_s": {k: round(rate[k], 1) for k in peers},
        "fused_speedup": round(rate["ours_fused"] / rate["ours"], 3),
        "ratio": round(rate["ours"] / rate[torch_best], 3),
        "fused_ratio": round(rate["ours_fused"] / rate[torch_best], 3),
        "rounds": rounds,
    }


def main(argv):
    args = parse_args(argv)
    if not args.no_malloc_tuning:
        bench_kernels.reexec_with_malloc_tuning()
    thread_counts = bench_kernels.parse_thread_counts(args.threads)
    batch, budget = (2, 0.2) if args.smoke else (args.batch, args.budget)
    import torch

    ours, fused, peers = models()
    x = np.random.default_rng(1).standard_normal((batch, 32, 32, 3), dtype=np.float32)
    check_outputs(ours, fused, peers, x)
    for threads in thread_counts:
        bench_kernels.log(f"resnet20 inference, batch {batch}, threads={threads}...")
        print(json.dumps(measure(threads, batch, budget, ours, fused, peers, x)), flush=True)
    print(json.dumps({"summary": True, "torch_version": importlib.metadata.version("torch"),
                      **bench_kernels.environment(torch, thread_counts), "loadavg_1min": os.getloadavg()[0]}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
