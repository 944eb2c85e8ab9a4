"""2-D convolution on NHWC activations with HWIO weights, forward and backward.

Four paths, chosen from the shapes:
- 1x1, stride 1, no padding: the input viewed as (N*H*W, Cin) is already the
  im2col matrix, so the convolution is one GEMM per group with no copy.
- depthwise (every group has one input channel): direct micro-kernels over the
  contiguous channel axis (`depthwise.py`); GEMMs with K = KH*KW would be tiny.
- one input channel, stride 1, no padding (a first layer on grey images): a direct
  loop vectorised along the output line for the forward; as a GEMM it has N = Cout
  (6 in LeNet-5), a shape BLAS runs slowly (LeNet-5's conv1: 2.5 vs 4.0 ms at batch
  128). Its weight gradient is a direct loop over the same whole-image spans.
- stride 1, no dilation, one group, Cout a multiple of 16 and the weights of 16 output
  channels within L1 (ResNet-20's 16- and 32-channel 3x3 convs): a direct convolution
  (`conv_direct.py`) that reads a zero-padded copy of the input in place of an im2col
  copy, register-blocked over 16 output channels; forward, weight gradient, and the
  input gradient computed as the flipped conv below.
- everything else: im2col + GEMM (y = cols @ w2d; backward dw = cols.T @ dy and
  dcols = dy @ w2d.T scattered back by col2im), in chunks of output lines small
  enough that the column buffer is still in cache when the GEMM reads it. For
  stride-1 "same" convs of >= 16 channels, dx is instead the forward conv of grad_y
  with the flipped weight (`_flipped`): a gather and a better-shaped GEMM in place of
  the scatter.
Groups run one GEMM per group on strided column blocks. The column buffers are
per-thread scratch arrays reused across calls; arrays returned to callers are
always fresh.
"""
import threading

import numpy as np
from numba import njit, uint64

from ._checks import check_array, check_pair, check_positive_int, check_same_dtype, check_shape
from . import conv_direct, depthwise
from .epilogue import bias_relu
from .im2col import col2im, im2col
from .parallel import run_tasks, sum_in_order

# Target size of one chunk of the column buffer: small enough to stay in cache
# between im2col and the GEMM, large enough that each GEMM has >= ~1000 rows on
# ResNet shapes. 0.5-2 MB measured alike here; the whole batch at once was 1.5x slower.
_CHUNK_BYTES = 1024 * 1024

# The direct forward's tasks: at most this many per batch. A task per L2-sized block of
# images cost ~3 us of Python each (ResNet-20's 16-channel 3x3 forward ran 64 of them):
# 16 tasks of sub-blocks took the forward at batch 64 from 3.54-3.86 to 3.33-3.66 ms on
# one thread and 1.94-2.25 to 1.79-2.10 on two (32 and 64 channels 0-3% less).
_DIRECT_TASKS = 16

# Tasks of a backward pass (see _backward_tasks): 8 spreads a batch over 2-4 threads
# with room to rebalance.
_BACKWARD_TASKS = 8

_scratch = threading.local()


def _workspace(name, size, dtype):
    """A per-thread scratch vector of `size` elements, reused across calls."""
    bufs = _scratch.__dict__.setdefault("bufs", {})
    key = (name, np.dtype(dtype))
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype)
        bufs[key] = buf
    return buf[:size]


