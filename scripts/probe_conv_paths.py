"""Where a 3x3 convolution's time goes, and whether an im2col-free forward beats it.

Two kinds of JSON lines, for ResNet-20's convolution shapes (batch 64):
- "split" (1 thread): for forward, input gradient and weight gradient of
  kernels.conv, the milliseconds spent in im2col/col2im copies, in GEMMs, in the
  direct kernels (conv_direct.py, where they apply) and in total (the best of
  `--repeats` calls), from timers wrapped around the module's helpers.
- "path": the stride-1, pad-1 3x3 forward computed four ways, each checked against
  kernels.conv.conv2d_forward, at each thread count (tasks of whole-image blocks on
  kernels.parallel, as the kernels split a batch), the best of `--repeats` rounds that
  alternate the paths:
  im2col_gemm (kernels.conv's general path: 9*Cin columns per pixel, one GEMM per
  chunk); conv_direct (conv2d_forward, which takes kernels/conv_direct.py's
  register-blocked kernel where it applies and im2col_gemm elsewhere);
  kh_im2col_phase_gemm (only the KH taps of a column are copied, 3*Cin values
  per padded pixel, and the KW taps come from reading that buffer as a (rows/KW,
  KW*KH*Cin) matrix at KW offsets: KW GEMMs with the full K and no further copy, into
  every KW-th output row; the padded width's extra columns are computed and dropped);
  shifted_9_gemm (the input padded once, and nine GEMMs with K = Cin, one per tap on a
  shifted view, accumulated by BLAS with beta = 1); numba_direct (a numba loop over
  the padded input, 8 output pixels x all output channels accumulated per tap and
  input channel, written to vectorise over the output channels).
Each line has ms, GFLOPS and the fraction of the one-thread sgemm roof (2048^3,
measured in the same run). The summary line names the CPU and its vector ISA.
Needs scipy (for BLAS's sgemm with beta = 1; installed with the test extras).
Findings: docs/ARCHITECTURE.md, "Im2col-free convolutions".

    python scripts/probe_conv_paths.py                  # ResNet-20 shapes, 1 and 2 threads
    python scripts/probe_conv_paths.py --smoke          # tiny shapes, seconds (for the test)
"""
import os
import sys

for _var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit, uint64  # noqa: E402
from scipy.linalg.blas import dgemm, sgemm  # noqa: E402

from bench_machine import cpu_model_and_isa  # noqa: E402

from bigdl_py.kernels import conv  # noqa: E402
from bigdl_py.kernels.parallel import run_tasks  # noqa: E402
from bigdl_py.kernels.threads import set_num_threads  # noqa: E402

IMAGES_PER_TASK = 4
CHECK_TOL = 1e-4  # of the largest reference value


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny shapes, one round")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts for the path lines")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds (best kept)")
    return p.parse_args(argv)


# ------------------------------------------------------------------ the alternatives


@njit(cache=True, nogil=True)
def _kh_columns(x, z, n0, n1, kh_, ph, pw, oh_, wp_):
    """z row (n, oh, wp), images n0..n1: the KH input pixels (oh + i - ph, wp - pw) of
    the padded column wp, Cin values each (zeros in the padding); zero tail rows."""
    h_, w_, c_ = x.shape[1], x.shape[2], x.shape[3]
    uc = uint64(c_)
    xf, zf = x.reshape(-1), z.reshape(-1)
    d = uint64(0)
    for n in range(n0, n1):
        for oh in range(oh_):
            for wp in range(wp_):
                wi = wp - pw
                for i in range(kh_):
                    hi = oh + i - ph
                    if hi < 0 or hi >= h_ or wi < 0 or wi >= w_:
                        for c in range(uc):
                            zf[d + c] = 0
                    else:
                        s = uint64(((n * h_ + hi) * w_ + wi) * c_)
                        for c in range(uc):
                            zf[d + c] = xf[s + c]
                    d += uc
    for j in range(d, zf.size):
        zf[j] = 0


