"""out = a @ b on the direct convolution's micro-kernels: a 1x1 convolution whose pixels
are the rows of a and whose (Cin, Cout) weight is b.

Where b's columns come in blocks of 16 this beats OpenBLAS on the layers' shapes (Zen 4,
one thread, float32): (128, 512) @ (512, 256) 0.29 ms against sgemm's 0.33 (b
contiguous) and 0.38 (b = w.T, a transposed view), the LSTM's per-step (32, 128) @
(128, 512) 37 us against 53 / 73: OpenBLAS packs both operands on every call, the
micro-kernel reads b in place.

Every output value is one micro-kernel's sum over k in order, whichever block of rows or
columns it falls in, so the bits depend neither on the blocks nor on the thread count.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from . import conv_direct
from .parallel import _MIN_TASK_MACS, get_threads, run_tasks

CHANNELS = conv_direct._CHANNELS  # b's columns per micro-kernel call
WIDE = conv_direct.WIDE
# Column blocks run as tasks above this many multiply-adds (parallel.py's GEMM split).
_MIN_SPLIT_MACS = 12_000_000


def applies(b):
    """Whether matmul computes a @ b: b's columns a multiple of the micro-kernel's 16."""
    return b.shape[1] % CHANNELS == 0 and b.dtype in (np.float32, np.float64)


@njit(cache=True, nogil=True)
def _micro(af, a0, bf, b0, of, o0, k, n, wide):
    if wide:
        conv_direct._wide_micro_kernel(af, a0, bf, b0, of, o0, k, n, 0, 1, 1)
    else:
        conv_direct._micro_kernel(af, a0, bf, b0, of, o0, k, n, 0, 1, 1)


@njit(cache=True, nogil=True)
def _add_bias(of, row0, rows, n, co, bias):
    """Adds bias[co:co + 16] to `rows` rows of the 16 columns from co (row length n), just
    written by the micro-kernel and still in L1."""
    for r in range(row0, row0 + rows):
        for j in range(co, co + CHANNELS):
            of[r * n + j] += bias[j]


@njit(cache=True, nogil=True)
def matmul_columns(a, b, out, c0, c1, bias, has_bias, wide):
    """out[:, c0:c1] = a @ b[:, c0:c1] (+ bias[c0:c1] if has_bias; c0, c1 multiples of
    16): full blocks of rows in place, the last rows through a zero-padded copy (the
    micro-kernel reads and writes a whole block)."""
    m, k = a.shape
    n = b.shape[1]
    pixels = conv_direct._block_pixels(wide, a.itemsize)
    af, bf, of = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    full = m - m % pixels
    for co in range(c0, c1, CHANNELS):
        for p0 in range(0, full, pixels):
            _micro(af, p0 * k, bf, co, of, p0 * n + co, k, n, wide)
            if has_bias:
                _add_bias(of, p0, pixels, n, co, bias)
    if full < m:
        rest = m - full
        tail_a = np.zeros(pixels * k, a.dtype)
        tail_a[: rest * k] = af[full * k :]
        tail_out = np.empty(pixels * n, a.dtype)
        for co in range(c0, c1, CHANNELS):
            _micro(tail_a, 0, bf, co, tail_out, co, k, n, wide)
            if has_bias:
                _add_bias(tail_out, 0, rest, n, co, bias)
        for r in range(rest):
            for j in range(c0, c1):
                of[(full + r) * n + j] = tail_out[r * n + j]


def matmul(a, b, out, bias=None):
    """out = a @ b (+ bias, broadcast over rows) for C-contiguous a (M, K), b (K, N), out
    (M, N) and bias (N,) of one float dtype, N a multiple of 16 (see applies). Column
    blocks run as tasks on get_threads() threads above _MIN_SPLIT_MACS multiply-adds."""
    m, k = a.shape
    n = b.shape[1]
    blocks = n // CHANNELS
    tasks = min(get_threads(), blocks) if m * k * n >= _MIN_SPLIT_MACS else 1
    has_bias = bias is not None
    bias = bias if has_bias else np.empty(0, out.dtype)  # never read
    if tasks == 1:
        matmul_columns(a, b, out, 0, n, bias, has_bias, WIDE)
        return out
    bounds = [(blocks * t // tasks * CHANNELS, blocks * (t + 1) // tasks * CHANNELS) for t in range(tasks)]
    run_tasks(lambda t: matmul_columns(a, b, out, *bounds[t], bias, has_bias, WIDE), tasks)
    return out


def matmuls(*products):
    """out = a @ b for every (a, b, out) (as matmul, no bias), each product whole as one
    task of one run_tasks when together they hold at least parallel._MIN_TASK_MACS
    multiply-adds (a layer's dx and dW: one hand-off, the second thread takes one GEMM)."""
    if sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in products) < _MIN_TASK_MACS:
        for a, b, out in products:
            matmul_columns(a, b, out, 0, b.shape[1], np.empty(0, out.dtype), False, WIDE)
        return

    def product_task(i):
        a, b, out = products[i]
        matmul_columns(a, b, out, 0, b.shape[1], np.empty(0, out.dtype), False, WIDE)

    run_tasks(product_task, len(products))


