"""Batch normalisation and cross-channel local response normalisation, channels last.

Both normalise over the last axis being channels: BatchNorm takes statistics over
every other axis, LRN sums squares over neighbouring channels of one position.
"""
import numpy as np
from numba import njit

from ._checks import check_array, check_same_dtype, check_shape
from .parallel import blocks, run_tasks, sum_in_order

# Values per row block of the BatchNorm passes (tasks). In a two-thread ResNet-20 step, its
# backward over 16x16x32 and 8x8x64 maps (512K and 256K values per batch, one block at
# parallel's default of 512K) took 4.3-4.6 -> 2.9-3.0 ms and 2.1-2.3 -> 1.8 ms in blocks
# of 128K, the forward and the 1M-value maps about the same.
_BLOCK = 1 << 17


def _rows(name, x):
    """x viewed as (M, C) rows of channels; x is (N, C) or (N, H, W, C)."""
    check_array(name, x)
    if x.ndim not in (2, 4):
        raise ValueError(f"{name}: expected shape (N, C) or (N, H, W, C), received {x.shape}")
    return x.reshape(-1, x.shape[-1])


def _check_channel_vector(name, v, x):
    if v is not None:
        check_array(name, v, ndim=1)
        check_shape(name, v, (x.shape[-1],))
    return v


def _check_float(name, v, low, low_inclusive=True, high=None):
    ok = isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)
    ok = ok and (v >= low if low_inclusive else v > low) and (high is None or v <= high)
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low}" + ("" if high is None else f" and <= {high}")
        raise ValueError(f"{name}: expected a finite number {bound}, received {v!r}")
    return float(v)


@njit(cache=True, nogil=True)
def _bn_sums(x, shift, s1, s2):
    # float64 sums of d = x - shift and d^2 per channel, written to s1, s2, in one pass
    # over x. The sums run in arrays of this call, not in s1, s2: those are rows of one
    # array that other threads' blocks write too, and a store per value into shared
    # cache lines made two threads 2x slower than one (docs/ARCHITECTURE.md, "Threads").
    # Eight rows per update of a1, a2, summed in x's dtype (shifted values, a few roundings
    # at most): one chain of loads and stores through a1, a2 and one conversion to
    # float64 per eight rows (per row, they bound the pass at a third of the memory
    # bandwidth).
    m, c_ = x.shape
    a1, a2 = np.zeros(c_), np.zeros(c_)
    sh = shift.astype(x.dtype)
    whole = m - m % 8
    for i in range(0, whole, 8):
        for c in range(c_):
            d0, d1 = x[i, c] - sh[c], x[i + 1, c] - sh[c]
            d2, d3 = x[i + 2, c] - sh[c], x[i + 3, c] - sh[c]
            d4, d5 = x[i + 4, c] - sh[c], x[i + 5, c] - sh[c]
            d6, d7 = x[i + 6, c] - sh[c], x[i + 7, c] - sh[c]
            a1[c] += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
            a2[c] += ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)) + ((d4 * d4 + d5 * d5) + (d6 * d6 + d7 * d7))
    for i in range(whole, m):
        for c in range(c_):
            d = x[i, c] - shift[c]
            a1[c] += d
            a2[c] += d * d
    s1[:] = a1
    s2[:] = a2


def _bn_stats(x):
    """(mean, var) per channel of x (M, C), float64. One pass over x (ResNet-20 stage 1,
    batch 64: 0.47 -> 0.29 ms; two passes before), in row blocks whose float64 sums are
    added in block order. Float64 sums of d = x - x[0] and d^2 (eight rows at a time
    summed in x's dtype): float32 running sums over N*H*W rows lose digits long before
    the batch gets large, and the shift by a sample of each channel keeps
    var = E[d^2] - E[d]^2 from cancelling when |mean| >> std."""
    m, c_ = x.shape
    shift = x[0].astype(np.float64)
    bounds = blocks(m, c_, _BLOCK)
    s1, s2 = np.zeros((len(bounds), c_)), np.zeros((len(bounds), c_))
    run_tasks(lambda t: _bn_sums(x[bounds[t][0]:bounds[t][1]], shift, s1[t], s2[t]), len(bounds))
    e = sum_in_order(s1) / m
    var = np.maximum(sum_in_order(s2) / m - e * e, 0.0)
    return shift + e, var


# A fused ReLU saves the separate pass over the output (and its backward the pass that
# masks the gradient): ResNet-20 normalises then rectifies 10 of its 21 BatchNorm outputs.
@njit(cache=True, nogil=True)
def _channel_affine(x, a, b, y, relu):
    # y = x * a + b per channel (then max(., 0) with relu; NaN passes, as in torch), one pass.
    m, c_ = x.shape
    for i in range(m):
        for c in range(c_):
            v = x[i, c] * a[c] + b[c]
            y[i, c] = 0 if relu and v <= 0 else v


