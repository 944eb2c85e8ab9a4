"""out = a @ b by register-blocked micro-kernels in LLVM IR: the direct convolution's
forward micro-kernel (conv_direct.py) with one tap, rows of a for pixels, b for the
(Cin, Cout) weight, and the bias as the accumulators' start.

Where b's columns come in blocks of 16 this beats OpenBLAS on the layers' shapes (Zen 4,
one thread, float32): (128, 512) @ (512, 256) 0.29 ms against sgemm's 0.33 (b
contiguous) and 0.38 (b = w.T, a transposed view), the LSTM's per-step (32, 128) @
(128, 512) 37 us against 53 / 73: OpenBLAS packs both operands on every call, the
micro-kernel reads b in place. Long K with few columns is the exception (dW of an LSTM
over T*N = 1024 rows: 1.8x slower than sgemm).

Every output value is one micro-kernel's sum over k in order, whichever block of rows or
columns it falls in, so the bits depend neither on the blocks nor on the thread count.
"""
import math

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from .parallel import _MIN_SPLIT_MACS, _MIN_TASK_MACS, get_threads, run_tasks

CHANNELS = 16  # b's columns per micro-kernel call
# 512-bit vectors where the host has AVX-512 (read once; tests set it to run either width:
# LLVM lowers 512-bit vectors to pairs of 256-bit ones on AVX2, slower but exact).
WIDE = bool(llvm.get_host_cpu_features().get("avx512f", False))


def applies(b):
    """Whether matmul computes a @ b: b's columns a multiple of the micro-kernel's 16."""
    return b.shape[1] % CHANNELS == 0 and b.dtype in (np.float32, np.float64)


@register_jitable
def _block_rows(wide, itemsize):
    """Rows of a per micro-kernel call: 16 (float32) or 8 (float64) with 512-bit vectors,
    filling AVX-512's registers as the direct conv's forward does, else 6 (AVX2's 16)."""
    return (16 if itemsize == 4 else 8) if wide else 6


def _micro_kernel(bits):
    """The micro-kernel on `bits`-wide vectors (an intrinsic): for p < _block_rows(bits ==
    512, itemsize), j < 16 (flat arrays, int64 offsets)
    out[o0 + p*ldo + j] = bias[j0 + j] (0 unless has_bias) + sum over c < k in order of
    a[a0 + p*k + c] * b[b0 + c*n + j].
    The direct conv's forward micro-kernel with one tap, the bias as the accumulators'
    start (a pass adding it after the GEMM cost 19 us of 0.33 ms at (128, 512) -> 256)."""
    def micro_kernel(typingctx, a, a0, b, b0, out, o0, k, n, ldo, bias, j0, has_bias):
        return _micro_codegen(bits, a, b, out, bias)
    micro_kernel.__name__ = f"gemm_micro_kernel_{bits}"
    return intrinsic(micro_kernel)


