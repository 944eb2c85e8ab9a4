"""Elementwise activations and last-axis softmax, forward and backward.

Every backward has the same signature, `<name>_backward(x, y, grad_y, *params) -> dx`,
so layers can treat activations alike; the one of x or y a backward does not read
may be None. Measured on this machine (1M float32, one thread): branchy kernels
without transcendentals (relu and friends, every backward) are 2-4x faster as one
numba pass than as numpy ufunc chains; exp/tanh are ~4-6x faster in numpy, whose
ufuncs are SIMD-vectorised while numba calls scalar libm. Each kernel uses the
faster of the two. The ReLU passes (the ones ResNet-20 and LeNet-5 train with) run
in blocks of >= _RELU_BLOCK values over the kernel threads (parallel.for_blocks).
"""
import numpy as np
from numba import njit

from ._checks import check_array, check_same_dtype, check_shape
from .parallel import for_blocks

# Values per block of a ReLU pass. A hand-off to a spinning pool thread costs a few us
# (kernels/parallel.py), so blocks of 256K values (~30-60 us) pay: in a two-thread
# ResNet-20 step add + ReLU took 3.0-3.4 -> 2.3 ms, its backward 2.8-3.3 -> 2.1-2.2 ms
# against 2M-value blocks (which its 1M-value passes never filled).
_RELU_BLOCK = 1 << 18


def _check_real(name, v):
    if not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, received {v!r}")
    return float(v)


def _forward_arrays(x):
    """Validated x and a fresh output of its shape and dtype."""
    check_array("x", x)
    return x, np.empty_like(x)


def _backward_arrays(grad_y, **used):
    """Validate grad_y and the forward arrays a backward reads (same shape and dtype)."""
    check_array("grad_y", grad_y)
    for name, a in used.items():
        if a is None:
            raise ValueError(f"{name}: expected a numpy array, received None")
        check_array(name, a)
        check_shape(name, a, grad_y.shape)
    check_same_dtype(grad_y=grad_y, **used)
    return np.empty_like(grad_y)


@njit(cache=True, nogil=True)
def _relu_fwd(x, y):
    for i in range(x.size):
        v = x[i]
        y[i] = 0 if v <= 0 else v  # NaN passes through, as in torch


@njit(cache=True, nogil=True)
def _relu_bwd(x, g, dx):
    for i in range(x.size):
        dx[i] = 0 if x[i] <= 0 else g[i]


def relu(x):
    """max(x, 0), elementwise; y like x."""
    x, y = _forward_arrays(x)
    xf, yf = x.reshape(-1), y.reshape(-1)
    for_blocks(lambda i, j: _relu_fwd(xf[i:j], yf[i:j]), xf.size, min_elements=_RELU_BLOCK)
    return y


def relu_inplace(x):
    """max(x, 0) written into x (for fused use where x is not needed again); returns x."""
    check_array("x", x)
    flat = x.reshape(-1)
    for_blocks(lambda i, j: _relu_fwd(flat[i:j], flat[i:j]), flat.size, min_elements=_RELU_BLOCK)
    return x


@njit(cache=True, nogil=True)
def _add_relu_fwd(a, b, y):
    for i in range(a.size):
        v = a[i] + b[i]
        y[i] = 0 if v <= 0 else v


def add_relu(a, b):
    """max(a + b, 0) in one pass (a residual block's end); y like a. Its backward is
    relu_backward(y, None, grad_y): y > 0 exactly where a + b > 0."""
    a, y = _forward_arrays(a)
    check_array("b", b)
    check_shape("b", b, a.shape)
    check_same_dtype(a=a, b=b)
    af, bf, yf = a.reshape(-1), b.reshape(-1), y.reshape(-1)
    for_blocks(lambda i, j: _add_relu_fwd(af[i:j], bf[i:j], yf[i:j]), af.size, min_elements=_RELU_BLOCK)
    return y


def relu_backward(x, y, grad_y):
    """grad_y where x > 0, else 0 (y unused)."""
    dx = _backward_arrays(grad_y, x=x)
    xf, gf, dxf = x.reshape(-1), grad_y.reshape(-1), dx.reshape(-1)
    for_blocks(lambda i, j: _relu_bwd(xf[i:j], gf[i:j], dxf[i:j]), xf.size, min_elements=_RELU_BLOCK)
    return dx


@njit(cache=True)
def _relu6_fwd(x, y):
    for i in range(x.size):
        v = x[i]
        y[i] = 0 if v <= 0 else (6 if v >= 6 else v)


@njit(cache=True)
def _relu6_bwd(x, g, dx):
    for i in range(x.size):
        v = x[i]
        dx[i] = g[i] if 0 < v < 6 else 0


def relu6(x):
    """min(max(x, 0), 6) (torch hardtanh(0, 6)); y like x."""
    x, y = _forward_arrays(x)
    _relu6_fwd(x.reshape(-1), y.reshape(-1))
    return y


def relu6_backward(x, y, grad_y):
    """grad_y where 0 < x < 6, else 0 (y unused)."""
    dx = _backward_arrays(grad_y, x=x)
    _relu6_bwd(x.reshape(-1), grad_y.reshape(-1), dx.reshape(-1))
    return dx


