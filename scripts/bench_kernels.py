"""Kernel benchmark: ours (bigdl_py.kernels, NHWC) against torch CPU, at 1 and 2 threads each.

Prints one JSON line per case, pass ("fwd", "fwd+bwd") and thread count with both
times measured in the same run, then a summary line (geomean ratios per thread
count, numpy sgemm roof, numba compile times cold/warm, CPU model and vector ISA,
thread and malloc settings).

    python scripts/bench_kernels.py            # every case, 1 and 2 threads
    python scripts/bench_kernels.py --quick    # subset, under 2 minutes per thread count
    python scripts/bench_kernels.py --smoke    # 2 tiny cases, seconds (for the test)
    python scripts/bench_kernels.py --threads 1  # one thread count only
    python scripts/bench_kernels.py --compile-only  # numba compile, cold and warm cache

Threads: ours kernels.threads.set_num_threads(n) (the minibatch split into tasks,
one BLAS thread per task), torch torch.set_num_threads(n); the sgemm roof is one
thread's.

Each case line: case, op, shape (ours' NHWC / HWIO shapes), pass, threads, ours_ms and
torch_ms (medians, measured interleaved; at several threads each system starts after a
pause that lets the other's threads go idle), ratio = ours_ms / torch_ms, gflops (ours;
conv 2*N*OH*OW*Cout*KH*KW*Cin/groups per pass, x3 for fwd+bwd, x2 when the input
gradient is skipped; null for memory-bound ops, which report gb_s: the bytes of
each array read or written once, per second), torch_layout (the faster of torch's
NCHW and channels_last for 4-D ops, both reported; null for 2-D/3-D ops).

glibc malloc hands large freed blocks back to the OS, so torch page-faults every
activation; the script re-executes itself with MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ raised (unless --no-malloc-tuning) so that torch is
measured at its best. Both peers always run in the same process, under the same
settings.
"""
import os
import sys

# Before numpy/numba/torch load: their thread pools read these once.
THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for _var in THREAD_VARS:
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench_machine import cpu_model_and_isa  # noqa: E402

MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
# A fast wrong kernel must not post a time: outputs and gradients of ours and
# torch agree to this fraction of the largest reference value.
CHECK_TOL = 2e-3


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="subset of the cases, whole run < 2 minutes")
    mode.add_argument("--smoke", action="store_true", help="2 tiny cases, no compile probe (seconds)")
    mode.add_argument("--compile-only", action="store_true",
                      help="only measure numba compile times (cold and warm cache)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--cases", default=None,
                   help="comma-separated case names: time only these (from any mode's list), "
                        "skip the compile probe; the summary's geomeans cover only them")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="do not re-execute with the MALLOC_*_THRESHOLD_ settings")
    p.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def reexec_with_malloc_tuning():
    """Restart this process with MALLOC_TUNING in the environment (glibc reads it at start)."""
    if all(os.environ.get(k) == v for k, v in MALLOC_TUNING.items()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_TUNING})


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- compile times