def _micro_codegen(bits, a, b, out, bias):
    dtype = a.dtype
    if dtype not in (types.float32, types.float64) or any(t.dtype != dtype for t in (b, out, bias)):
        return None
    rows = _block_rows(bits == 512, dtype.bitwidth // 8)
    i64 = types.int64
    sig = types.void(a, i64, b, i64, out, i64, i64, i64, i64, bias, i64, types.boolean)

    def codegen(context, builder, signature, args):
        aa, ao, ba, bo, oa, oo, k_, n_, ldo_, bias_a, jo, has_bias_ = args
        a_ptr, b_ptr, o_ptr, bias_ptr = (context.make_array(signature.args[i])(context, builder, arr).data
                                         for i, arr in ((0, aa), (2, ba), (4, oa), (9, bias_a)))
        scalar = ir.FloatType() if dtype == types.float32 else ir.DoubleType()
        lanes = bits // dtype.bitwidth
        vec = ir.VectorType(scalar, lanes)
        align = dtype.bitwidth // 8
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{lanes}f{dtype.bitwidth}")
        zero_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        n_vec = CHANNELS // lanes
        lane_offsets = [ir.Constant(ir.IntType(64), v * lanes) for v in range(n_vec)]

        def vector_at(ptr, at):
            return builder.bitcast(builder.gep(ptr, [at]), vec.as_pointer())

        acc = [[cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * lanes)) for _ in range(n_vec)]
               for _ in range(rows)]
        with builder.if_then(has_bias_):
            for v in range(n_vec):
                start = builder.load(vector_at(bias_ptr, builder.add(jo, lane_offsets[v])), align=align)
                for p in range(rows):
                    builder.store(start, acc[p][v])
        with cgutils.for_range(builder, k_) as loop_c:
            c = loop_c.index
            b_row = builder.add(bo, builder.mul(c, n_))
            b_vectors = [builder.load(vector_at(b_ptr, builder.add(b_row, lane_offsets[v])), align=align)
                         for v in range(n_vec)]
            for p in range(rows):
                at = builder.add(builder.add(ao, builder.mul(ir.Constant(ir.IntType(64), p), k_)), c)
                lane0 = builder.insert_element(ir.Constant(vec, ir.Undefined), builder.load(builder.gep(a_ptr, [at])),
                                               ir.Constant(ir.IntType(32), 0))
                broadcast = builder.shuffle_vector(lane0, ir.Constant(vec, ir.Undefined), zero_mask)
                for v in range(n_vec):
                    builder.store(builder.call(fma, [broadcast, b_vectors[v], builder.load(acc[p][v])]), acc[p][v])
        for p in range(rows):
            row = builder.add(oo, builder.mul(ir.Constant(ir.IntType(64), p), ldo_))
            for v in range(n_vec):
                builder.store(builder.load(acc[p][v]), vector_at(o_ptr, builder.add(row, lane_offsets[v])), align=align)
        return context.get_dummy_value()

    return sig, codegen


_narrow_micro_kernel = _micro_kernel(256)
_wide_micro_kernel = _micro_kernel(512)


@njit(cache=True, nogil=True)
def _micro(af, a0, bf, b0, of, o0, k, n, ldo, bias, j0, has_bias, wide):
    if wide:
        _wide_micro_kernel(af, a0, bf, b0, of, o0, k, n, ldo, bias, j0, has_bias)
    else:
        _narrow_micro_kernel(af, a0, bf, b0, of, o0, k, n, ldo, bias, j0, has_bias)


@njit(cache=True, nogil=True)
def _row_blocks(a, b, co, out, oc, bias, has_bias, wide):
    """out[:m - m % rows, oc:oc + 16] = a @ b[:, co:co + 16] (+ bias[co:co + 16]), one
    micro-kernel call per full block of rows."""
    m, k = a.shape
    n, ldo = b.shape[1], out.shape[1]
    pixels = _block_rows(wide, a.itemsize)
    af, bf, of = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    for p0 in range(0, m - m % pixels, pixels):
        _micro(af, p0 * k, bf, co, of, p0 * ldo + oc, k, n, ldo, bias, co, has_bias, wide)


@njit(cache=True, nogil=True)
def _last_rows(a, b, c0, c1, out, oc0, bias, has_bias, wide):
    """The rows past the last full block (m % rows of them) of out[:, oc0:] = a @ b[:, c0:c1]
    (+ bias), through zero-padded copies (the micro-kernel reads and writes a whole block),
    copying out at most out's last column."""
    m, k = a.shape
    n = b.shape[1]
    pixels = _block_rows(wide, a.itemsize)
    full = m - m % pixels
    if full == m:
        return
    rest = m - full
    af, bf = a.reshape(-1), b.reshape(-1)
    tail_a = np.zeros(pixels * k, a.dtype)
    tail_a[: rest * k] = af[full * k :]
    tail_out = np.empty(pixels * CHANNELS, a.dtype)
    for co in range(c0, c1, CHANNELS):
        _micro(tail_a, 0, bf, co, tail_out, 0, k, n, CHANNELS, bias, co, has_bias, wide)
        oc = oc0 + co - c0
        for r in range(rest):
            for j in range(min(CHANNELS, out.shape[1] - oc)):
                out[full + r, oc + j] = tail_out[r * CHANNELS + j]