@njit(cache=True, nogil=True)
def _drop_padding_columns(yp, y, n0, n1, wp_):
    """y[n0:n1] from yp, whose rows are (n, oh, wp) over the padded width."""
    oh_, ow_, cout = y.shape[1], y.shape[2], y.shape[3]
    ypf, yf = yp.reshape(-1), y.reshape(-1)
    run = uint64(ow_ * cout)
    for n in range(n0, n1):
        for oh in range(oh_):
            s = uint64(((n - n0) * oh_ + oh) * wp_ * cout)
            d = uint64((n * oh_ + oh) * ow_ * cout)
            for j in range(run):
                yf[d + j] = ypf[s + j]


def kh_im2col_phase_gemm(x, w, y, n0, n1):
    kh_, kw_, cin, cout = w.shape
    oh_, ow_ = y.shape[1], y.shape[2]
    wp_ = ow_ + kw_ - 1
    w2 = np.ascontiguousarray(w.transpose(1, 0, 2, 3)).reshape(kw_ * kh_ * cin, cout)
    row = kh_ * cin
    q = -(-(n1 - n0) * oh_ * wp_ // kw_)
    z = np.empty((q + 1) * kw_ * row, x.dtype)
    _kh_columns(x, z, n0, n1, kh_, 1, 1, oh_, wp_)
    yp = np.empty((q, kw_, cout), x.dtype)
    for j in range(kw_):
        np.matmul(z[j * row : (j + q * kw_) * row].reshape(q, kw_ * row), w2, out=yp[:, j, :])
    _drop_padding_columns(yp, y, n0, n1, wp_)


def shifted_9_gemm(x, w, y, n0, n1):
    kh_, kw_, cin, cout = w.shape
    oh_, ow_ = y.shape[1], y.shape[2]
    hp, wp_ = x.shape[1] + 2, x.shape[2] + 2
    rows = (n1 - n0) * hp * wp_
    xp = np.zeros((rows + (kh_ - 1) * wp_ + kw_, cin), x.dtype)
    xp[:rows].reshape(n1 - n0, hp, wp_, cin)[:, 1:-1, 1:-1] = x[n0:n1]
    yp = np.empty((rows, cout), x.dtype)
    gemm = sgemm if x.dtype == np.float32 else dgemm
    for t in range(kh_ * kw_):
        i, k = divmod(t, kw_)
        off = i * wp_ + k
        # column-major view: yp.T (Cout, rows) [+]= w[i, k].T (Cout, Cin) @ xp[shifted].T (Cin, rows)
        gemm(1.0, w[i, k].T, xp[off : off + rows].T, beta=0.0 if t == 0 else 1.0, c=yp.T, overwrite_c=True)
    y[n0:n1] = yp.reshape(n1 - n0, hp, wp_, cout)[:, :oh_, :ow_]


@njit(cache=True, nogil=True, fastmath={"contract"})
def _direct_block(xp, wf, y, n0, n1, kh_, kw_, pixels):
    hp_, wp_, c_ = xp.shape[1], xp.shape[2], xp.shape[3]
    oh_, ow_, cout = y.shape[1], y.shape[2], y.shape[3]
    yf, xf = y.reshape(-1), xp.reshape(-1)
    uc, ucout, up = uint64(c_), uint64(cout), uint64(pixels)
    acc = np.empty(pixels * cout, y.dtype)
    for n in range(n1 - n0):
        for oh in range(oh_):
            for ow in range(0, ow_, pixels):
                acc[:] = 0
                for i in range(kh_):
                    for k in range(kw_):
                        xb = uint64(((n * hp_ + oh + i) * wp_ + ow + k) * c_)
                        wb = uint64((i * kw_ + k) * c_) * ucout
                        for c in range(uc):
                            wo = wb + c * ucout
                            for p in range(up):
                                xv = xf[xb + p * uc + c]
                                ao = p * ucout
                                for j in range(ucout):
                                    acc[ao + j] += xv * wf[wo + j]
                yb = uint64((((n0 + n) * oh_ + oh) * ow_ + ow) * cout)
                for j in range(up * ucout):
                    yf[yb + j] = acc[j]


def numba_direct(x, w, y, n0, n1):
    pixels = 8 if y.shape[2] % 8 == 0 else 1
    xp = np.pad(x[n0:n1], ((0, 0), (1, 1), (1, 1), (0, 0)))
    _direct_block(xp, w.reshape(-1), y, n0, n1, w.shape[0], w.shape[1], pixels)


def blocked(fn):
    def run(x, w):
        y = np.empty(x.shape[:3] + (w.shape[3],), x.dtype)
        n = x.shape[0]
        blocks = -(-n // IMAGES_PER_TASK)
        run_tasks(lambda t: fn(x, w, y, t * IMAGES_PER_TASK, min(n, (t + 1) * IMAGES_PER_TASK)), blocks)
        return y
    return run


def im2col_gemm(x, w):
    y = np.empty(x.shape[:3] + (w.shape[3],), x.dtype)
    conv._gemm_conv(x, w, y, conv._Geometry(x, w, 1, 1, 1, 1), np.zeros(0, x.dtype), False, False, np.inf)
    return y


PATHS = {
    "im2col_gemm": im2col_gemm,
    "conv_direct": lambda x, w: conv.conv2d_forward(x, w, None, 1, 1),
    "kh_im2col_phase_gemm": blocked(kh_im2col_phase_gemm),
    "shifted_9_gemm": blocked(shifted_9_gemm),
    "numba_direct": blocked(numba_direct),
}

# ------------------------------------------------------------------ measuring


def best_ms(fn, calls):
    fn()
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def sgemm_roof(n):
    set_num_threads(1)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    return 2.0 * n ** 3 / best_ms(lambda: np.matmul(a, b, out=c), 5) / 1e6


def split_lines(cases, repeats):
    """Per case and pass, time in conv's copy and GEMM helpers (1 thread)."""
    set_num_threads(1)
    spent = collections.defaultdict(float)
    helpers = {"im2col": "copy", "col2im": "copy", "_grouped_matmul": "gemm", "_grouped_matmul_tn": "gemm",
               "_grouped_matmul_nt": "gemm", "_direct_conv": "direct", "_direct_weight_grad": "direct"}
    originals = {name: getattr(conv, name) for name in helpers}

    def timed(name, f):
        def g(*args):
            t = time.perf_counter()
            f(*args)
            spent[helpers[name]] += time.perf_counter() - t
        return g

    rng = np.random.default_rng(0)
    try:
        for name, f in originals.items():
            setattr(conv, name, timed(name, f))
        for case, (n, h, w, cin, cout, k, stride) in cases.items():
            pad = k // 2
            x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
            wt = rng.standard_normal((k, k, cin, cout), dtype=np.float32)
            gy = rng.standard_normal(conv.conv2d_output_shape(x.shape, wt.shape, stride, pad), dtype=np.float32)
            passes = {
                "fwd": lambda: conv.conv2d_forward(x, wt, None, stride, pad),
                "dx": lambda: conv.conv2d_backward(x, wt, gy, stride, pad, has_bias=False, need_dw=False),
                "dw": lambda: conv.conv2d_backward(x, wt, gy, stride, pad, has_bias=False, need_dx=False),
            }
            for pass_, fn in passes.items():
                fn()
                best = None
                for _ in range(repeats * 3):
                    spent.clear()
                    t = time.perf_counter()
                    fn()
                    total = time.perf_counter() - t
                    if best is None or total < best[0]:
                        best = (total, dict(spent))
                total, parts = best
                yield {"kind": "split", "case": case, "pass": pass_, "threads": 1, "total_ms": round(total * 1e3, 4),
                       "copy_ms": round(parts.get("copy", 0.0) * 1e3, 4),
                       "gemm_ms": round(parts.get("gemm", 0.0) * 1e3, 4),
                       "direct_ms": round(parts.get("direct", 0.0) * 1e3, 4),
                       "copy_share": round(parts.get("copy", 0.0) / total, 3)}
    finally:
        for name, f in originals.items():
            setattr(conv, name, f)


def path_lines(cases, threads, repeats, roof, calls):
    rng = np.random.default_rng(1)
    inputs = {}
    for case, (n, h, w, cin, cout, k, stride) in cases.items():
        if (k, stride) != (3, 1):
            continue
        x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
        wt = rng.standard_normal((k, k, cin, cout), dtype=np.float32)
        ref = conv.conv2d_forward(x, wt, None, 1, 1)
        for path, fn in PATHS.items():  # a fast wrong path must not post a time
            err = float(np.abs(fn(x, wt) - ref).max())
            if err > CHECK_TOL * float(np.abs(ref).max()):
                raise AssertionError(f"{path} on {case}: max error {err}")
        inputs[case] = (x, wt, 2.0 * ref.size * k * k * cin)
    times = collections.defaultdict(list)
    for _ in range(repeats):
        for t in threads:
            set_num_threads(t)
            for case, (x, wt, _) in inputs.items():
                for path, fn in PATHS.items():
                    times[case, t, path].append(best_ms(lambda: fn(x, wt), calls))
    for (case, t, path), ms in times.items():
        gflops = inputs[case][2] / min(ms) / 1e6
        yield {"kind": "path", "case": case, "path": path, "pass": "fwd", "threads": t, "ms": round(min(ms), 3),
               "rounds_ms": [round(v, 2) for v in ms], "gflops": _significant(gflops),
               "fraction_of_gemm_roof": _significant(gflops / roof)}


def _significant(v, digits=4):
    """v to `digits` significant digits: a fixed count of decimals rounds a tiny case timed
    under load (the smoke run's, at ~0.01 GFLOPS) down to 0."""
    return float(f"{v:.{digits}g}")


def main(argv=None):
    args = parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    if args.smoke:
        cases = {"smoke_3x3": (4, 8, 8, 8, 8, 3, 1), "smoke_3x3_direct": (4, 8, 8, 8, 16, 3, 1),
                 "smoke_3x3_s2": (4, 8, 8, 8, 16, 3, 2), "smoke_1x1_s2": (4, 8, 8, 8, 16, 1, 2)}
        repeats, calls, roof_n = 1, 1, 256
    else:  # ResNet-20's convolutions at batch 64 (stage widths 16, 32, 64)
        cases = {"3x3_16ch": (64, 32, 32, 16, 16, 3, 1), "3x3_32ch": (64, 16, 16, 32, 32, 3, 1),
                 "3x3_64ch": (64, 8, 8, 64, 64, 3, 1), "3x3_16_32_s2": (64, 32, 32, 16, 32, 3, 2),
                 "1x1_16_32_s2": (64, 32, 32, 16, 32, 1, 2), "stem_3_16": (64, 32, 32, 3, 16, 3, 1)}
        repeats, calls, roof_n = args.repeats, 5, 2048
    roof = sgemm_roof(roof_n)
    for line in split_lines(cases, repeats):
        print(json.dumps(line), flush=True)
    for line in path_lines(cases, threads, repeats, roof, calls):
        print(json.dumps(line), flush=True)
    cpu, isa = cpu_model_and_isa()
    print(json.dumps({"summary": True, "gemm_gflops_1thread": round(roof, 1), "gemm_n": roof_n, "cpu_model": cpu,
                      "isa": isa, "load_avg": [round(v, 2) for v in os.getloadavg()]}), flush=True)


if __name__ == "__main__":
    main()