def compile_probe():
    """First call of every kernel (forward and backward); prints the seconds as JSON.

    Runs in a child process whose NUMBA_CACHE_DIR the parent chooses: an empty
    directory measures compilation, a filled one measures loading from the cache.
    """
    import numba  # noqa: F401  (its own import time is not compile time)
    import numpy as np

    times = {}
    t_all, cpu_all = time.perf_counter(), time.process_time()
    from bigdl_py.kernels import (activation, conv, dropout, embedding, linear, norm, pool, rnn,
                                  tensor_ops)
    times["import"] = time.perf_counter() - t_all
    rng = np.random.default_rng(0)

    def f(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def conv_calls():
        x = f(2, 6, 6, 4)
        # generic im2col path, 1x1 GEMM path, depthwise path
        for w, groups, pad in ((f(3, 3, 4, 5), 1, 1), (f(1, 1, 4, 5), 1, 0), (f(3, 3, 1, 4), 4, 1)):
            y = conv.conv2d_forward(x, w, f(w.shape[3]), padding=pad, groups=groups, relu=True)
            conv.conv2d_backward(x, w, f(*y.shape), padding=pad, groups=groups)
            conv.conv2d_backward(x, w, f(*y.shape), padding=pad, groups=groups, need_dx=False)

    def linear_calls():
        x, w = f(3, 4), f(5, 4)
        y = linear.linear_forward(x, w, f(5))
        linear.linear_backward(x, w, f(*y.shape))

    def pool_calls():
        x = f(2, 6, 6, 3)
        y, arg = pool.maxpool2d_forward(x, 2)
        pool.maxpool2d_backward(f(*y.shape), arg, x.shape)
        y = pool.avgpool2d_forward(x, 3, 2, 1)
        pool.avgpool2d_backward(f(*y.shape), x.shape, 3, 2, 1)
        y = pool.global_avgpool_forward(x)
        pool.global_avgpool_backward(f(*y.shape), x.shape)

    def norm_calls():
        x, c = f(2, 4, 4, 3), 3
        gamma, beta, rm, rv = f(c), f(c), np.zeros(c, np.float32), np.ones(c, np.float32)
        y, mean, invstd = norm.batchnorm_forward_train(x, gamma, beta, rm, rv)
        norm.batchnorm_backward(x, gamma, f(*y.shape), mean, invstd)
        norm.batchnorm_forward_eval(x, gamma, beta, rm, rv)
        y, scale = norm.lrn_forward(x, 3, 1e-4, 0.75, 1.0)
        norm.lrn_backward(x, y, scale, f(*y.shape), 3, 1e-4, 0.75, 1.0)

    def activation_calls():
        x = f(3, 5)
        for name in ("relu", "relu6", "leaky_relu", "elu", "tanh", "sigmoid", "softmax", "log_softmax"):
            y = getattr(activation, name)(x)
            getattr(activation, name + "_backward")(x, y, f(*y.shape))
        activation.relu_inplace(x.copy())

    def dropout_calls():
        y, mask = dropout.dropout_forward(f(3, 5), 0.5, 0)
        dropout.dropout_backward(f(*y.shape), mask)

    def embedding_calls():
        idx = np.array([[0, 2], [1, 2]], dtype=np.int64)
        y = embedding.embedding_forward(idx, f(4, 3))
        embedding.embedding_backward(idx, f(*y.shape), 4)

    def rnn_calls():
        x, h0 = f(2, 3, 4), f(2, 5)
        out, _, _, cache = rnn.lstm_forward(x, h0, f(2, 5), f(20, 4), f(20, 5), f(20), f(20))
        rnn.lstm_backward(cache, f(*out.shape), f(2, 5), f(2, 5))
        out, _, cache = rnn.gru_forward(x, h0, f(15, 4), f(15, 5), f(15), f(15))
        rnn.gru_backward(cache, f(*out.shape), f(2, 5))

    def tensor_ops_calls():
        a, b = f(2, 3, 4, 5), f(2, 3, 4, 5)
        tensor_ops.split(tensor_ops.concat([a, b], 3), [5, 5], 3)
        tensor_ops.nhwc_to_nchw(tensor_ops.nchw_to_nhwc(a))
        tensor_ops.reduce_sum(tensor_ops.add(tensor_ops.scale(a, 2.0), b), axis=0)

    for name, calls in (("conv", conv_calls), ("linear", linear_calls), ("pool", pool_calls),
                        ("norm", norm_calls), ("activation", activation_calls),
                        ("dropout", dropout_calls), ("embedding", embedding_calls),
                        ("rnn", rnn_calls), ("tensor_ops", tensor_ops_calls)):
        t = time.perf_counter()
        calls()
        times[name] = time.perf_counter() - t
    # CPU seconds too: wall time on a shared machine also counts other processes.
    print(json.dumps({"total_s": time.perf_counter() - t_all, "cpu_s": time.process_time() - cpu_all,
                      "by_module_s": times}))


def measure_compile_times():
    """(cold, warm) probe results: a fresh NUMBA_CACHE_DIR, then the same one again."""
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_numba_cache_") as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        for label in ("cold", "warm"):
            log(f"compile probe ({label} cache)...")
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--compile-probe"],
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"compile probe ({label}) failed:\n{proc.stderr}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


# ---------------------------------------------------------------- timing

# Torch's OpenMP threads spin for ~8-9 ms after each parallel region (measured here: the CPU
# time the process burns while its caller sleeps after a 2-thread conv) before they sleep. Timed
# right after torch, ours ran with that spinner on the second core: the 16-channel 3x3 forward at
# 2 threads took 8.2 ms after a torch call and 5.5 ms after one of ours (median, same run). So
# where systems alternate at several threads, the next one starts after this pause.
SETTLE_S = 0.015
# After the pause a system is called untimed for at least this long before its timed call,
# so that its threads run as in a training loop. One untimed call was not enough on this
# VM: its kernel puts threads woken after a few ms asleep on their waker's vCPU (it packs
# vCPUs) and moves them apart only some milliseconds later. Ours, max pooling forward on
# two threads (64x32x32x16): 0.40 ms back to back; after the pause and one untimed call
# 0.74 (in 22 of 30 such calls all tasks ran on one CPU), after 5 ms of untimed calls
# 0.69, after 10, 20 and 40 ms 0.38-0.41; LeNet-5's conv2 0.34, 0.51, 0.49, 0.33-0.39.
WARM_S = 0.010


def time_interleaved(fns, budget_s, min_rounds, max_rounds=200, warmup=2, system=None, settle_s=0.0):
    """Median seconds per call of each callable in `fns` (a dict).

    One call of each per round, round after round, so that load from other
    processes on the shared CPU falls on ours and torch alike. With `system`
    (key -> name) and settle_s, where the system changes from one call to the next,
    the next waits settle_s (the other's threads go idle) and is called untimed for
    WARM_S (its own threads are awake, as in a training loop), then timed.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {k: [] for k in fns}
    start = time.perf_counter()
    rounds, last = 0, None
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - start < budget_s):
        for k, fn in fns.items():
            if settle_s and system is not None and system(k) != last:
                time.sleep(settle_s)
                warm_until = time.perf_counter() + WARM_S
                fn()
                while time.perf_counter() < warm_until:
                    fn()
                last = system(k)
            t = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t)
        rounds += 1
    return {k: statistics.median(v) for k, v in samples.items()}, rounds


def sgemm_gflops(n):
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    med, _ = time_interleaved({"gemm": lambda: np.matmul(a, b, out=c)}, budget_s=1.0, min_rounds=5,
                              max_rounds=20, warmup=1)
    return 2.0 * n ** 3 / med["gemm"] / 1e9


# ---------------------------------------------------------------- cases

class Case:
    """One benchmarked operation: ours and torch callables plus what a pass costs.

    ours_fb / torch_fb return [y, *grads]; `outputs` names each of them and gives
    the function that converts torch's result to ours' layout, so that the two can
    be compared once before timing.
    """

    def __init__(self, name, op, shape, need_dx, ours_fwd, ours_fb, torch_fwd, torch_fb, outputs,
                 fwd_flops=None, bytes_fwd=None, bytes_fb=None):
        self.name, self.op, self.shape, self.need_dx = name, op, shape, need_dx
        self.ours_fwd, self.ours_fb = ours_fwd, ours_fb
        self.torch_fwd, self.torch_fb = torch_fwd, torch_fb  # {layout: callable}
        self.outputs = outputs
        self.fwd_flops = fwd_flops
        self.bytes = {"fwd": bytes_fwd, "fwd+bwd": bytes_fb}

    def flops(self, pass_):
        """GEMM-type FLOPs; the backward costs 2 GEMMs (dx, dw) or 1 when dx is skipped."""
        if self.fwd_flops is None:
            return None
        if pass_ == "fwd":
            return self.fwd_flops
        return self.fwd_flops * (3 if self.need_dx else 2)

    def check(self):
        ours = self.ours_fb()
        for layout, fb in self.torch_fb.items():
            ref = fb()
            if len(ours) != len(self.outputs) or len(ref) != len(self.outputs):
                raise AssertionError(f"{self.name}: expected {len(self.outputs)} results, "
                                     f"received {len(ours)} (ours) and {len(ref)} (torch)")
            for (name, conv), a, t in zip(self.outputs, ours, ref):
                b = conv(t.detach())
                if a.shape != b.shape:
                    raise AssertionError(f"{self.name}: {name} shape {a.shape} != torch {b.shape}")
                err = float(abs(a.astype("float64") - b.astype("float64")).max())
                scale = float(abs(b).max()) or 1.0
                if err > CHECK_TOL * scale:
                    raise AssertionError(
                        f"{self.name}: {name} differs from torch ({layout}): max abs err {err:.3g}, "
                        f"max |ref| {scale:.3g}"
                    )


def _torch():
    import torch

    return torch


def _nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def _same(t):
    return t.contiguous().numpy()


def _torch_pair(fwd, inputs_fn, grad_out, layouts):
    """torch forward (no_grad) and forward+backward callables for each layout.

    inputs_fn(layout) -> (args, grad_args): args go to fwd(*args), grad_args are
    the leaves whose gradients the backward computes.
    """
    torch = _torch()
    fwd_calls, fb_calls = {}, {}
    for layout in layouts:
        args, grad_args = inputs_fn(layout)
        gy = grad_out(layout)

        def run_fwd(args=args):
            with torch.no_grad():
                return fwd(*args)

        def run_fb(args=args, grad_args=grad_args, gy=gy):
            y = fwd(*args)
            return [y, *torch.autograd.grad(y, grad_args, gy)]

        fwd_calls[layout], fb_calls[layout] = run_fwd, run_fb
    return fwd_calls, fb_calls


def _as_layout(t, layout):
    torch = _torch()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


def conv_case(name, n, h, w, cin, cout, k, stride=1, pad=0, groups=1, bias=True, need_dx=True):
    import numpy as np

    from bigdl_py.kernels import conv

    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    wt = (rng.standard_normal((k, k, cin // groups, cout), dtype=np.float32)
          / np.float32(math.sqrt(k * k * cin / groups)))
    b = rng.standard_normal(cout, dtype=np.float32) if bias else None
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    gy = rng.standard_normal((n, oh, ow, cout), dtype=np.float32)

    def ours_fwd():
        return conv.conv2d_forward(x, wt, b, stride, pad, 1, groups)

    def ours_fb():
        y = conv.conv2d_forward(x, wt, b, stride, pad, 1, groups)
        dx, dw, db = conv.conv2d_backward(x, wt, gy, stride, pad, 1, groups, need_dx, bias)
        return [y] + ([dx] if need_dx else []) + [dw] + ([db] if bias else [])

    x_t = torch.from_numpy(x).permute(0, 3, 1, 2)
    w_t = torch.from_numpy(wt).permute(3, 2, 0, 1)
    b_t = torch.from_numpy(b) if bias else None
    gy_t = torch.from_numpy(gy).permute(0, 3, 1, 2)

    def inputs(layout):
        xl = _as_layout(x_t, layout).requires_grad_(need_dx)
        wl = _as_layout(w_t, layout).requires_grad_(True)
        bl = b_t.clone().requires_grad_(True) if bias else None
        leaves = ([xl] if need_dx else []) + [wl] + ([bl] if bias else [])
        return (xl, wl, bl), leaves

    def fwd(xl, wl, bl):
        return F.conv2d(xl, wl, bl, stride, pad, 1, groups)

    layouts = ("nchw", "channels_last")
    torch_fwd, torch_fb = _torch_pair(fwd, inputs, lambda lay: _as_layout(gy_t, lay), layouts)
    outputs = ([("y", _nhwc)] + ([("dx", _nhwc)] if need_dx else [])
               + [("dw", lambda t: t.permute(2, 3, 1, 0).contiguous().numpy())]
               + ([("db", _same)] if bias else []))
    kind = "depthwise" if groups > 1 and groups == cin else f"{k}x{k}"
    shape = (f"x=({n},{h},{w},{cin}) w=({k},{k},{cin // groups},{cout}) stride={stride} pad={pad} "
             f"groups={groups} bias={bias}")
    return Case(name, f"conv2d_{kind}", shape, need_dx, ours_fwd, ours_fb, torch_fwd, torch_fb, outputs,
                fwd_flops=2 * n * oh * ow * cout * k * k * cin // groups)


def linear_case(name, n, fin, fout, need_dx=True):
    import numpy as np

    from bigdl_py.kernels import linear

    torch = _torch()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, fin), dtype=np.float32)
    w = rng.standard_normal((fout, fin), dtype=np.float32) / np.float32(math.sqrt(fin))
    b = rng.standard_normal(fout, dtype=np.float32)
    gy = rng.standard_normal((n, fout), dtype=np.float32)

    def ours_fb():
        y = linear.linear_forward(x, w, b)
        dx, dw, db = linear.linear_backward(x, w, gy, need_dx, True)
        return [y] + ([dx] if need_dx else []) + [dw, db]

    def inputs(layout):
        xl = torch.from_numpy(x).clone().requires_grad_(need_dx)
        wl = torch.from_numpy(w).clone().requires_grad_(True)
        bl = torch.from_numpy(b).clone().requires_grad_(True)
        return (xl, wl, bl), ([xl] if need_dx else []) + [wl, bl]

    torch_fwd, torch_fb = _torch_pair(torch.nn.functional.linear, inputs,
                                      lambda lay: torch.from_numpy(gy), (None,))
    return Case(name, "linear", f"x=({n},{fin}) w=({fout},{fin})", need_dx,
                lambda: linear.linear_forward(x, w, b), ours_fb, torch_fwd, torch_fb,
                [(k, _same) for k in ["y"] + (["dx"] if need_dx else []) + ["dw", "db"]], fwd_flops=2 * n * fin * fout)


def maxpool_case(name, n, h, w, c, k):
    import numpy as np

    from bigdl_py.kernels import pool

    torch = _torch()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    gy = rng.standard_normal((n, h // k, w // k, c), dtype=np.float32)

    def ours_fb():
        y, arg = pool.maxpool2d_forward(x, k)
        return [y, pool.maxpool2d_backward(gy, arg, x.shape)]

    x_t, gy_t = torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(gy).permute(0, 3, 1, 2)

    def inputs(layout):
        xl = _as_layout(x_t, layout).requires_grad_(True)
        return (xl,), [xl]

    torch_fwd, torch_fb = _torch_pair(lambda xl: torch.nn.functional.max_pool2d(xl, k), inputs,
                                      lambda lay: _as_layout(gy_t, lay), ("nchw", "channels_last"))
    return Case(name, "maxpool2d", f"x=({n},{h},{w},{c}) kernel={k} stride={k}", True,
                lambda: pool.maxpool2d_forward(x, k), ours_fb, torch_fwd, torch_fb,
                [("y", _nhwc), ("dx", _nhwc)],
                bytes_fwd=(x.nbytes + gy.nbytes), bytes_fb=2 * (x.nbytes + gy.nbytes))


def batchnorm_case(name, n, h, w, c):
    import numpy as np

    from bigdl_py.kernels import norm

    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, h, w, c), dtype=np.float32) * 2 + 1
    gamma = rng.standard_normal(c, dtype=np.float32)
    beta = rng.standard_normal(c, dtype=np.float32)
    gy = rng.standard_normal(x.shape, dtype=np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)

    def ours_fwd():
        return norm.batchnorm_forward_train(x, gamma, beta, rm, rv)

    def ours_fb():
        y, mean, invstd = norm.batchnorm_forward_train(x, gamma, beta, rm, rv)
        return [y, *norm.batchnorm_backward(x, gamma, gy, mean, invstd)]

    x_t, gy_t = torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(gy).permute(0, 3, 1, 2)
    rm_t, rv_t = torch.zeros(c), torch.ones(c)

    def inputs(layout):
        xl = _as_layout(x_t, layout).requires_grad_(True)
        gl = torch.from_numpy(gamma).clone().requires_grad_(True)
        bl = torch.from_numpy(beta).clone().requires_grad_(True)
        return (xl, gl, bl), [xl, gl, bl]

    def fwd(xl, gl, bl):
        return F.batch_norm(xl, rm_t, rv_t, gl, bl, training=True, momentum=0.1, eps=1e-5)

    torch_fwd, torch_fb = _torch_pair(fwd, inputs, lambda lay: _as_layout(gy_t, lay),
                                      ("nchw", "channels_last"))
    return Case(name, "batchnorm_train", f"x=({n},{h},{w},{c})", True, ours_fwd, ours_fb, torch_fwd,
                torch_fb, [("y", _nhwc), ("dx", _nhwc), ("dgamma", _same), ("dbeta", _same)],
                bytes_fwd=2 * x.nbytes, bytes_fb=4 * x.nbytes)


def lstm_case(name, n, t, fin, hid):
    import numpy as np

    from bigdl_py.kernels import rnn

    torch = _torch()
    rng = np.random.default_rng(5)
    s = np.float32(1 / math.sqrt(hid))
    x = rng.standard_normal((n, t, fin), dtype=np.float32)
    w_ih = rng.standard_normal((4 * hid, fin), dtype=np.float32) * s
    w_hh = rng.standard_normal((4 * hid, hid), dtype=np.float32) * s
    b_ih = rng.standard_normal(4 * hid, dtype=np.float32) * s
    b_hh = rng.standard_normal(4 * hid, dtype=np.float32) * s
    h0 = np.zeros((n, hid), np.float32)
    gy = rng.standard_normal((n, t, hid), dtype=np.float32)

    def ours_fwd():
        return rnn.lstm_forward(x, h0, h0, w_ih, w_hh, b_ih, b_hh)

    def ours_fb():
        out, _, _, cache = rnn.lstm_forward(x, h0, h0, w_ih, w_hh, b_ih, b_hh)
        dx, _, _, dw_ih, dw_hh, db_ih, db_hh = rnn.lstm_backward(cache, gy)
        return [out, dx, dw_ih, dw_hh, db_ih, db_hh]

    lstm = torch.nn.LSTM(fin, hid, batch_first=True)
    with torch.no_grad():
        for p, v in zip((lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0),
                        (w_ih, w_hh, b_ih, b_hh)):
            p.copy_(torch.from_numpy(v))
    state = (torch.zeros(1, n, hid), torch.zeros(1, n, hid))

    def inputs(layout):
        xl = torch.from_numpy(x).clone().requires_grad_(True)
        return (xl,), [xl, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]

    torch_fwd, torch_fb = _torch_pair(lambda xl: lstm(xl, state)[0], inputs,
                                      lambda lay: torch.from_numpy(gy), (None,))
    return Case(name, "lstm", f"x=({n},{t},{fin}) hidden={hid}", True, ours_fwd, ours_fb, torch_fwd,
                torch_fb, [(k, _same) for k in ("out", "dx", "dw_ih", "dw_hh", "db_ih", "db_hh")],
                fwd_flops=2 * n * t * 4 * hid * (fin + hid))


def build_cases(mode, names=None):
    """The cases of a mode ("smoke", "quick" or "full"), built (inputs allocated); with
    `names`, those cases of the full list instead."""
    if mode == "smoke" and names is None:
        return [conv_case("smoke_conv3x3", 2, 8, 8, 4, 8, 3, pad=1, bias=False),
                linear_case("smoke_linear", 8, 16, 8)]
    specs = [
        ("lenet_conv1", False, lambda: conv_case("lenet_conv1", 128, 28, 28, 1, 6, 5, need_dx=False)),
        ("lenet_conv2", True, lambda: conv_case("lenet_conv2", 128, 12, 12, 6, 16, 5)),
        ("lenet_maxpool", False, lambda: maxpool_case("lenet_maxpool", 128, 24, 24, 6, 2)),
        ("lenet_fc1", False, lambda: linear_case("lenet_fc1", 128, 256, 120)),
        ("resnet20_3x3_16ch", True,
         lambda: conv_case("resnet20_3x3_16ch", 64, 32, 32, 16, 16, 3, pad=1, bias=False)),
        ("resnet20_3x3_32ch", True,
         lambda: conv_case("resnet20_3x3_32ch", 64, 16, 16, 32, 32, 3, pad=1, bias=False)),
        ("resnet20_3x3_64ch", True,
         lambda: conv_case("resnet20_3x3_64ch", 64, 8, 8, 64, 64, 3, pad=1, bias=False)),
        ("conv1x1_64_128", True, lambda: conv_case("conv1x1_64_128", 64, 16, 16, 64, 128, 1, bias=False)),
        ("depthwise3x3_32ch", True,
         lambda: conv_case("depthwise3x3_32ch", 8, 112, 112, 32, 32, 3, pad=1, groups=32, bias=False)),
        # 784 -> 256 is an MLP's first layer: no input gradient, as in training.
        ("linear_784_256", False, lambda: linear_case("linear_784_256", 128, 784, 256, need_dx=False)),
        ("linear_512_256", True, lambda: linear_case("linear_512_256", 128, 512, 256)),
        ("maxpool2x2", True, lambda: maxpool_case("maxpool2x2", 64, 32, 32, 16, 2)),
        ("batchnorm_train", True, lambda: batchnorm_case("batchnorm_train", 64, 32, 32, 16)),
        ("lstm_h128", True, lambda: lstm_case("lstm_h128", 32, 32, 64, 128)),
    ]
    if names is not None:
        unknown = set(names) - {name for name, _, _ in specs}
        if unknown:
            raise SystemExit(f"--cases: unknown case(s) {sorted(unknown)}; known: {[n for n, _, _ in specs]}")
        return [factory() for name, _, factory in specs if name in names]
    return [factory() for _, in_quick, factory in specs if in_quick or mode == "full"]


# ---------------------------------------------------------------- run

def run_case(case, budget_s, min_rounds, threads):
    """Time every callable of `case` together; return its two JSON records."""
    case.check()
    fns = {("ours", "fwd"): case.ours_fwd, ("ours", "fwd+bwd"): case.ours_fb}
    for layout in case.torch_fwd:
        fns[(layout, "fwd")] = case.torch_fwd[layout]
        fns[(layout, "fwd+bwd")] = case.torch_fb[layout]
    med, rounds = time_interleaved(fns, budget_s, min_rounds, system=lambda key: key[0] == "ours",
                                   settle_s=SETTLE_S if threads > 1 else 0.0)
    records = []
    for pass_ in ("fwd+bwd", "fwd"):
        ours_s = med[("ours", pass_)]
        torch_times = {layout: med[(layout, pass_)] for layout in case.torch_fwd}
        best = min(torch_times, key=torch_times.get)
        flops = case.flops(pass_)
        rec = {
            "case": case.name, "op": case.op, "shape": case.shape, "pass": pass_,
            "ours_ms": round(ours_s * 1e3, 4), "torch_ms": round(torch_times[best] * 1e3, 4),
            "ratio": significant(ours_s / torch_times[best]),
            "gflops": round(flops / ours_s / 1e9, 3) if flops else None,
            "torch_gflops": round(flops / torch_times[best] / 1e9, 3) if flops else None,
            "torch_layout": best,
        }
        if len(torch_times) > 1:
            rec["torch_nchw_ms"] = round(torch_times["nchw"] * 1e3, 4)
            rec["torch_channels_last_ms"] = round(torch_times["channels_last"] * 1e3, 4)
        if case.bytes[pass_]:
            rec["gb_s"] = round(case.bytes[pass_] / ours_s / 1e9, 3)
        rec["need_dx"] = case.need_dx
        rec["rounds"] = rounds
        records.append(rec)
    return records


def significant(x, digits=4):
    """x to `digits` significant digits: a ratio far from 1 (torch's OpenMP team
    waiting on a busy core can take 100x longer) keeps its precision."""
    return float(f"{x:.{digits}g}")


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def parse_thread_counts(text):
    """--threads "1,2" -> [1, 2]; a SystemExit naming the option otherwise."""
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise SystemExit(f"--threads: expected comma-separated integers >= 1, received {text!r}")
    return counts


def machine():
    """CPU model and its widest vector ISA: the kernels' speed and ratios depend on both."""
    model, isa = cpu_model_and_isa()
    return {"cpu_model": model, "isa": isa}


def environment(torch, thread_counts=None):
    from threadpoolctl import threadpool_info

    return {
        **machine(),
        "threads": {
            **{var: os.environ.get(var) for var in THREAD_VARS},
            "counts": thread_counts,
            "blas": [{"library": i.get("internal_api"), "num_threads": i.get("num_threads"),
                      "kernel": i.get("architecture")} for i in threadpool_info()],
        },
        "malloc_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")},
    }