@njit(cache=True, nogil=True)
def matmul_columns(a, b, out, c0, c1, bias, has_bias, wide):
    """out[:, c0:c1] = a @ b[:, c0:c1] (+ bias[c0:c1] if has_bias; c0, c1 multiples of 16)."""
    for co in range(c0, c1, CHANNELS):
        _row_blocks(a, b, co, out, co, bias, has_bias, wide)
    _last_rows(a, b, c0, c1, out, c0, bias, has_bias, wide)


@njit(cache=True, nogil=True)
def _transpose_panel(w, w_t, co):
    """w_t[:, co:co + 16] = w[co:co + 16].T for float32 w (N, K): K // 16 in-register
    tiles, the last K % 16 rows of w_t by a loop; past w's N rows (w_t padded to whole
    panels) zeros."""
    n, k = w.shape
    ldt = w_t.shape[1]
    if co + CHANNELS > n:
        for kk in range(k):
            for j in range(CHANNELS):
                w_t[kk, co + j] = w[co + j, kk] if co + j < n else 0
        return
    wf, tf = w.reshape(-1), w_t.reshape(-1)
    k16 = k - k % 16
    for k0 in range(0, k16, 16):
        _transpose_tile(wf, co * k + k0, k, tf, k0 * ldt + co, ldt)
    for kk in range(k16, k):
        for j in range(CHANNELS):
            w_t[kk, co + j] = w[co + j, kk]


@njit(cache=True, nogil=True)
def matmul_t_columns(a, w, w_t, out, c0, c1, bias, has_bias, wide):
    """out[:, c0:min(c1, N)] = a @ w[c0:c1].T (+ bias) for float32 w (N, K), each 16-column
    panel of w.T transposed into w_t just before the micro-kernel reads it (from L1); a
    last panel past N columns (w_t and bias padded) runs into a scratch panel whose valid
    columns are copied out."""
    n = out.shape[1]
    for co in range(c0, c1, CHANNELS):
        _transpose_panel(w, w_t, co)
        if co + CHANNELS <= n:
            _row_blocks(a, w_t, co, out, co, bias, has_bias, wide)
        else:
            panel = np.empty((a.shape[0], CHANNELS), a.dtype)
            _row_blocks(a, w_t, co, panel, 0, bias, has_bias, wide)
            for r in range(a.shape[0]):
                for j in range(n - co):
                    out[r, co + j] = panel[r, j]
    _last_rows(a, w_t, c0, c1, out, c0, bias, has_bias, wide)