def _channel_affine_blocks(x, a, b, y, relu):
    """_channel_affine over row blocks, as tasks."""
    bounds = blocks(x.shape[0], x.shape[1], _BLOCK)
    run_tasks(lambda t: _channel_affine(x[bounds[t][0]:bounds[t][1]], a, b, y[bounds[t][0]:bounds[t][1]], relu),
              len(bounds))


# Lines of the backward passes: k rows of C channels read as one flat run of k * C values
# (>= 128 unless C is larger), so the loops over a line vectorise whatever C is; per-channel
# operands are tiled k times to match.
_LINE_VALUES = 128


@njit(cache=True, nogil=True)
def _rows_per_line(c_):
    return max(1, _LINE_VALUES // c_)


@njit(cache=True, nogil=True)
def _tiled(v, k, dtype):
    # v (C,) repeated k times, as dtype
    c_ = v.shape[0]
    out = np.empty(k * c_, dtype)
    for u in range(k):
        for c in range(c_):
            out[u * c_ + c] = v[c]
    return out


@njit(cache=True, nogil=True)
def _lines(a, k):
    # the first (M // k) * k rows of a (M, C) as (M // k, k * C) lines
    m, c_ = a.shape
    return a[: m // k * k].reshape(m // k, k * c_)


@njit(cache=True, nogil=True)
def _bn_grad_sums(x, g, y, mean, relu, sum_g, sum_gxc):
    # Float64 sums of g and g * (x - mean) per channel, written to sum_g, sum_gxc; they
    # run in arrays of this call, as in _bn_sums, one per value of a line (see
    # _LINE_VALUES), folded to channels at the end. Every value goes to float64 at once:
    # summing eight lines in x's dtype first, as _bn_sums does, reads eight streams of
    # each array and was 2x slower from memory.
    # With relu, g is the gradient after the fused ReLU: only where y > 0 does it reach x
    # (a select, so a NaN in g where y <= 0 gives 0).
    m, c_ = x.shape
    k = _rows_per_line(c_)
    xl, gl, yl = _lines(x, k), _lines(g, k), _lines(y, k)
    lines, n = xl.shape
    mt = _tiled(mean, k, mean.dtype)
    a_g, a_gxc = np.zeros(n), np.zeros(n)
    for l in range(lines):
        for j in range(n):
            gv, yv = gl[l, j], yl[l, j]
            gi = gv if not relu or yv > 0 else 0
            a_g[j] += gi
            a_gxc[j] += gi * (xl[l, j] - mt[j])
    for c in range(c_):
        s, sx = 0.0, 0.0
        for u in range(k):
            s += a_g[u * c_ + c]
            sx += a_gxc[u * c_ + c]
        for i in range(lines * k, m):
            gi = g[i, c] if not relu or y[i, c] > 0 else 0
            s += gi
            sx += gi * (x[i, c] - mt[c])
        sum_g[c] = s
        sum_gxc[c] = sx


@njit(cache=True, nogil=True)
def _bn_dx(x, g, y, mean, p, q, r, dx, relu):
    # dx = p * g + q * (x - mean) + r per channel (g masked by y > 0 with relu), over lines.
    m, c_ = x.shape
    k = _rows_per_line(c_)
    xl, gl, yl, dl = _lines(x, k), _lines(g, k), _lines(y, k), _lines(dx, k)
    lines, n = xl.shape
    mt, pt, qt, rt = _tiled(mean, k, mean.dtype), _tiled(p, k, p.dtype), _tiled(q, k, q.dtype), _tiled(r, k, r.dtype)
    for l in range(lines):
        for j in range(n):
            gv, yv = gl[l, j], yl[l, j]
            gi = gv if not relu or yv > 0 else 0
            dl[l, j] = pt[j] * gi + qt[j] * (xl[l, j] - mt[j]) + rt[j]
    for i in range(lines * k, m):
        for c in range(c_):
            gi = g[i, c] if not relu or y[i, c] > 0 else 0
            dx[i, c] = p[c] * gi + q[c] * (x[i, c] - mean[c]) + r[c]


def _check_bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name}: expected a bool, received {v!r}")
    return bool(v)


def _affine_coefficients(gamma, beta, mean, invstd):
    a = invstd if gamma is None else gamma * invstd
    b = -mean * a if beta is None else beta - mean * a
    return a, b


def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5, relu=False):
    """Batch normalisation with batch statistics (training mode).

    Statistics are taken over every axis but the last (channels). The running
    statistics, when given, are updated in place like torch:
    r = (1 - momentum) * r + momentum * batch_stat, with the unbiased variance.

    Args:
        x: (N, C) or (N, H, W, C) float32 (or float64).
        gamma, beta: (C,) scale and shift, or None for 1 and 0.
        running_mean, running_var: (C,) buffers updated in place, or both None.
        momentum: weight of the batch statistic, in [0, 1].
        eps: added to the variance, > 0.
        relu: apply max(., 0) to the normalised output (fused; pass y to the backward).
    Returns:
        (y, save_mean, save_invstd): y like x; the batch mean and 1/sqrt(var + eps)
        as (C,) arrays of x's dtype, for batchnorm_backward.
    """
    x2 = _rows("x", x)
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        _check_channel_vector(name, v, x)
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "running_var: expected running_mean and running_var both given or both None, "
            f"received running_mean={type(running_mean).__name__}, running_var={type(running_var).__name__}"
        )
    momentum = _check_float("momentum", momentum, 0.0, high=1.0)
    eps = _check_float("eps", eps, 0.0, low_inclusive=False)
    relu = _check_bool("relu", relu)
    m = x2.shape[0]
    if m < 2:
        raise ValueError(f"x: expected more than 1 value per channel in training mode, received shape {x.shape}")
    mean, var = _bn_stats(x2)
    invstd = 1.0 / np.sqrt(var + eps)
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
        running_var *= 1.0 - momentum
        running_var += momentum * var * (m / (m - 1))
    a, b = _affine_coefficients(gamma, beta, mean, invstd)
    y = np.empty_like(x)
    _channel_affine_blocks(x2, a.astype(x.dtype), b.astype(x.dtype), y.reshape(x2.shape), relu)
    return y, mean.astype(x.dtype), invstd.astype(x.dtype)


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps=1e-5, relu=False):
    """Batch normalisation with the running statistics (inference mode).

    Args:
        x: (N, C) or (N, H, W, C); gamma, beta: (C,) or None; running_mean,
        running_var: (C,); eps > 0; relu: apply max(., 0) to the output (fused).
    Shape:
        y like x.
    """
    x2 = _rows("x", x)
    for name, v in (("gamma", gamma), ("beta", beta)):
        _check_channel_vector(name, v, x)
    for name, v in (("running_mean", running_mean), ("running_var", running_var)):
        if v is None:
            raise ValueError(f"{name}: expected a (C,) array in eval mode, received None")
        _check_channel_vector(name, v, x)
    eps = _check_float("eps", eps, 0.0, low_inclusive=False)
    relu = _check_bool("relu", relu)
    invstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    a, b = _affine_coefficients(gamma, beta, running_mean.astype(np.float64), invstd)
    y = np.empty_like(x)
    _channel_affine_blocks(x2, a.astype(x.dtype), b.astype(x.dtype), y.reshape(x2.shape), relu)
    return y


