"""The convolutions' epilogue: bias and (capped) ReLU added to an output in place."""
import numpy as np
from numba import njit, uint64


@njit(cache=True, nogil=True)
def bias_relu(y2d, b, has_bias, relu, cap):
    """y += b and/or y = min(max(y, 0), cap), in place (cap inf: plain ReLU).

    Rows shorter than 64 values are processed several at a time against a tiled
    bias, so that small Cout (LeNet's 6) still gets long vector loops.
    """
    if not has_bias and not relu:
        return
    cols = y2d.shape[1]
    yf = y2d.reshape(-1)
    zero = yf.dtype.type(0)
    block = max(1, 64 // cols) * cols
    tiled = np.zeros(block, yf.dtype)
    if has_bias:
        for j in range(block):
            tiled[j] = b[j % cols]
    start = 0
    while start < yf.size:
        j0 = uint64(start)
        for c in range(uint64(min(block, yf.size - start))):
            v = yf[j0 + c] + tiled[c]
            yf[j0 + c] = min(max(v, zero), cap) if relu else v
        start += block
    return
