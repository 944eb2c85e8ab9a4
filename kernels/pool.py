"""Max, average and global average pooling on NHWC activations (PyTorch semantics).

Max pooling runs in blocks of whole images over the kernel threads (parallel.run_tasks).
"""
import numpy as np
from numba import njit

from ._checks import check_array, check_pair, check_shape
from .parallel import blocks, run_tasks


def _out_size(size, k, s, p, ceil_mode):
    # torch's pooling_output_shape: floor division rounds toward -inf, and in ceil
    # mode the last window must start inside the input or the left padding.
    out = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_params(x_shape, kernel, stride, padding, ceil_mode):
    """Validated (kh, kw, sh, sw, ph, pw, OH, OW) for an NHWC input shape."""
    x_shape = tuple(x_shape)
    if len(x_shape) != 4 or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in x_shape):
        raise ValueError(f"x_shape: expected 4 non-negative ints (N, H, W, C), received {x_shape!r}")
    kh, kw = check_pair("kernel", kernel, 1)
    sh, sw = (kh, kw) if stride is None else check_pair("stride", stride, 1)
    ph, pw = check_pair("padding", padding, 0)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"padding: expected at most half the kernel size {(kh, kw)}, received {padding!r}"
        )
    _, h, w, _ = x_shape
    oh = _out_size(h, kh, sh, ph, ceil_mode)
    ow = _out_size(w, kw, sw, pw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"x: input of spatial size {(h, w)} is too small for kernel {(kh, kw)} with padding "
            f"{(ph, pw)}: output would be {(oh, ow)}"
        )
    return kh, kw, sh, sw, ph, pw, oh, ow


def pool2d_output_shape(x_shape, kernel, stride=None, padding=0, ceil_mode=False):
    """Output shape (N, OH, OW, C) of a 2-D pooling over an (N, H, W, C) input.

    Args:
        kernel, stride, padding: int or (h, w) pair; stride defaults to kernel.
        ceil_mode: round the output size up, as torch (the last window must
            still start inside the input or the left padding).
    """
    *_, oh, ow = _pool_params(x_shape, kernel, stride, padding, ceil_mode)
    return (x_shape[0], oh, ow, x_shape[3])


@njit(cache=True, nogil=True)
def _maxpool_fwd(x, kh, kw, sh, sw, ph, pw, y, arg):
    n_, h_, w_, c_ = x.shape
    _, oh_, ow_, _ = y.shape
    # Running max kept in y and arg themselves, with branch-free selects over the
    # channel axis and plain indexing (no per-pixel array views: those cost more
    # than the comparisons on small windows).
    for n in range(n_):
        for oh in range(oh_):
            h0 = oh * sh - ph
            h1 = min(h0 + kh, h_)
            h0 = max(h0, 0)
            for ow in range(ow_):
                w0 = ow * sw - pw
                w1 = min(w0 + kw, w_)
                w0 = max(w0, 0)
                # Like torch: start at -inf pointing at the first valid element,
                # and a NaN always wins so it propagates.
                first = np.int32(h0 * w_ + w0)
                for c in range(c_):
                    y[n, oh, ow, c] = -np.inf
                    arg[n, oh, ow, c] = first
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        idx = np.int32(ih * w_ + iw)
                        for c in range(c_):
                            v = x[n, ih, iw, c]
                            b = y[n, oh, ow, c]
                            better = (v > b) | (v != v)
                            y[n, oh, ow, c] = v if better else b
                            arg[n, oh, ow, c] = idx if better else arg[n, oh, ow, c]


@njit(cache=True, nogil=True)
def _maxpool_bwd(g, arg, dx):
    # dx is (N, H*W, C); returns False if an argmax index is out of range.
    n_, oh_, ow_, c_ = g.shape
    hw = dx.shape[1]
    for n in range(n_):
        for oh in range(oh_):
            for ow in range(ow_):
                for c in range(c_):
                    idx = arg[n, oh, ow, c]
                    if idx < 0 or idx >= hw:
                        return False
                    dx[n, idx, c] += g[n, oh, ow, c]
    return True


def maxpool2d_forward(x, kernel, stride=None, padding=0, ceil_mode=False):
    """2-D max pooling; padding counts as -inf, as in torch.

    Args:
        x: (N, H, W, C) float32 (or float64).
        kernel, stride, padding: int or (h, w) pair; stride defaults to kernel.
        ceil_mode: round the output size up (torch rule).
    Returns:
        (y, argmax): y (N, OH, OW, C); argmax int32 of the same shape holding the
        flat h * W + w input index of each max (torch's return_indices).
    """
    check_array("x", x, ndim=4)
    kh, kw, sh, sw, ph, pw, oh, ow = _pool_params(x.shape, kernel, stride, padding, ceil_mode)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    images = _image_blocks(x)

    def block_task(t):
        i = slice(*images[t])
        _maxpool_fwd(x[i], kh, kw, sh, sw, ph, pw, y[i], arg[i])

    run_tasks(block_task, len(images))
    return y, arg


# Values per block of images: a max-pooling pass costs ~2.7 ns per input value here
# (LeNet-5's first pool, batch 128: 1.2 ms), so 128K values are ~350 us of work, a few
# task hand-offs' worth.
_POOL_BLOCK = 1 << 17


def _image_blocks(x):
    """[(start, stop)] of whole images of x (N, ...), one task each."""
    return blocks(x.shape[0], x[0].size if x.shape[0] else 1, min_elements=_POOL_BLOCK)