def use_threads(n, torch):
    from bigdl_py.kernels import threads

    threads.set_num_threads(n)
    torch.set_num_threads(n)


def main(argv):
    args = parse_args(argv)
    if args.compile_probe:
        compile_probe()
        return 0
    if not args.no_malloc_tuning:
        reexec_with_malloc_tuning()
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    thread_counts = parse_thread_counts(args.threads)
    load_start = os.getloadavg()[0]

    compile_cold = compile_warm = None
    if mode != "smoke" and args.cases is None:
        compile_cold, compile_warm = measure_compile_times()
    summary_compile = {}
    for label, probe in (("cold", compile_cold), ("warm", compile_warm)):
        summary_compile[f"compile_{label}_s"] = round(probe["total_s"], 3) if probe else None
        summary_compile[f"compile_{label}_cpu_s"] = round(probe["cpu_s"], 3) if probe else None
        summary_compile[f"compile_{label}_by_module_s"] = (
            {k: round(v, 3) for k, v in probe["by_module_s"].items()} if probe else None)
    if args.compile_only:
        print(json.dumps({"summary": True, "mode": "compile-only", **summary_compile,
                          **environment(None)}), flush=True)
        return 0

    import torch

    use_threads(1, torch)
    gemm_n = 256 if mode == "smoke" else 2048
    log(f"numpy sgemm {gemm_n}^3...")
    gemm = sgemm_gflops(gemm_n)

    budget_s, min_rounds = {"smoke": (0.05, 3), "quick": (1.0, 5), "full": (3.0, 7)}[mode]
    records, failures = [], []
    cases = build_cases(mode, args.cases.split(",") if args.cases else None)
    for threads in thread_counts:
        use_threads(threads, torch)
        for case in cases:
            log(f"{case.name} threads={threads}...")
            try:
                recs = run_case(case, budget_s, min_rounds, threads)
            except AssertionError as e:
                failures.append(f"threads={threads}: {e}")
                log(f"FAILED {e}")
                continue
            for rec in recs:
                rec["threads"] = threads
                print(json.dumps(rec), flush=True)
            records.extend(recs)
    use_threads(1, torch)

    def summarise(threads):
        recs = [r for r in records if r["threads"] == threads]
        resnet = [r["gflops"] for r in recs if r["case"].startswith("resnet20_3x3") and r["pass"] == "fwd+bwd"]
        ratios = {key: geomean(r["ratio"] for r in recs if r["pass"] == pass_)
                  for key, pass_ in (("geomean_ratio_fwd_bwd", "fwd+bwd"), ("geomean_ratio_fwd", "fwd"))}
        return {**{k: round(v, 4) if v is not None else None for k, v in ratios.items()},
                "conv3x3_resnet20_fraction_of_gemm": (round(geomean(resnet) / gemm, 4) if resnet else None)}

    by_threads = {t: summarise(t) for t in thread_counts}
    summary = {
        "summary": True,
        "mode": mode,
        **by_threads[thread_counts[0]],
        "by_threads": by_threads,
        "gemm_gflops_1thread": round(gemm, 2),
        "gemm_n": gemm_n,
        **summary_compile,
        **environment(torch, thread_counts),
        "torch_version": torch.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_1min_start_end": [load_start, os.getloadavg()[0]],
        "failed_checks": failures,
    }
    print(json.dumps(summary), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
