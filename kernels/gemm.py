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
import numpy as np
from numba import njit

from . import conv_direct
from .parallel import get_threads, run_tasks

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
def matmul_columns(a, b, out, c0, c1, wide):
    """out[:, c0:c1] = a @ b[:, c0:c1] (c0, c1 multiples of 16): full blocks of rows in
    place, the last rows through a zero-padded copy (the micro-kernel reads and writes
    a whole block)."""
    m, k = a.shape
    n = b.shape[1]
    pixels = conv_direct._block_pixels(wide, a.itemsize)
    af, bf, of = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    full = m - m % pixels
    for co in range(c0, c1, CHANNELS):
        for p0 in range(0, full, pixels):
            _micro(af, p0 * k, bf, co, of, p0 * n + co, k, n, wide)
    if full < m:
        rest = m - full
        tail_a = np.zeros(pixels * k, a.dtype)
        tail_a[: rest * k] = af[full * k :]
        tail_out = np.empty(pixels * n, a.dtype)
        for co in range(c0, c1, CHANNELS):
            _micro(tail_a, 0, bf, co, tail_out, co, k, n, wide)
        for r in range(rest):
            for j in range(c0, c1):
                of[(full + r) * n + j] = tail_out[r * n + j]


def matmul(a, b, out):
    """out = a @ b for C-contiguous a (M, K), b (K, N) and out (M, N) of one float dtype,
    N a multiple of 16 (see applies). Column blocks run as tasks on get_threads() threads
    above _MIN_SPLIT_MACS multiply-adds."""
    m, k = a.shape
    n = b.shape[1]
    blocks = n // CHANNELS
    tasks = min(get_threads(), blocks) if m * k * n >= _MIN_SPLIT_MACS else 1
    bounds = [(blocks * t // tasks * CHANNELS, blocks * (t + 1) // tasks * CHANNELS) for t in range(tasks)]
    run_tasks(lambda t: matmul_columns(a, b, out, *bounds[t], WIDE), tasks)
    return out


@njit(cache=True, nogil=True)
def _transpose(a, out):
    """out = a.T in 16 x 16 tiles (each row of out gets a 16-value run, which LLVM keeps
    in a vector, and a tile's 16 rows of a stay in L1), then the edges."""
    r, c = a.shape
    r16, c16 = r - r % 16, c - c % 16
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
    size = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(size + 64, np.uint8)
    start = -buf.ctypes.data % 64
    return buf[start : start + size].view(dtype).reshape(shape)


def transpose(a):
    """a.T as an aligned C-contiguous copy (see empty): 3-7x faster than numpy's copy of a
    (256, 512) float32 weight, whose power-of-two row stride makes its column reads
    collide in cache."""
    out = empty((a.shape[1], a.shape[0]), a.dtype)
    _transpose(a, out)
    return out