def maxpool2d_backward(grad_y, argmax, x_shape):
    """Gradient of maxpool2d_forward: each grad_y value goes to its argmax.

    Shape:
        grad_y, argmax (N, OH, OW, C); x_shape (N, H, W, C) -> dx (N, H, W, C).
    """
    check_array("grad_y", grad_y, ndim=4)
    check_array("argmax", argmax, ndim=4, dtype=np.int32)
    check_shape("argmax", argmax, grad_y.shape)
    x_shape = tuple(x_shape)
    if len(x_shape) != 4 or x_shape[0] != grad_y.shape[0] or x_shape[3] != grad_y.shape[3]:
        raise ValueError(
            f"x_shape: expected (N, H, W, C) with N, C = {grad_y.shape[0]}, {grad_y.shape[3]} "
            f"as in grad_y, received {x_shape!r}"
        )
    n, h, w, c = x_shape
    dx = np.zeros((n, h * w, c), dtype=grad_y.dtype)
    images = _image_blocks(dx)
    in_range = [True] * len(images)

    def block_task(t):
        i = slice(*images[t])
        in_range[t] = _maxpool_bwd(grad_y[i], argmax[i], dx[i])

    run_tasks(block_task, len(images))
    if not all(in_range):
        raise ValueError(f"argmax: expected indices in [0, {h * w}) for x_shape {x_shape}, received "
                         f"values in [{argmax.min()}, {argmax.max()}]")
    return dx.reshape(x_shape)


@njit(cache=True)
def _avg_window(o, s, p, k, size):
    """(start, stop, torch divisor length, in-bounds length) along one axis."""
    start = o * s - p
    stop = min(start + k, size + p)
    padded = stop - start
    start = max(start, 0)
    stop = min(stop, size)
    return start, stop, padded, stop - start


@njit(cache=True)
def _avgpool_fwd(x, kh, kw, sh, sw, ph, pw, include_pad, y):
    n_, h_, w_, c_ = x.shape
    _, oh_, ow_, _ = y.shape
    for n in range(n_):
        for oh in range(oh_):
            h0, h1, hp, hn = _avg_window(oh, sh, ph, kh, h_)
            for ow in range(ow_):
                w0, w1, wp, wn = _avg_window(ow, sw, pw, kw, w_)
                div = hp * wp if include_pad else hn * wn
                yv = y[n, oh, ow]
                yv[:] = 0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        xv = x[n, ih, iw]
                        for c in range(c_):
                            yv[c] += xv[c]
                for c in range(c_):
                    yv[c] /= div


@njit(cache=True)
def _avgpool_bwd(g, kh, kw, sh, sw, ph, pw, include_pad, dx):
    n_, h_, w_, c_ = dx.shape
    _, oh_, ow_, _ = g.shape
    gv = np.empty(c_, dtype=dx.dtype)
    for n in range(n_):
        for oh in range(oh_):
            h0, h1, hp, hn = _avg_window(oh, sh, ph, kh, h_)
            for ow in range(ow_):
                w0, w1, wp, wn = _avg_window(ow, sw, pw, kw, w_)
                div = hp * wp if include_pad else hn * wn
                for c in range(c_):
                    gv[c] = g[n, oh, ow, c] / div
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        dv = dx[n, ih, iw]
                        for c in range(c_):
                            dv[c] += gv[c]


def avgpool2d_forward(x, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2-D average pooling with torch's divisor rules.

    Args:
        x: (N, H, W, C) float32 (or float64).
        kernel, stride, padding: int or (h, w) pair; stride defaults to kernel.
        ceil_mode: round the output size up (torch rule); windows hanging past
            the right padding never count the overhang.
        count_include_pad: divide by the window size including zero padding
            (True) or by the number of input elements it covers (False).
    Shape:
        x (N, H, W, C) -> y (N, OH, OW, C).
    """
    check_array("x", x, ndim=4)
    kh, kw, sh, sw, ph, pw, oh, ow = _pool_params(x.shape, kernel, stride, padding, ceil_mode)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
    _avgpool_fwd(x, kh, kw, sh, sw, ph, pw, bool(count_include_pad), y)
    return y


def avgpool2d_backward(grad_y, x_shape, kernel, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True):
    """Gradient of avgpool2d_forward (same arguments); returns dx of shape x_shape."""
    check_array("grad_y", grad_y, ndim=4)
    kh, kw, sh, sw, ph, pw, oh, ow = _pool_params(x_shape, kernel, stride, padding, ceil_mode)
    n, _, _, c = x_shape
    check_shape("grad_y", grad_y, (n, oh, ow, c))
    dx = np.zeros(tuple(x_shape), dtype=grad_y.dtype)
    _avgpool_bwd(grad_y, kh, kw, sh, sw, ph, pw, bool(count_include_pad), dx)
    return dx


def global_avgpool_forward(x):
    """Mean over H and W.

    Shape:
        x (N, H, W, C) -> y (N, C).
    """
    check_array("x", x, ndim=4)
    if x.shape[1] * x.shape[2] == 0:
        raise ValueError(f"x: expected non-empty H and W, received shape {x.shape}")
    return x.mean(axis=(1, 2))


def global_avgpool_backward(grad_y, x_shape):
    """Gradient of global_avgpool_forward: grad_y / (H * W) spread over every position.

    Shape:
        grad_y (N, C) -> dx x_shape (N, H, W, C).
    """
    check_array("grad_y", grad_y, ndim=2)
    x_shape = tuple(x_shape)
    if len(x_shape) != 4 or x_shape[1] * x_shape[2] == 0:
        raise ValueError(f"x_shape: expected (N, H, W, C) with non-empty H and W, received {x_shape!r}")
    check_shape("grad_y", grad_y, (x_shape[0], x_shape[3]))
    g = grad_y * grad_y.dtype.type(1.0 / (x_shape[1] * x_shape[2]))
    return np.ascontiguousarray(np.broadcast_to(g[:, None, None, :], x_shape))