def _butterfly_masks(s):
    """shufflevector masks of one stage of the 16 x 16 transpose: rows i and i + s (i & s
    == 0) swap their off-diagonal s x s blocks (lanes 16-31 index the second row)."""
    low = [lane if not lane & s else 16 + lane - s for lane in range(16)]
    high = [lane + s if not lane & s else 16 + lane for lane in range(16)]
    return low, high


@intrinsic
def _transpose_tile(typingctx, a, a0, lda, out, o0, ldo):
    """out[o0 + j*ldo + i] = a[a0 + i*lda + j] for i, j < 16 (flat float32 arrays): 16
    vector loads, 4 stages of 16 shuffles (blocks of 8, 4, 2, 1 swapped), 16 stores."""
    if a.dtype != types.float32 or out.dtype != types.float32:
        return None
    sig = types.void(a, types.int64, types.int64, out, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        aa, ao, la, oa, oo, lo = args
        a_ptr = context.make_array(signature.args[0])(context, builder, aa).data
        o_ptr = context.make_array(signature.args[3])(context, builder, oa).data
        vec = ir.VectorType(ir.FloatType(), 16)
        i64 = ir.IntType(64)

        def row(ptr, base, stride, i):
            at = builder.add(base, builder.mul(ir.Constant(i64, i), stride))
            return builder.bitcast(builder.gep(ptr, [at]), vec.as_pointer())

        rows = [builder.load(row(a_ptr, ao, la, i), align=4) for i in range(16)]
        for s in (8, 4, 2, 1):
            low, high = (ir.Constant(ir.VectorType(ir.IntType(32), 16), m) for m in _butterfly_masks(s))
            swapped = list(rows)
            for i in (i for i in range(16) if not i & s):
                swapped[i] = builder.shuffle_vector(rows[i], rows[i + s], low)
                swapped[i + s] = builder.shuffle_vector(rows[i], rows[i + s], high)
            rows = swapped
        for i in range(16):
            builder.store(rows[i], row(o_ptr, oo, lo, i), align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _transpose_tiles(a, out):
    """out = a.T on the full 16 x 16 tiles of float32 a (rows and columns below r - r % 16,
    c - c % 16), tile by tile along a's rows."""
    r, c = a.shape
    af, of = a.reshape(-1), out.reshape(-1)
    for i0 in range(0, r - r % 16, 16):
        for j0 in range(0, c - c % 16, 16):
            _transpose_tile(af, i0 * c + j0, c, of, j0 * r + i0, r)


@njit(cache=True, nogil=True)
def _transpose_loops(a, out, tiles_done):
    """out = a.T by loops: the full 16 x 16 tiles unless tiles_done (each row of out gets a
    16-value run, a tile's rows of a stay in L1), then the edges."""
    r, c = a.shape
    r16, c16 = r - r % 16, c - c % 16
    if not tiles_done:
        for i0 in range(0, r16, 16):
            for j0 in range(0, c16, 16):
                for j in range(j0, j0 + 16):
                    for i in range(16):
                        out[j, i0 + i] = a[i0 + i, j]
    for j in range(c16, c):
        for i in range(r16):
            out[j, i] = a[i, j]
    for j in range(c):
        for i in range(r16, r):
            out[j, i] = a[i, j]


def empty(shape, dtype):
    """np.empty whose data starts on a 64-byte boundary (a cache line, one 512-bit vector):
    the micro-kernel's vectors of b and out then never straddle two lines. (1024, 64) @
    (64, 512) ran 0.74 ms aligned, up to 0.91 with b and out 16 bytes off."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize  # np.prod costs 3 us here
    buf = np.empty(size + 64, np.uint8)
    start = -buf.ctypes.data % 64
    return buf[start : start + size].view(dtype).reshape(shape)


def transpose(a):
    """a.T as an aligned C-contiguous copy (see empty): 3-7x faster than numpy's copy of a
    (256, 512) float32 weight, whose power-of-two row stride makes its column reads
    collide in cache."""
    out = empty((a.shape[1], a.shape[0]), a.dtype)
    tiles = a.dtype == np.float32
    if tiles:
        _transpose_tiles(a, out)
    _transpose_loops(a, out, tiles)
    return out