class _Geometry:
    """Validated convolution arguments and derived sizes."""

    def __init__(self, x, w, stride, padding, dilation, groups):
        check_array("x", x, ndim=4)
        check_array("w", w, ndim=4)
        check_same_dtype(x=x, w=w)
        self.groups = g = check_positive_int("groups", groups)
        self.n, self.h, self.w, self.cin = x.shape
        self.kh, self.kw, cin_g, self.cout = w.shape
        if 0 in x.shape[1:]:
            raise ValueError(f"x: expected nonzero H, W and C, received shape {x.shape}")
        if self.cin % g:
            raise ValueError(
                f"x: expected channels divisible by groups={g}, received shape {x.shape}"
            )
        if self.cout % g or self.cout == 0 or self.kh == 0 or self.kw == 0:
            raise ValueError(
                f"w: expected nonzero KH, KW and output channels divisible by groups={g}, "
                f"received shape {w.shape}"
            )
        check_shape("w", w, (None, None, self.cin // g, None))
        self.stride = check_pair("stride", stride, 1)
        self.padding = check_pair("padding", padding, 0)
        self.dilation = check_pair("dilation", dilation, 1)
        self.oh, self.ow = _output_hw(
            "x", (self.h, self.w), (self.kh, self.kw), self.stride, self.padding, self.dilation
        )
        self.pointwise = (self.kh, self.kw, self.stride, self.padding) == (1, 1, (1, 1), (0, 0))
        self.depthwise = cin_g == 1 and g > 1
        self.one_channel = (self.cin, g, self.stride, self.padding, self.dilation) == (1, 1, (1, 1), (0, 0), (1, 1))
        # dx as a conv of grad_y (see _flipped) where it pays: stride 1, one group, "same"
        # padding (the flipped conv then pads as much as the forward) and >= 16 input
        # channels (its GEMM's N). LeNet-5's conv2 (6 channels, no padding, so padded by 4
        # for dx) took 4.42 instead of 1.66 ms that way.
        full = tuple(d * (k - 1) - p for k, d, p in zip((self.kh, self.kw), self.dilation, self.padding))
        same = self.stride == (1, 1) and g == 1 and full == self.padding and not self.pointwise
        self.dx_padding = full if same and self.cin >= 16 else None

    @property
    def out_shape(self):
        return (self.n, self.oh, self.ow, self.cout)

    def window(self):
        """The im2col/col2im geometry arguments after (cols, x, line0, line1)."""
        return (
            self.oh, self.ow, self.kh, self.kw, *self.stride, *self.padding, *self.dilation,
            self.groups,
        )


def _output_hw(name, hw, khw, stride, padding, dilation):
    """(OH, OW); a ValueError naming `name` when the padded input is smaller than the kernel."""
    out = []
    for size, k, s, p, d, axis in zip(hw, khw, stride, padding, dilation, ("height", "width")):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise ValueError(
                f"{name}: padded input {axis} {size} + 2*{p} is smaller than the dilated kernel "
                f"({span}); the output would be empty"
            )
        out.append((size + 2 * p - span) // s + 1)
    return tuple(out)


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1):
    """Output shape (N, OH, OW, Cout) of a conv of x (N, H, W, Cin) with w (KH, KW, Cin/g, Cout)."""
    if len(x_shape) != 4:
        raise ValueError(f"x_shape: expected 4 dimensions (N, H, W, C), received {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(
            f"w_shape: expected 4 dimensions (KH, KW, Cin/groups, Cout), received {tuple(w_shape)}"
        )
    oh, ow = _output_hw(
        "x_shape", x_shape[1:3], w_shape[:2], check_pair("stride", stride, 1),
        check_pair("padding", padding, 0), check_pair("dilation", dilation, 1),
    )
    return (x_shape[0], oh, ow, w_shape[3])


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, relu=False, relu_cap=None):
    """y = conv(x, w) + b, optionally followed by ReLU or a capped ReLU (fused, in place).

    Args:
        x: input activations, float32 (or float64), C-contiguous.
        w: weight, HWIO.
        b: optional bias (Cout,).
        stride, padding, dilation: int or (h, w) pair; padding is zeros.
        groups: channel groups (Cin and Cout divisible by it); groups == Cin is depthwise.
        relu: apply max(., 0) to the biased output.
        relu_cap: with relu, also min(., relu_cap) (6: ReLU6, as in MobileNet/EfficientNet-Lite).
    Shape:
        x (N, H, W, Cin), w (KH, KW, Cin/groups, Cout) -> y (N, OH, OW, Cout).
    """
    geo = _Geometry(x, w, stride, padding, dilation, groups)
    if b is not None:
        check_array("b", b, ndim=1)
        check_shape("b", b, (geo.cout,))
        check_same_dtype(x=x, b=b)
    if not isinstance(relu, (bool, np.bool_)):
        raise ValueError(f"relu: expected a bool, received {relu!r}")
    numeric_cap = isinstance(relu_cap, (int, float, np.integer, np.floating)) and not isinstance(relu_cap, bool)
    if relu_cap is not None and not (relu and numeric_cap and relu_cap > 0):
        raise ValueError(f"relu_cap: expected a positive number together with relu=True, received {relu_cap!r} "
                         f"(relu={relu!r})")
    cap = x.dtype.type(np.inf if relu_cap is None else relu_cap)
    y = depthwise.empty(geo.out_shape, x.dtype) if geo.depthwise else np.empty(geo.out_shape, dtype=x.dtype)
    has_bias = b is not None
    bias = b if has_bias else np.zeros(0, x.dtype)
    if y.size == 0:
        return y
    if geo.depthwise:
        depthwise.forward(x, w, bias, y, geo.stride, geo.padding, geo.dilation, has_bias, bool(relu), cap)
    elif geo.one_channel and not geo.pointwise:
        images = _image_blocks(geo.n)
        run_tasks(lambda t: _one_channel_forward(x[images[t]], w, bias, y[images[t]], has_bias, bool(relu), cap),
                  len(images))
    else:
        _conv(x, w, y, geo, bias, has_bias, bool(relu), cap)
    return y


def conv2d_backward(
    x, w, grad_y, stride=1, padding=0, dilation=1, groups=1, need_dx=True, has_bias=True, need_dw=True
):
    """Gradients of conv2d_forward (taken before any fused ReLU).

    Args:
        x, w, stride, padding, dilation, groups: as given to conv2d_forward.
        grad_y: dL/dy of the conv output (the layer applies the ReLU mask first).
        need_dx: skip the input gradient when False (first layer of a model).
        has_bias: return db when True.
        need_dw: skip the weight and bias gradients when False (a frozen layer: only dx
            is wanted); the im2col of x and the dw GEMMs are then not run.
    Returns:
        (dx or None, dw or None, db or None): dx like x, dw like w, db (Cout,).
    """
    geo = _Geometry(x, w, stride, padding, dilation, groups)
    check_array("grad_y", grad_y, ndim=4)
    check_shape("grad_y", grad_y, geo.out_shape)
    check_same_dtype(x=x, grad_y=grad_y)
    dy2d = grad_y.reshape(-1, geo.cout)
    db = _column_sums(dy2d) if has_bias and need_dw else None
    dx = None
    if need_dx:  # the col2im path accumulates into dx
        overwrites = geo.pointwise or geo.dx_padding is not None
        if geo.depthwise:
            dx = depthwise.empty(x.shape, x.dtype)
        else:
            dx = np.empty_like(x) if overwrites else np.zeros_like(x)
    dw = np.zeros_like(w) if need_dw else None
    if grad_y.size == 0 or not (need_dx or need_dw):
        return dx, dw, db
    if geo.depthwise:
        depthwise.backward(x, w, grad_y, dx, dw, geo.stride, geo.padding, geo.dilation)
    elif geo.one_channel and not geo.pointwise:
        if need_dw:
            _one_channel_weight_grad_blocks(x, grad_y, dw)
        if need_dx:  # rare: a one-channel input that is not the model's input
            _gemm_conv_backward(x, w, grad_y, dx, None, geo)
    elif geo.dx_padding is not None:
        if need_dw:
            _weight_grad(x, w, grad_y, dw, geo)
        if need_dx:
            w_t = _flipped(w)
            _conv(grad_y, w_t, dx, _Geometry(grad_y, w_t, 1, geo.dx_padding, geo.dilation, 1),
                  np.zeros(0, x.dtype), False, False, x.dtype.type(np.inf))
    elif need_dw and _direct_applies(geo, x.dtype):
        _direct_weight_grad(x, grad_y, dw, geo)
        if need_dx:
            _gemm_conv_backward(x, w, grad_y, dx, None, geo)
    else:
        _gemm_conv_backward(x, w, grad_y, dx, dw, geo)
    return dx, dw, db


def _direct_applies(geo, dtype):
    return not geo.pointwise and conv_direct.applies(geo, dtype)


def _weight_grad(x, w, grad_y, dw, geo):
    """dw alone, in place: direct where conv_direct applies, else im2col + GEMM."""
    if _direct_applies(geo, x.dtype):
        _direct_weight_grad(x, grad_y, dw, geo)
    else:
        _gemm_conv_backward(x, w, grad_y, None, dw, geo)


def _direct_weight_grad(x, grad_y, dw, geo):
    """conv_direct's weight gradient: one partial per block of whole images (tasks),
    added in block order, so the bits do not depend on the thread count."""
    hp, wp = geo.h + 2 * geo.padding[0], geo.w + 2 * geo.padding[1]
    images = _image_blocks(geo.n)
    partials = np.zeros((len(images), dw.size), dw.dtype)

    def image_block_task(t):
        n0, n1 = images[t].start, images[t].stop
        xp = _workspace("direct_x", conv_direct.grad_padded_rows(n1 - n0, hp, wp, geo.kw) * geo.cin, x.dtype)
        conv_direct.weight_grad_images(x, grad_y, dw.shape, n0, n1, *geo.stride, *geo.padding, xp, partials[t],
                                       conv_direct.WIDE)

    run_tasks(image_block_task, len(images))
    dw.reshape(-1)[:] = sum_in_order(partials)


def _flipped(w):
    """The weight of the convolution that maps grad_y to dx (stride 1): kernel rotated by
    180 degrees, input and output channels swapped. That conv gathers with im2col, where
    col2im would scatter-add, and its GEMM has K = KH*KW*Cout instead of K = Cout (a whole
    ResNet-20 training step, batch 64, one thread: 267 -> 262 ms, best of 15)."""
    return np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))