def batchnorm_backward(x, gamma, grad_y, save_mean, save_invstd, training=True, y=None):
    """Gradients of batch normalisation.

    Args:
        x: the forward input; gamma: (C,) or None (scale 1).
        grad_y: dL/dy, shaped like x.
        save_mean, save_invstd: from batchnorm_forward_train; for a forward in
            eval mode pass running_mean and 1 / sqrt(running_var + eps) with
            training=False (the statistics are then constants).
        training: whether the statistics depended on x (batch statistics).
        y: the forward's output when it fused a ReLU (relu=True): grad_y is then the
            gradient after the ReLU and only reaches x where y > 0.
    Returns:
        (dx, dgamma, dbeta): dx like x, dgamma and dbeta (C,).
    """
    x2 = _rows("x", x)
    check_array("grad_y", grad_y)
    check_shape("grad_y", grad_y, x.shape)
    check_same_dtype(x=x, grad_y=grad_y)
    _check_channel_vector("gamma", gamma, x)
    for name, v in (("save_mean", save_mean), ("save_invstd", save_invstd)):
        if v is None:
            raise ValueError(f"{name}: expected a (C,) array, received None")
        _check_channel_vector(name, v, x)
    relu = y is not None
    if relu:
        check_array("y", y)
        check_shape("y", y, x.shape)
        check_same_dtype(x=x, y=y)
    g2 = grad_y.reshape(x2.shape)
    y2 = y.reshape(x2.shape) if relu else g2  # not read without relu
    m = x2.shape[0]
    mean = save_mean.astype(np.float64)
    invstd = save_invstd.astype(np.float64)
    bounds = blocks(m, x2.shape[1], _BLOCK)
    part_g, part_gxc = np.zeros((len(bounds), x2.shape[1])), np.zeros((len(bounds), x2.shape[1]))

    def sums_task(t):
        rows = slice(*bounds[t])
        _bn_grad_sums(x2[rows], g2[rows], y2[rows], mean, relu, part_g[t], part_gxc[t])

    run_tasks(sums_task, len(bounds))
    sum_g, sum_gxc = sum_in_order(part_g), sum_in_order(part_gxc)
    dgamma = sum_gxc * invstd
    p = invstd if gamma is None else gamma * invstd
    if training:
        q = -p * invstd * dgamma / m
        r = -p * sum_g / m
    else:
        q = r = np.zeros_like(p)
    dx = np.empty_like(x)
    dx2 = dx.reshape(x2.shape)

    def dx_task(t):
        rows = slice(*bounds[t])
        _bn_dx(x2[rows], g2[rows], y2[rows], mean, p, q, r, dx2[rows], relu)

    run_tasks(dx_task, len(bounds))
    return dx, dgamma.astype(x.dtype), sum_g.astype(x.dtype)