@njit(cache=True)
def _leaky_fwd(x, slope, y):
    for i in range(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@njit(cache=True)
def _leaky_bwd(x, g, slope, dx):
    for i in range(x.size):
        dx[i] = g[i] if x[i] > 0 else g[i] * slope


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x; y like x."""
    slope = _check_real("negative_slope", negative_slope)
    x, y = _forward_arrays(x)
    _leaky_fwd(x.reshape(-1), slope, y.reshape(-1))
    return y


def leaky_relu_backward(x, y, grad_y, negative_slope=0.01):
    """grad_y where x > 0, else negative_slope * grad_y (y unused)."""
    slope = _check_real("negative_slope", negative_slope)
    dx = _backward_arrays(grad_y, x=x)
    _leaky_bwd(x.reshape(-1), grad_y.reshape(-1), slope, dx.reshape(-1))
    return dx


@njit(cache=True)
def _elu_bwd(x, y, g, alpha, dx):
    # For x <= 0, d/dx alpha * (exp(x) - 1) = alpha * exp(x) = y + alpha.
    for i in range(x.size):
        dx[i] = g[i] if x[i] > 0 else g[i] * (y[i] + alpha)


def elu(x, alpha=1.0):
    """x where x > 0, else alpha * (exp(x) - 1); y like x."""
    alpha = _check_real("alpha", alpha)
    x, y = _forward_arrays(x)
    # max(x, 0) + alpha * expm1(min(x, 0)) is the piecewise formula without a branch.
    np.minimum(x, 0, out=y)
    np.expm1(y, out=y)
    y *= alpha
    y += np.maximum(x, 0)
    return y


def elu_backward(x, y, grad_y, alpha=1.0):
    """grad_y where x > 0, else grad_y * (y + alpha); reads x and y."""
    alpha = _check_real("alpha", alpha)
    dx = _backward_arrays(grad_y, x=x, y=y)
    _elu_bwd(x.reshape(-1), y.reshape(-1), grad_y.reshape(-1), alpha, dx.reshape(-1))
    return dx


@njit(cache=True)
def _tanh_bwd(y, g, dx):
    for i in range(y.size):
        dx[i] = g[i] * (1 - y[i] * y[i])


def tanh(x):
    """tanh(x); y like x."""
    x, y = _forward_arrays(x)
    np.tanh(x, out=y)
    return y


def tanh_backward(x, y, grad_y):
    """grad_y * (1 - y^2) (x unused)."""
    dx = _backward_arrays(grad_y, y=y)
    _tanh_bwd(y.reshape(-1), grad_y.reshape(-1), dx.reshape(-1))
    return dx


@njit(cache=True)
def _sigmoid_bwd(y, g, dx):
    for i in range(y.size):
        dx[i] = g[i] * y[i] * (1 - y[i])


def sigmoid(x):
    """1 / (1 + exp(-x)); y like x."""
    x, y = _forward_arrays(x)
    np.negative(x, out=y)
    # exp overflows to inf for x < -88 (float32), and 1 / (1 + inf) = 0 is right.
    with np.errstate(over="ignore"):
        np.exp(y, out=y)
    y += 1
    np.reciprocal(y, out=y)
    return y


def sigmoid_backward(x, y, grad_y):
    """grad_y * y * (1 - y) (x unused)."""
    dx = _backward_arrays(grad_y, y=y)
    _sigmoid_bwd(y.reshape(-1), grad_y.reshape(-1), dx.reshape(-1))
    return dx


def _check_last_axis(x):
    check_array("x", x)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x: expected a non-empty last axis, received shape {x.shape}")


def softmax(x):
    """exp(x) / sum(exp(x)) over the last axis; y like x."""
    _check_last_axis(x)
    y = x - x.max(axis=-1, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=-1, keepdims=True)
    return y


@njit(cache=True)
def _softmax_bwd(y, g, dx):
    # dx = y * (g - sum(g * y)) per row.
    m, c_ = y.shape
    for i in range(m):
        s = 0.0
        for c in range(c_):
            s += g[i, c] * y[i, c]
        for c in range(c_):
            dx[i, c] = y[i, c] * (g[i, c] - s)


def softmax_backward(x, y, grad_y):
    """y * (grad_y - sum(grad_y * y)) over the last axis (x unused)."""
    _check_last_axis(grad_y)
    dx = _backward_arrays(grad_y, y=y)
    c = y.shape[-1]
    _softmax_bwd(y.reshape(-1, c), grad_y.reshape(-1, c), dx.reshape(-1, c))
    return dx


def log_softmax(x):
    """x - log(sum(exp(x))) over the last axis, computed after subtracting the max."""
    _check_last_axis(x)
    y = x - x.max(axis=-1, keepdims=True)
    e = np.exp(y)
    y -= np.log(e.sum(axis=-1, keepdims=True))
    return y


def log_softmax_backward(x, y, grad_y):
    """grad_y - exp(y) * sum(grad_y) over the last axis (x unused)."""
    _check_last_axis(grad_y)
    dx = _backward_arrays(grad_y, y=y)
    np.exp(y, out=dx)
    dx *= -grad_y.sum(axis=-1, keepdims=True)
    dx += grad_y
    return dx