@njit(cache=True, nogil=True)
def _aligned_empty(rows, cols, dtype_of):
    """An uninitialised (rows, cols) array of dtype_of's dtype starting on a 64-byte boundary
    (see empty), from numba: no Python-level allocation."""
    item = dtype_of.itemsize
    buf = np.empty(rows * cols + 64 // item, dtype_of.dtype)
    start = -buf.ctypes.data % 64 // item
    return buf[start : start + rows * cols].reshape(rows, cols)


@njit(cache=True, nogil=True)
def _matmul_t_whole(a, w, out, bias, has_bias, wide):
    """matmul_t in one task, its buffers made here: the calls from Python it saves cost
    ~5 us, 5% of LeNet-5's (128, 256) -> 120."""
    n, k = w.shape
    padded = -(-n // CHANNELS) * CHANNELS
    if has_bias and padded != n:
        padded_bias = np.zeros(padded, bias.dtype)
        padded_bias[:n] = bias
        bias = padded_bias
    matmul_t_columns(a, w, _aligned_empty(k, padded, w), out, 0, padded, bias, has_bias, wide)


def _column_tasks(m, k, n):
    """[(c0, c1)]: out's columns in one block, or above parallel's _MIN_SPLIT_MACS
    multiply-adds one block of whole 16-column panels per thread."""
    blocks = n // CHANNELS
    tasks = min(get_threads(), blocks) if m * k * n >= _MIN_SPLIT_MACS else 1
    return [(blocks * t // tasks * CHANNELS, blocks * (t + 1) // tasks * CHANNELS) for t in range(tasks)]


def _run_columns(kernel, bounds):
    """kernel(c0, c1) for every column block, as tasks when there are several."""
    if len(bounds) == 1:
        kernel(*bounds[0])
    else:
        run_tasks(lambda t: kernel(*bounds[t]), len(bounds))


def matmul(a, b, out, bias=None):
    """out = a @ b (+ bias, broadcast over rows) for C-contiguous a (M, K), b (K, N), out
    (M, N) and bias (N,) of one float dtype, N a multiple of 16 (see applies). Column
    blocks run as tasks on get_threads() threads above _MIN_SPLIT_MACS multiply-adds."""
    has_bias = bias is not None
    bias = bias if has_bias else np.empty(0, out.dtype)  # never read
    _run_columns(lambda c0, c1: matmul_columns(a, b, out, c0, c1, bias, has_bias, WIDE),
                 _column_tasks(a.shape[0], a.shape[1], b.shape[1]))
    return out


def applies_t(w):
    """Whether matmul_t computes a @ w.T: w's rows a multiple of 16, or float32 w whose rows
    padded to whole panels of 16 waste at most a quarter of the work (LeNet-5's 120 and 84,
    not a 10-class output)."""
    pad = -w.shape[0] % CHANNELS
    return w.dtype in (np.float32, np.float64) and (pad == 0 or (w.dtype == np.float32 and 4 * pad <= w.shape[0]))


def matmul_t(a, w, out, bias=None):
    """out = a @ w.T (+ bias) for C-contiguous a (M, K), w (N, K), out (M, N) where
    applies_t(w), as matmul(a, transpose(w), out, bias). For float32 each task transposes
    its own panels of w just before using them (the transposed panel is read from L1, and
    two threads share the transposition); N not a multiple of 16 runs its last panel padded
    with zero rows of w into a scratch panel (matmul_t_columns)."""
    if w.dtype != np.float32:
        return matmul(a, transpose(w), out, bias)
    m, k = a.shape
    n = w.shape[0]
    padded = -(-n // CHANNELS) * CHANNELS
    has_bias = bias is not None
    bounds = _column_tasks(m, k, padded)
    if len(bounds) == 1:
        _matmul_t_whole(a, w, out, bias if has_bias else w[0], has_bias, WIDE)  # w[0]: never read
        return out
    if not has_bias:
        bias = np.empty(0, out.dtype)  # never read
    elif padded != n:
        bias = np.concatenate([bias, np.zeros(padded - n, bias.dtype)])
    w_t = empty((k, padded), w.dtype)
    _run_columns(lambda c0, c1: matmul_t_columns(a, w, w_t, out, c0, c1, bias, has_bias, WIDE), bounds)
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


@njit(cache=True)
def _address(buf):
    return buf.ctypes.data  # 0.2 us here, numpy's buf.ctypes.data 0.9


def empty(shape, dtype):
    """np.empty whose data starts on a 64-byte boundary (a cache line, one 512-bit vector):
    the micro-kernel's vectors of b and out then never straddle two lines. (1024, 64) @
    (64, 512) ran 0.74 ms aligned, up to 0.91 with b and out 16 bytes off."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)  # np.prod costs 3 us here
    buf = np.empty(count + 64 // dtype.itemsize, dtype)  # numpy aligns to the item at least
    start = -_address(buf) % 64 // dtype.itemsize
    return buf[start : start + count].reshape(shape)


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