def _group_blocks(cols, g, n_groups):
    """Column block of group g in a (rows, groups * k) matrix, as a strided 2-D view."""
    rows, width = cols.shape
    return cols.reshape(rows, n_groups, width // n_groups)[:, g, :]


def _lines_per_chunk(geo, k, itemsize):
    return max(1, _CHUNK_BYTES // (geo.ow * k * itemsize))


def _conv(x, w, y, geo, bias, has_bias, relu, cap):
    """y = conv(x, w) (+ bias, ReLU) into the preallocated y: direct where conv_direct
    applies, else im2col + GEMM."""
    if _direct_applies(geo, x.dtype):
        _direct_conv(x, w, y, geo, bias, has_bias, relu, cap)
    else:
        _gemm_conv(x, w, y, geo, bias, has_bias, relu, cap)


def _direct_conv(x, w, y, geo, bias, has_bias, relu, cap):
    """conv_direct's forward, one task per block of whole images (disjoint parts of y), run
    in sub-blocks whose padded input and padded-width output, in the running thread's
    workspace, take about _CHUNK_BYTES / 4 (they stay in cache); tasks of whole sub-blocks,
    at least n / _DIRECT_TASKS images each."""
    hp, wp = geo.h + 2 * geo.padding[0], geo.w + 2 * geo.padding[1]
    per_image = (hp * wp * geo.cin + geo.oh * wp * geo.cout) * x.itemsize
    images = max(1, _CHUNK_BYTES // 4 // per_image)
    at_least = -(-geo.n // _DIRECT_TASKS)
    per_task = images * -(-at_least // images)  # whole sub-blocks

    def image_block_task(t):
        n0, n1 = t * per_task, min(geo.n, (t + 1) * per_task)
        per_block = min(images, n1 - n0)
        xp = _workspace("direct_x", conv_direct.padded_rows(per_block, hp, wp, geo.kw) * geo.cin, x.dtype)
        yp = _workspace("direct_y", conv_direct.output_rows(per_block, geo.oh, wp) * geo.cout, x.dtype)
        conv_direct.forward_image_blocks(x, w, y, n0, n1, per_block, *geo.stride, *geo.padding, xp, yp, bias,
                                         has_bias, relu, cap, conv_direct.WIDE)

    run_tasks(image_block_task, -(-geo.n // per_task))


def _gemm_conv(x, w, y, geo, bias, has_bias, relu, cap):
    """y = conv(x, w) (+ bias, ReLU) by im2col + GEMM, written into the preallocated y.

    Each chunk of output lines is one task for run_tasks (disjoint parts of y), with
    its column buffer in the running thread's workspace."""
    n_groups = geo.groups
    k_g = geo.kh * geo.kw * (geo.cin // n_groups)
    w2d = w.reshape(k_g, geo.cout)
    y2d = y.reshape(-1, geo.cout)
    if geo.pointwise:
        # In row blocks of ~_CHUNK_BYTES of output, so the bias/ReLU pass reads it from cache:
        # EfficientNet's 1x1 expand at 112x112 (batch 16, 16 -> 96 channels) 81 -> 20 ms.
        x2d = x.reshape(-1, geo.cin)
        rows = max(1, _CHUNK_BYTES // (geo.cout * x.itemsize))

        def pointwise_task(i):
            y_chunk = y2d[i * rows : (i + 1) * rows]
            _grouped_matmul(x2d[i * rows : (i + 1) * rows], w2d, y_chunk, n_groups)
            bias_relu(y_chunk, bias, has_bias, relu, cap)

        run_tasks(pointwise_task, -(-len(x2d) // rows))
        return
    lines = geo.n * geo.oh
    k = k_g * n_groups
    per_chunk = _lines_per_chunk(geo, k, x.itemsize)

    def chunk_task(i):
        l0, l1 = i * per_chunk, min(lines, (i + 1) * per_chunk)
        rows = (l1 - l0) * geo.ow
        cols = _workspace("cols", rows * k, x.dtype).reshape(rows, k)
        im2col(x, cols, l0, l1, *geo.window())
        y_chunk = y2d[l0 * geo.ow : l1 * geo.ow]
        _grouped_matmul(cols, w2d, y_chunk, n_groups)
        bias_relu(y_chunk, bias, has_bias, relu, cap)

    run_tasks(chunk_task, -(-lines // per_chunk))


def _grouped_matmul(a, w2d, out, n_groups):
    """out[:, group g] = a[:, group g] @ w2d[:, group g] for each group."""
    if n_groups == 1:
        np.matmul(a, w2d, out=out)
        return
    for g in range(n_groups):
        np.matmul(
            _group_blocks(a, g, n_groups), _group_blocks(w2d, g, n_groups),
            out=_group_blocks(out, g, n_groups),
        )


def _backward_tasks(n):
    """Number of tasks a backward pass splits its batch of n into: fixed, so that the
    weight gradient (a sum of per-task partials, in task order) is the same bits at
    any thread count; several per thread, so that a thread the OS delays leaves
    little for the others to wait on."""
    return max(1, min(n, _BACKWARD_TASKS))


def _image_blocks(n):
    """_backward_tasks(n) slices of whole images covering a batch of n, in order."""
    n_tasks = _backward_tasks(n)
    images = -(-n // n_tasks)
    return [slice(t * images, min(n, (t + 1) * images)) for t in range(n_tasks)]


def _gemm_conv_backward(x, w, grad_y, dx, dw, geo):
    """dw and dx, each unless None, of the im2col + GEMM convolution, in place.

    Tasks are blocks of whole images, so that col2im of one task never adds into
    another's part of dx; each task sums its chunks' dw into its own partial. Without
    dw, x is never read (no im2col)."""
    n_groups = geo.groups
    k_g = geo.kh * geo.kw * (geo.cin // n_groups)
    w2d = w.reshape(k_g, geo.cout)
    dy2d = grad_y.reshape(-1, geo.cout)
    n_tasks = _backward_tasks(geo.n)
    dw2d = None if dw is None else dw.reshape(k_g, geo.cout)
    partials = None if dw is None else np.empty((n_tasks, *dw2d.shape), dw.dtype)
    if geo.pointwise:
        x2d = x.reshape(-1, geo.cin)
        dx2d = dx.reshape(-1, geo.cin) if dx is not None else None
        rows = -(-len(x2d) // n_tasks)

        def pointwise_task(t):
            r = slice(t * rows, (t + 1) * rows)
            if partials is not None:
                _grouped_matmul_tn(x2d[r], dy2d[r], partials[t], n_groups)
            if dx2d is not None:
                _grouped_matmul_nt(dy2d[r], w2d, dx2d[r], n_groups)

        run_tasks(pointwise_task, n_tasks)
    else:
        k = k_g * n_groups
        per_chunk = _lines_per_chunk(geo, k, x.itemsize)
        images = -(-geo.n // n_tasks)

        def image_block_task(t):
            lines0, lines1 = t * images * geo.oh, min(geo.n, (t + 1) * images) * geo.oh
            if partials is not None:
                partial = _workspace("dw_chunk", dw2d.size, dw.dtype).reshape(dw2d.shape)
                partials[t] = 0
            for l0 in range(lines0, lines1, per_chunk):
                l1 = min(lines1, l0 + per_chunk)
                rows = (l1 - l0) * geo.ow
                dy_chunk = dy2d[l0 * geo.ow : l1 * geo.ow]
                if partials is not None:
                    cols = _workspace("cols", rows * k, x.dtype).reshape(rows, k)
                    im2col(x, cols, l0, l1, *geo.window())
                    _grouped_matmul_tn(cols, dy_chunk, partial, n_groups)
                    partials[t] += partial
                if dx is not None:
                    dcols = _workspace("dcols", rows * k, x.dtype).reshape(rows, k)
                    _grouped_matmul_nt(dy_chunk, w2d, dcols, n_groups)
                    col2im(dcols, dx, l0, l1, *geo.window())

        run_tasks(image_block_task, n_tasks)
    if partials is None:
        return
    dw2d[...] = partials[0]
    for t in range(1, n_tasks):
        dw2d += partials[t]


def _grouped_matmul_tn(a, b, out, n_groups):
    """out[:, group g] = a[:, group g].T @ b[:, group g] (weight gradient)."""
    if n_groups == 1:
        np.matmul(a.T, b, out=out)
        return
    for g in range(n_groups):
        np.matmul(
            _group_blocks(a, g, n_groups).T, _group_blocks(b, g, n_groups),
            out=_group_blocks(out, g, n_groups),
        )


def _grouped_matmul_nt(dy, w2d, out, n_groups):
    """out[:, group g] = dy[:, group g] @ w2d[:, group g].T (gradient of the columns)."""
    if n_groups == 1:
        np.matmul(dy, w2d.T, out=out)
        return
    for g in range(n_groups):
        np.matmul(
            _group_blocks(dy, g, n_groups), _group_blocks(w2d, g, n_groups).T,
            out=_group_blocks(out, g, n_groups),
        )


# The numba kernels below index flat arrays with uint64 offsets: numba then skips
# the negative-index wraparound test, which is what lets LLVM vectorise the
# channel loops (see im2col.py).


@njit(cache=True)
def _column_sums(a):
    """Sum over rows with a float64 accumulator (bias gradient over N*OH*OW rows).

    Short rows are summed several at a time, as in epilogue.bias_relu.
    """
    cols = a.shape[1]
    af = a.reshape(-1)
    block = max(1, 64 // cols) * cols
    acc = np.zeros(block, np.float64)
    start = 0
    while start < af.size:
        j0 = uint64(start)
        for c in range(uint64(min(block, af.size - start))):
            acc[c] += af[j0 + c]
        start += block
    out = np.zeros(cols, np.float64)
    for j in range(block):
        out[j % cols] += acc[j]
    return out.astype(a.dtype)


@njit(cache=True)
def _span_positions(oh_, ow_, w_):
    """Position oh * W + ow in the one-channel kernels' span of each output pixel (oh, ow), row-major."""
    positions = np.empty(oh_ * ow_, np.uint64)
    for oh in range(oh_):
        for ow in range(ow_):
            positions[oh * ow_ + ow] = oh * w_ + ow
    return positions


@njit(cache=True, nogil=True)
def _one_channel_forward(x, w, b, y, has_bias, relu, cap):
    """Stride-1 unpadded conv of a one-channel input, one image at a time.

    Output (oh, ow) and the input pixel under its first tap are both oh * W + ow into
    their image, so tap (i, k) adds the image shifted by i * W + k, times one weight,
    to SPAN = (OH - 1) * W + OW accumulators per output channel: one long contiguous
    loop per tap and channel that vectorises (the W - OW accumulators past each output
    row are computed and dropped; LeNet-5's first conv, which ran one 24-wide loop per
    tap, channel and output line, went 1.23 -> 1.17 ms per batch of 128). Then the
    accumulators are stored transposed into NHWC.
    """
    n_, h_, w_, _ = x.shape
    kh_, kw_, cout = w.shape[0], w.shape[1], w.shape[3]
    oh_, ow_ = y.shape[1], y.shape[2]
    span, ucout = uint64((oh_ - 1) * w_ + ow_), uint64(cout)
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    acc = np.empty(ucout * span, y.dtype)
    positions = _span_positions(oh_, ow_, w_)
    zero = yf.dtype.type(0)
    for n in range(n_):
        image = uint64(n * h_ * w_)
        for co in range(ucout):
            start = b[co] if has_bias else zero
            for p in range(span):
                acc[co * span + p] = start
        for i in range(kh_):
            for k in range(kw_):
                src = image + uint64(i * w_ + k)
                for co in range(ucout):
                    wv = wf[uint64((i * kw_ + k) * cout) + co]
                    base = co * span
                    for p in range(span):
                        acc[base + p] += xf[src + p] * wv
        out = uint64(n * oh_ * ow_ * cout)
        for pixel, q in enumerate(positions):
            o = out + uint64(pixel) * ucout
            for co in range(ucout):
                v = acc[co * span + q]
                yf[o + co] = min(max(v, zero), cap) if relu else v


def _one_channel_weight_grad_blocks(x, grad_y, dw):
    """dw of the one-channel conv: float64 sums per block of images (_image_blocks) as
    tasks, added in block order, so the bits do not depend on the thread count."""
    images = _image_blocks(x.shape[0])
    partials = np.zeros((len(images), dw.size))
    run_tasks(lambda t: _one_channel_weight_sums(x[images[t]], grad_y[images[t]], dw.shape, partials[t]),
              len(images))
    dw.reshape(-1)[:] = sum_in_order(partials)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _one_channel_weight_sums(x, grad_y, dw_shape, total):
    """dw of the stride-1 unpadded one-channel conv, in the layout of _one_channel_forward,
    added into total (float64, dw's size): per image, grad_y is laid out as SPAN
    positions per channel (zeros past each output row), and dw[tap, co] gains the dot
    product of the shifted image with channel co. The dots are reassociated to
    vectorise; images are summed in float64.
    """
    n_, h_, w_, _ = x.shape
    kh_, kw_, cout = dw_shape[0], dw_shape[1], dw_shape[3]
    oh_, ow_ = grad_y.shape[1], grad_y.shape[2]
    span, ucout = uint64((oh_ - 1) * w_ + ow_), uint64(cout)
    xf, gf = x.reshape(-1), grad_y.reshape(-1)
    g = np.zeros(ucout * span, grad_y.dtype)  # the zeros past each row are never overwritten
    positions = _span_positions(oh_, ow_, w_)
    for n in range(n_):
        image = uint64(n * h_ * w_)
        out = uint64(n * oh_ * ow_ * cout)
        for pixel, q in enumerate(positions):
            o = out + uint64(pixel) * ucout
            for co in range(ucout):
                g[co * span + q] = gf[o + co]
        for i in range(kh_):
            for k in range(kw_):
                src = image + uint64(i * w_ + k)
                for co in range(ucout):
                    base = co * span
                    s = gf.dtype.type(0)
                    for p in range(span):
                        s += xf[src + p] * g[base + p]
                    total[uint64((i * kw_ + k) * cout) + co] += s