@njit(cache=True)
def _pow_neg(s, beta):
    # s ** -beta; beta = 0.75 (AlexNet, GoogLeNet) via two square roots, ~4x faster than pow.
    if beta == 0.75:
        return 1.0 / np.sqrt(s * np.sqrt(s))
    return s ** -beta


@njit(cache=True)
def _lrn_fwd(x, size, alpha, beta, k, y, scale):
    # Sliding window over channels [c - size//2, c + (size-1)//2], zero outside.
    m, c_ = x.shape
    before, after = size // 2, (size - 1) // 2
    coef = alpha / size
    for i in range(m):
        s = 0.0
        for j in range(min(after, c_)):
            s += np.float64(x[i, j]) * x[i, j]
        for c in range(c_):
            if c + after < c_:
                s += np.float64(x[i, c + after]) * x[i, c + after]
            if c - before - 1 >= 0:
                s -= np.float64(x[i, c - before - 1]) * x[i, c - before - 1]
            sc = k + coef * s
            scale[i, c] = sc
            y[i, c] = x[i, c] * _pow_neg(sc, beta)


@njit(cache=True)
def _lrn_bwd(x, y, scale, g, size, alpha, beta, dx):
    # Channel j's window covers c when j - size//2 <= c <= j + (size-1)//2, so c
    # collects the terms of channels [c - (size-1)//2, c + size//2].
    m, c_ = x.shape
    before, after = size // 2, (size - 1) // 2
    coef = 2.0 * alpha * beta / size
    t = np.empty(c_)
    for i in range(m):
        for c in range(c_):
            t[c] = g[i, c] * y[i, c] / scale[i, c]
        s = 0.0
        for j in range(min(before, c_)):
            s += t[j]
        for c in range(c_):
            if c + before < c_:
                s += t[c + before]
            if c - after - 1 >= 0:
                s -= t[c - after - 1]
            dx[i, c] = g[i, c] * _pow_neg(scale[i, c], beta) - coef * x[i, c] * s


def _lrn_params(size, alpha, beta, k):
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size: expected an integer >= 1, received {size!r}")
    return (int(size), _check_float("alpha", alpha, 0.0), _check_float("beta", beta, 0.0),
            _check_float("k", k, 0.0, low_inclusive=False))


def _lrn_rows(name, x):
    check_array(name, x)
    if x.ndim < 2:
        raise ValueError(f"{name}: expected channels on the last axis of a >= 2-D array, received shape {x.shape}")
    return x.reshape(-1, x.shape[-1])


def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Cross-channel local response normalisation (torch local_response_norm).

    scale = k + alpha / size * sum of x^2 over channels [c - size//2, c + (size-1)//2]
    (zero beyond the edges), y = x * scale^-beta.

    Args:
        x: (..., C), channels last, e.g. (N, H, W, C).
        size: number of channels in the window; alpha, beta >= 0; k > 0.
    Returns:
        (y, scale), both shaped like x.
    """
    x2 = _lrn_rows("x", x)
    size, alpha, beta, k = _lrn_params(size, alpha, beta, k)
    y = np.empty_like(x)
    scale = np.empty_like(x)
    _lrn_fwd(x2, size, alpha, beta, k, y.reshape(x2.shape), scale.reshape(x2.shape))
    return y, scale


def lrn_backward(x, y, scale, grad_y, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of lrn_forward (same size, alpha, beta, k); returns dx like x."""
    x2 = _lrn_rows("x", x)
    size, alpha, beta, k = _lrn_params(size, alpha, beta, k)
    for name, v in (("y", y), ("scale", scale), ("grad_y", grad_y)):
        check_array(name, v)
        check_shape(name, v, x.shape)
    check_same_dtype(x=x, y=y, scale=scale, grad_y=grad_y)
    dx = np.empty_like(x)
    _lrn_bwd(x2, y.reshape(x2.shape), scale.reshape(x2.shape), grad_y.reshape(x2.shape),
             size, alpha, beta, dx.reshape(x2.shape))
    return dx
