"""Depthwise 2-D convolution (every group one input channel) on NHWC with HWIO weights.

Output channel co reads input channel co // multiplier. A multiplier above 1 runs as a
multiplier of 1 on the input with each channel repeated (np.repeat), and its dx is the
sum over the repeats; everything below assumes a multiplier of 1 (Cout == C).

Forward: an image's output is cut into runs of pixels that share their in-bounds taps
(_plan): on each line the interior columns (all KW taps inside the input row), on lines
whose kernel rows fall partly outside the input also each border pixel, and each border
column down the other lines. A run is computed by micro-kernels written in LLVM IR
through llvmlite (as in conv_direct.py: numba cannot keep values in registers across a
loop) that hold the weights of up to 9 taps for one vector of channels in registers and
sum each pixel's taps before one store of y. In a 3x3 interior run with dilation equal
to the stride along the width, tap k of pixel q is tap 0 of pixel q + k, so
_slide_kernel loads 3 new x vectors per pixel and keeps the other 6 from the previous
pixels (the numba loop it replaces loaded 9 x and 9 weight vectors and read and wrote y
9 times). Vectors are 512 bits where the host has AVX-512, else 256; channels past the
last whole vector go one by one. Large outputs are stored around the caches (_streams).

dx at stride 1 is that forward applied to grad_y with the kernel rotated by 180
degrees (a gather: each input pixel sums its taps once); at larger strides it is
scattered tap by tap. dW: the micro-kernels hold the sums of up to 9 taps for a vector
of channels in registers over a run and add them to the image's sums (working dtype);
images are summed in float64.

Tasks are blocks of whole images (parallel.blocks, a count fixed by the sizes), so y
and dx are written in disjoint parts and dW is the sum of the blocks' partials in
block order: the same bits at any thread count.
"""
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from .parallel import blocks, run_tasks

_BITS = 512 if llvm.get_host_cpu_features().get("avx512f", False) else 256
_VECTOR_BYTES = _BITS // 8
# Outputs from this size on are streamed (see _streams): several times L2.
_STREAM_BYTES = 4 * 1024 * 1024


def forward(x, w, b, y, stride, padding, dilation, has_bias, relu, cap):
    """y = depthwise conv(x, w) (+ b, ReLU capped at cap), written into y (N, OH, OW, Cout)."""
    x = _repeated(x, w.shape[3])
    bias = b if has_bias else np.zeros(w.shape[3], x.dtype)
    bounds = blocks(x.shape[0], y[0].size)
    stream = _streams(y) and not relu  # the ReLU pass reads y back: keep it in cache
    run_tasks(lambda t: _forward_images(x, w, bias, y, *bounds[t], *stride, *padding, *dilation, relu, cap, stream),
              len(bounds))


def backward(x, w, grad_y, dx, dw, stride, padding, dilation):
    """dx (unless None) and dw (unless None) of the depthwise conv, written in place."""
    mult = w.shape[3] // x.shape[3]
    xr = _repeated(x, w.shape[3]) if dw is not None else x
    dxr = dx if dx is None or mult == 1 else np.empty(x.shape[:3] + (w.shape[3],), x.dtype)
    # the stride-1 dx conv: rotated kernel, padded so that it covers the forward's taps
    flipped = np.ascontiguousarray(w[::-1, ::-1])
    pads = [d * (k - 1) - p for k, d, p in zip(w.shape[:2], dilation, padding)]
    no_bias = np.zeros(w.shape[3], x.dtype)
    stream = dxr is not None and _streams(dxr)
    bounds = blocks(x.shape[0], x[0].size)
    partials = np.zeros((len(bounds), w.size)) if dw is not None else None

    def task(t):
        for n in range(*bounds[t]):  # image by image: grad_y stays in cache between dW and dx
            if dw is not None:
                _weight_grad_images(xr, grad_y, *w.shape[:2], n, n + 1, *stride, *padding, *dilation, partials[t])
            if dxr is None:
                continue
            if stride == (1, 1):
                _forward_images(grad_y, flipped, no_bias, dxr, n, n + 1, 1, 1, *pads, *dilation, False,
                                x.dtype.type(np.inf), stream)
            else:
                _scatter_dx_images(w, grad_y, dxr, n, n + 1, *stride, *padding, *dilation)

    run_tasks(task, len(bounds))
    if dw is not None:
        dw.reshape(-1)[:] = partials.sum(axis=0)  # in block order
    if dx is not None and mult > 1:
        dx[...] = dxr.reshape(x.shape + (mult,)).sum(axis=4)


def empty(shape, dtype):
    """An uninitialised C-contiguous array whose data starts on a vector boundary (so
    that a large depthwise output can be streamed, see _streams)."""
    size, itemsize = int(np.prod(shape)), np.dtype(dtype).itemsize
    buf = np.empty(size + _VECTOR_BYTES // itemsize, dtype)
    start = (-buf.ctypes.data % _VECTOR_BYTES) // itemsize
    return buf[start : start + size].reshape(shape)


def _streams(y):
    """Whether the 3 x 3 interior of output y is stored non-temporally: y is larger than
    _STREAM_BYTES, so it leaves the caches before it is read again anyway, and every
    pixel's channels start on a vector boundary. Such stores skip reading y's lines into
    the cache first, a third of the memory traffic of a memory-bound forward (the
    8x112x112x32 one took 0.65-0.73 of the time of cached stores, one thread)."""
    return (y.nbytes >= _STREAM_BYTES and y.ctypes.data % _VECTOR_BYTES == 0
            and y.shape[-1] * y.itemsize % _VECTOR_BYTES == 0)


def _repeated(x, cout):
    """x with each channel repeated Cout / C times (x itself at a multiplier of 1)."""
    mult = cout // x.shape[3]
    return x if mult == 1 else np.repeat(x, mult, axis=3)


# ---- micro-kernels (LLVM IR) -------------------------------------------------------

def _vector_type(dtype, lanes):
    scalar = ir.FloatType() if dtype == types.float32 else ir.DoubleType()
    return ir.VectorType(scalar, lanes) if lanes > 1 else scalar


def _fma(builder, ty):
    """LLVM's fused multiply-add on ty (a vector or scalar float type)."""
    bits = 32 if isinstance(getattr(ty, "element", ty), ir.FloatType) else 64
    name = f"llvm.fmuladd.v{ty.count}f{bits}" if isinstance(ty, ir.VectorType) else f"llvm.fmuladd.f{bits}"
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty, ty]), name)


def _at(builder, ptr, index, ty):
    """Pointer to a value of type ty (vector or scalar) at element `index` of the flat array ptr."""
    p = builder.gep(ptr, [index])
    return builder.bitcast(p, ty.as_pointer()) if isinstance(ty, ir.VectorType) else p


def _channel_blocks(builder, dtype, c_, block):
    """block(cb, ty) for every whole vector of channels from cb (ty the vector type), then
    for every channel past them (ty the scalar type)."""
    i64 = ir.IntType(64)
    lanes = _BITS // dtype.bitwidth
    step = ir.Constant(i64, lanes)
    full = builder.mul(builder.sdiv(c_, step), step)
    with cgutils.for_range_slice(builder, ir.Constant(i64, 0), full, step) as (cb, _):
        block(cb, _vector_type(dtype, lanes))
    with cgutils.for_range_slice(builder, full, c_, ir.Constant(i64, 1)) as (cb, _):
        block(cb, _vector_type(dtype, 1))


def _tap_starts(builder, offsets_ptr, rows_ptr, t0, taps):
    """Each tap's x offset and weight (or dW) row start, from offsets[t0:] and rows[t0:]."""
    i64 = ir.IntType(64)
    at = [builder.add(t0, ir.Constant(i64, t)) for t in range(taps)]
    return ([builder.load(builder.gep(offsets_ptr, [a])) for a in at],
            [builder.load(builder.gep(rows_ptr, [a])) for a in at])


def _sum_signature(xf, offsets, rows, wf, bf, yf):
    """The signature of the forward kernels (_sum_kernel, _slide_kernel), or None where the
    arrays' dtypes do not fit them."""
    if xf.dtype not in (types.float32, types.float64) or wf.dtype != xf.dtype or yf.dtype != xf.dtype:
        return None
    i64 = types.int64
    return types.void(xf, i64, i64, offsets, rows, i64, wf, bf, yf, i64, i64, i64, i64)


def _grad_signature(xf, offsets, rows, gf, acc):
    """The signature of the weight-gradient kernels (_grad_kernel, _slide_grad_kernel), or
    None where the arrays' dtypes do not fit them."""
    if xf.dtype not in (types.float32, types.float64) or gf.dtype != xf.dtype or acc.dtype != xf.dtype:
        return None
    i64 = types.int64
    return types.void(xf, i64, i64, offsets, rows, i64, gf, i64, i64, i64, i64, acc)


def _pointers(context, builder, signature, args, positions):
    """The data pointers of the array arguments at `positions`."""
    return [context.make_array(signature.args[k])(context, builder, args[k]).data for k in positions]


def _add_sums(builder, a_ptr, rows, cb, sums, ty, align):
    """acc[rows[t] + cb] += sums[t]: the weight-gradient kernels' per-tap sums into acc."""
    for r, s in zip(rows, sums):
        a_at = _at(builder, a_ptr, builder.add(r, cb), ty)
        builder.store(builder.fadd(builder.load(a_at, align=align), builder.load(s)), a_at, align=align)


def _sum_kernel(taps, accumulate):
    """Intrinsic: for q < count, c < C,
    y[ya + q*ystep + c] = (y[...] if accumulate else b[c])
                      + sum over t < taps of x[xa + q*xstep + offsets[t0+t] + c] * w[rows[t0+t] + c]
    (flat arrays, int64 offsets), the taps' weights held in registers over the run."""
    def sum_kernel(typingctx, xf, xa, xstep, offsets, rows, t0, wf, bf, yf, ya, ystep, count, c):
        dtype, sig = xf.dtype, _sum_signature(xf, offsets, rows, wf, bf, yf)
        if sig is None:
            return None

        def codegen(context, builder, signature, args):
            _, xo, xstep_, _, _, t0_, _, _, _, yo, ystep_, count_, c_ = args
            x_ptr, off_ptr, row_ptr, w_ptr, b_ptr, y_ptr = _pointers(context, builder, signature, args,
                                                                     (0, 3, 4, 6, 7, 8))
            offs, wrows = _tap_starts(builder, off_ptr, row_ptr, t0_, taps)
            align = dtype.bitwidth // 8

            def block(cb, ty):
                fma = _fma(builder, ty)
                weights = [builder.load(_at(builder, w_ptr, builder.add(r, cb), ty), align=align) for r in wrows]
                bias = None if accumulate else builder.load(_at(builder, b_ptr, cb, ty), align=align)
                with cgutils.for_range(builder, count_) as loop:
                    q = loop.index
                    xq = builder.add(builder.add(xo, builder.mul(q, xstep_)), cb)
                    y_at = _at(builder, y_ptr, builder.add(builder.add(yo, builder.mul(q, ystep_)), cb), ty)
                    acc = builder.load(y_at, align=align) if accumulate else bias
                    for off, wv in zip(offs, weights):
                        xv = builder.load(_at(builder, x_ptr, builder.add(xq, off), ty), align=align)
                        acc = builder.call(fma, [xv, wv, acc])
                    builder.store(acc, y_at, align=align)

            _channel_blocks(builder, dtype, c_, block)
            return context.get_dummy_value()

        return sig, codegen

    sum_kernel.__name__ = f"sum_kernel_{taps}{'_acc' if accumulate else ''}"
    return intrinsic(sum_kernel)


def _grad_kernel(taps):
    """Intrinsic: for t < taps, c < C,
    acc[rows[t0+t] + c] += sum over q < count of x[xa + q*xstep + offsets[t0+t] + c] * g[ga + q*gstep + c]
    (flat arrays, int64 offsets), summed over q in order in registers."""
    def grad_kernel(typingctx, xf, xa, xstep, offsets, rows, t0, gf, ga, gstep, count, c, acc):
        dtype, sig = xf.dtype, _grad_signature(xf, offsets, rows, gf, acc)
        if sig is None:
            return None

        def codegen(context, builder, signature, args):
            _, xo, xstep_, _, _, t0_, _, go, gstep_, count_, c_, _ = args
            x_ptr, off_ptr, row_ptr, g_ptr, a_ptr = _pointers(context, builder, signature, args, (0, 3, 4, 6, 11))
            offs, arows = _tap_starts(builder, off_ptr, row_ptr, t0_, taps)
            align = dtype.bitwidth // 8

            def block(cb, ty):
                fma = _fma(builder, ty)
                zero = ir.Constant(ty, [0.0] * ty.count) if isinstance(ty, ir.VectorType) else ir.Constant(ty, 0.0)
                sums = [cgutils.alloca_once_value(builder, zero) for _ in range(taps)]  # zeroed here, per block
                with cgutils.for_range(builder, count_) as loop:
                    q = loop.index
                    xq = builder.add(builder.add(xo, builder.mul(q, xstep_)), cb)
                    g_at = _at(builder, g_ptr, builder.add(builder.add(go, builder.mul(q, gstep_)), cb), ty)
                    gv = builder.load(g_at, align=align)
                    for off, s in zip(offs, sums):
                        xv = builder.load(_at(builder, x_ptr, builder.add(xq, off), ty), align=align)
                        builder.store(builder.call(fma, [xv, gv, builder.load(s)]), s)
                _add_sums(builder, a_ptr, arows, cb, sums, ty, align)

            _channel_blocks(builder, dtype, c_, block)
            return context.get_dummy_value()

        return sig, codegen

    grad_kernel.__name__ = f"grad_kernel_{taps}"
    return intrinsic(grad_kernel)


class _Window:
    """The x vectors under a sliding run's taps (_slide_kernel, _slide_grad_kernel): for
    each of rows_ kernel rows, the vectors under taps 0 .. cols - 2 of the current pixel
    carried in registers (allocas LLVM promotes), tap cols - 1 loaded fresh."""

    def __init__(self, builder, x_ptr, xo, offs, cb, xstep, rows_, cols, ty, align):
        self.builder, self.x_ptr, self.xstep, self.cols, self.ty, self.align = builder, x_ptr, xstep, cols, ty, align
        self.row_x = [builder.add(builder.add(xo, offs[i * cols]), cb) for i in range(rows_)]
        self.cells = [[cgutils.alloca_once_value(builder, self._load(i, ir.Constant(ir.IntType(64), k)))
                       for k in range(cols - 1)] for i in range(rows_)]

    def _load(self, i, q):
        b = self.builder
        return b.load(_at(b, self.x_ptr, b.add(self.row_x[i], b.mul(q, self.xstep)), self.ty), align=self.align)

    def values(self, i, q):
        """Row i's x vectors under taps 0 .. cols - 1 of pixel q."""
        last = self.builder.add(q, ir.Constant(ir.IntType(64), self.cols - 1))
        return [self.builder.load(v) for v in self.cells[i]] + [self._load(i, last)]

    def slide(self, i, vals):
        """Carry row i's vectors to the next pixel (tap k + 1 becomes tap k)."""
        for k in range(self.cols - 1):
            self.builder.store(vals[k + 1], self.cells[i][k])


def _slide_kernel(rows_, cols, stream):
    """Intrinsic: _sum_kernel(rows_ * cols, False) for a run whose taps are a grid of
    rows_ kernel rows x cols columns with column k at k * xstep (dilation == stride along
    the width), so that tap k of pixel q is tap 0 of pixel q + k: each pixel loads one
    new x vector per kernel row and reuses the previous cols - 1 from registers (rows_
    loads per vector in place of rows_ * cols). The same sums in the same order.

    With `stream`, whole vectors of y are stored non-temporally (y and every ystep
    aligned to a vector, see _streams), and a fence ends the call."""
    def slide_kernel(typingctx, xf, xa, xstep, offsets, rows, t0, wf, bf, yf, ya, ystep, count, c):
        dtype, sig = xf.dtype, _sum_signature(xf, offsets, rows, wf, bf, yf)
        if sig is None:
            return None

        def codegen(context, builder, signature, args):
            _, xo, xstep_, _, _, t0_, _, _, _, yo, ystep_, count_, c_ = args
            x_ptr, off_ptr, row_ptr, w_ptr, b_ptr, y_ptr = _pointers(context, builder, signature, args,
                                                                     (0, 3, 4, 6, 7, 8))
            offs, wrows = _tap_starts(builder, off_ptr, row_ptr, t0_, rows_ * cols)
            align = dtype.bitwidth // 8

            def block(cb, ty):
                fma = _fma(builder, ty)
                weights = [builder.load(_at(builder, w_ptr, builder.add(r, cb), ty), align=align) for r in wrows]
                bias = builder.load(_at(builder, b_ptr, cb, ty), align=align)
                window = _Window(builder, x_ptr, xo, offs, cb, xstep_, rows_, cols, ty, align)
                with cgutils.for_range(builder, count_) as loop:
                    q = loop.index
                    acc = bias
                    for i in range(rows_):
                        vals = window.values(i, q)
                        for k in range(cols):
                            acc = builder.call(fma, [vals[k], weights[i * cols + k], acc])
                        window.slide(i, vals)
                    y_at = _at(builder, y_ptr, builder.add(builder.add(yo, builder.mul(q, ystep_)), cb), ty)
                    if stream and isinstance(ty, ir.VectorType):
                        store = builder.store(acc, y_at, align=_VECTOR_BYTES)
                        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
                    else:
                        builder.store(acc, y_at, align=align)

            _channel_blocks(builder, dtype, c_, block)
            if stream:
                builder.fence("seq_cst")  # the streamed stores reach memory before other threads read y
            return context.get_dummy_value()

        return sig, codegen

    slide_kernel.__name__ = f"slide_kernel_{rows_}x{cols}{'_stream' if stream else ''}"
    return intrinsic(slide_kernel)


def _slide_grad_kernel(rows_, cols):
    """Intrinsic: _grad_kernel(rows_ * cols) for a run of _slide_kernel's case, reusing
    the x vectors of the previous cols - 1 pixels from registers as _slide_kernel does
    (one grad_y and rows_ x loads per vector). The same sums in the same order."""
    def slide_grad_kernel(typingctx, xf, xa, xstep, offsets, rows, t0, gf, ga, gstep, count, c, acc):
        dtype, sig = xf.dtype, _grad_signature(xf, offsets, rows, gf, acc)
        if sig is None:
            return None

        def codegen(context, builder, signature, args):
            _, xo, xstep_, _, _, t0_, _, go, gstep_, count_, c_, _ = args
            x_ptr, off_ptr, row_ptr, g_ptr, a_ptr = _pointers(context, builder, signature, args, (0, 3, 4, 6, 11))
            offs, arows = _tap_starts(builder, off_ptr, row_ptr, t0_, rows_ * cols)
            align = dtype.bitwidth // 8

            def block(cb, ty):
                fma = _fma(builder, ty)
                zero = ir.Constant(ty, [0.0] * ty.count) if isinstance(ty, ir.VectorType) else ir.Constant(ty, 0.0)
                sums = [cgutils.alloca_once_value(builder, zero) for _ in range(rows_ * cols)]  # zeroed per block
                window = _Window(builder, x_ptr, xo, offs, cb, xstep_, rows_, cols, ty, align)
                with cgutils.for_range(builder, count_) as loop:
                    q = loop.index
                    g_at = _at(builder, g_ptr, builder.add(builder.add(go, builder.mul(q, gstep_)), cb), ty)
                    gv = builder.load(g_at, align=align)
                    for i in range(rows_):
                        vals = window.values(i, q)
                        for k in range(cols):
                            s = sums[i * cols + k]
                            builder.store(builder.call(fma, [vals[k], gv, builder.load(s)]), s)
                        window.slide(i, vals)
                _add_sums(builder, a_ptr, arows, cb, sums, ty, align)

            _channel_blocks(builder, dtype, c_, block)
            return context.get_dummy_value()

        return sig, codegen

    slide_grad_kernel.__name__ = f"slide_grad_kernel_{rows_}x{cols}"
    return intrinsic(slide_grad_kernel)


_sum9, _sum9_acc = _sum_kernel(9, False), _sum_kernel(9, True)
_sum3, _sum3_acc = _sum_kernel(3, False), _sum_kernel(3, True)
_sum1, _sum1_acc = _sum_kernel(1, False), _sum_kernel(1, True)
_grad9, _grad3, _grad1 = _grad_kernel(9), _grad_kernel(3), _grad_kernel(1)
_slide3x3, _slide3x3_stream = _slide_kernel(3, 3, False), _slide_kernel(3, 3, True)
_slide_grad3x3 = _slide_grad_kernel(3, 3)


# ---- drivers (numba) ---------------------------------------------------------------

@njit(cache=True)
def _valid_range(off, stride, size, out_size):
    """[lo, hi): the outputs o with 0 <= o * stride + off < size."""
    lo = 0 if off >= 0 else (-off + stride - 1) // stride
    hi = 0 if size - 1 - off < 0 else min(out_size, (size - 1 - off) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def _interior(ow_, w_, kw_, sw, pw, dw):
    """[lo, hi): output columns whose KW taps all lie inside the input row."""
    lo, hi = _valid_range(-pw, sw, w_, ow_)
    lo2, hi2 = _valid_range((kw_ - 1) * dw - pw, sw, w_, ow_)
    lo = max(lo, lo2)
    return lo, max(lo, min(hi, hi2))


# Columns of a plan (see _plan): a run of `count` output pixels, `xstep` and `ystep` apart
# in x and y, from offsets xa and ya into an image, whose taps are t0..t0+nt-1 of the
# plan's tap arrays; `grid` when they are all 3 x 3 taps of a 3 x 3 kernel along a line
# with dilation == stride along the width (_slide3x3's case).
_T0, _NT, _XA, _YA, _COUNT, _XSTEP, _YSTEP, _GRID = range(8)


@njit(cache=True)
def _plan(x_shape, oh_, ow_, kh_, kw_, sh, sw, ph, pw, dh, dw):
    """The runs that cover one image's output, and their taps: (runs (R, 8), offsets,
    rows). Lines whose kernel rows all lie inside the input are one run along the
    interior columns (all KW taps inside the row); the other lines that run plus one
    run per border pixel; each border column one run down the interior lines. A run's
    taps are those in bounds for all its pixels: offsets[t] is tap t's x offset from the
    run's first tap, rows[t] its row start in the flat HWIO weight (or dW)."""
    _, h_, w_, c_ = x_shape
    r_lo, r_hi = _interior(oh_, h_, kh_, sh, ph, dh)
    lo, hi = _interior(ow_, w_, kw_, sw, pw, dw)
    border = ow_ - (hi - lo)
    n_runs = (oh_ if hi > lo else 0) + (oh_ - (r_hi - r_lo)) * border + (border if r_hi > r_lo else 0)
    runs = np.empty((n_runs, 8), np.int64)
    offsets, rows = np.empty(n_runs * kh_ * kw_, np.int64), np.empty(n_runs * kh_ * kw_, np.int64)
    r, nt = 0, 0
    for oh in range(oh_):
        for ow in range(ow_):
            interior = lo <= ow < hi
            if (ow != lo) if interior else (r_lo <= oh < r_hi):
                continue  # inside the interior run, or in a border column's run
            count = hi - lo if interior else 1
            nt = _add_run(runs, r, offsets, rows, nt, oh, ow, count, sw * c_, c_, x_shape, ow_, kh_, kw_,
                          sh, sw, ph, pw, dh, dw)
            r += 1
    for ow in range(ow_):
        if r_hi > r_lo and not lo <= ow < hi:
            nt = _add_run(runs, r, offsets, rows, nt, r_lo, ow, r_hi - r_lo, sh * w_ * c_, ow_ * c_, x_shape, ow_,
                          kh_, kw_, sh, sw, ph, pw, dh, dw)
            r += 1
    return runs, offsets[:nt], rows[:nt]


@njit(cache=True)
def _add_run(runs, r, offsets, rows, t0, oh, ow, count, xstep, ystep, x_shape, ow_, kh_, kw_, sh, sw, ph, pw,
             dh, dw):
    """Row r of the plan: the run from output pixel (oh, ow) with the taps in bounds at
    that pixel, appended to offsets and rows from t0. Returns the new tap count."""
    _, h_, w_, c_ = x_shape
    ih0, iw0 = oh * sh - ph, ow * sw - pw
    i_lo, i_hi = _valid_range(ih0, dh, h_, kh_)
    k_lo, k_hi = _valid_range(iw0, dw, w_, kw_)
    t = t0
    for i in range(i_lo, i_hi):
        for k in range(k_lo, k_hi):
            offsets[t] = ((i - i_lo) * dh * w_ + (k - k_lo) * dw) * c_
            rows[t] = (i * kw_ + k) * c_
            t += 1
    runs[r, _T0], runs[r, _NT] = t0, t - t0
    runs[r, _XA] = ((ih0 + i_lo * dh) * w_ + iw0 + k_lo * dw) * c_
    runs[r, _YA] = (oh * ow_ + ow) * c_
    runs[r, _COUNT], runs[r, _XSTEP], runs[r, _YSTEP] = count, xstep, ystep
    runs[r, _GRID] = kh_ == kw_ == 3 and t - t0 == 9 and xstep == sw * c_ and dw == sw
    return t


@njit(cache=True, nogil=True)
def _forward_images(x, w, b, y, n0, n1, sh, sw, ph, pw, dh, dw, relu, cap, stream):
    """y[n0:n1] = depthwise conv(x, w) + b (multiplier 1), ReLU capped at cap if relu,
    run by run (_plan) through the micro-kernels; the interior of a 3 x 3 conv with
    streamed stores if `stream` (see _streams)."""
    _, h_, w_, c_ = x.shape
    kh_, kw_ = w.shape[0], w.shape[1]
    oh_, ow_ = y.shape[1], y.shape[2]
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    runs, offsets, rows = _plan(x.shape, oh_, ow_, kh_, kw_, sh, sw, ph, pw, dh, dw)
    for n in range(n0, n1):
        x0, y0 = n * h_ * w_ * c_, n * oh_ * ow_ * c_
        for run in runs:
            if run[_GRID] and stream:
                _slide3x3_stream(xf, x0 + run[_XA], run[_XSTEP], offsets, rows, run[_T0], wf, b, yf, y0 + run[_YA],
                                 run[_YSTEP], run[_COUNT], c_)
            elif run[_GRID]:
                _slide3x3(xf, x0 + run[_XA], run[_XSTEP], offsets, rows, run[_T0], wf, b, yf, y0 + run[_YA],
                          run[_YSTEP], run[_COUNT], c_)
            else:
                _sum_run(xf, x0 + run[_XA], run[_XSTEP], offsets, rows, run[_T0], run[_NT], wf, b, yf,
                         y0 + run[_YA], run[_YSTEP], run[_COUNT], c_)
        if relu:
            _clamp(yf, uint64(y0), uint64(oh_ * ow_ * c_), cap)


@njit(cache=True, nogil=True)
def _sum_run(xf, xa, xstep, offsets, rows, t0, nt, wf, b, yf, ya, ystep, count, c_):
    """A run's y = b + its nt taps from t0: 9, 3 or 1 taps per micro-kernel call, the
    first call starting from b, the others adding to y (no tap in bounds: y = b)."""
    if nt == 0:
        for q in range(count):
            yf[ya + q * ystep : ya + q * ystep + c_] = b
    t, end = t0, t0 + nt
    while t < end:
        first = t == t0
        if end - t >= 9:
            if first:
                _sum9(xf, xa, xstep, offsets, rows, t, wf, b, yf, ya, ystep, count, c_)
            else:
                _sum9_acc(xf, xa, xstep, offsets, rows, t, wf, b, yf, ya, ystep, count, c_)
            t += 9
        elif end - t >= 3:
            if first:
                _sum3(xf, xa, xstep, offsets, rows, t, wf, b, yf, ya, ystep, count, c_)
            else:
                _sum3_acc(xf, xa, xstep, offsets, rows, t, wf, b, yf, ya, ystep, count, c_)
            t += 3
        else:
            if first:
                _sum1(xf, xa, xstep, offsets, rows, t, wf, b, yf, ya, ystep, count, c_)
            else:
                _sum1_acc(xf, xa, xstep, offsets, rows, t, wf, b, yf, ya, ystep, count, c_)
            t += 1


@njit(cache=True, nogil=True)
def _clamp(yf, o, length, cap):
    """y = min(max(y, 0), cap) over y[o:o + length] (cap inf: plain ReLU)."""
    zero = yf.dtype.type(0)
    for j in range(length):
        yf[o + j] = min(max(yf[o + j], zero), cap)


@njit(cache=True, nogil=True)
def _weight_grad_images(x, dy, kh_, kw_, n0, n1, sh, sw, ph, pw, dh, dw, total):
    """total (float64, KH*KW*C) += dW of images n0..n1-1, each image summed in the
    working dtype run by run (_plan) through the micro-kernels."""
    _, h_, w_, c_ = x.shape
    oh_, ow_ = dy.shape[1], dy.shape[2]
    xf, gf = x.reshape(-1), dy.reshape(-1)
    acc = np.empty(kh_ * kw_ * c_, x.dtype)
    runs, offsets, rows = _plan(x.shape, oh_, ow_, kh_, kw_, sh, sw, ph, pw, dh, dw)
    for n in range(n0, n1):
        acc[:] = 0
        x0, g0 = n * h_ * w_ * c_, n * oh_ * ow_ * c_
        for run in runs:
            if run[_GRID]:
                _slide_grad3x3(xf, x0 + run[_XA], run[_XSTEP], offsets, rows, run[_T0], gf, g0 + run[_YA],
                               run[_YSTEP], run[_COUNT], c_, acc)
            else:
                _grad_run(xf, x0 + run[_XA], run[_XSTEP], offsets, rows, run[_T0], run[_NT], gf, g0 + run[_YA],
                          run[_YSTEP], run[_COUNT], c_, acc)
        total += acc


@njit(cache=True, nogil=True)
def _grad_run(xf, xa, xstep, offsets, rows, t0, nt, gf, ga, gstep, count, c_, acc):
    """A run's contribution to the image's dW sums: 9, 3 or 1 taps per micro-kernel call."""
    t, end = t0, t0 + nt
    while t < end:
        if end - t >= 9:
            _grad9(xf, xa, xstep, offsets, rows, t, gf, ga, gstep, count, c_, acc)
            t += 9
        elif end - t >= 3:
            _grad3(xf, xa, xstep, offsets, rows, t, gf, ga, gstep, count, c_, acc)
            t += 3
        else:
            _grad1(xf, xa, xstep, offsets, rows, t, gf, ga, gstep, count, c_, acc)
            t += 1


@njit(cache=True, nogil=True)
def _scatter_dx_images(w, dy, dx, n0, n1, sh, sw, ph, pw, dh, dw):
    """dx[n0:n1] of the strided depthwise conv (multiplier 1), zeroed then scattered tap by tap."""
    _, h_, w_, c_ = dx.shape
    kh_, kw_ = w.shape[0], w.shape[1]
    oh_, ow_ = dy.shape[1], dy.shape[2]
    uc = uint64(c_)
    wf, gf, dxf = w.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    for n in range(n0, n1):
        dx[n] = 0
        for oh in range(oh_):
            line = uint64((n * oh_ + oh) * ow_ * c_)
            for i in range(kh_):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= h_:
                    continue
                for k in range(kw_):
                    off = k * dw - pw
                    lo, hi = _valid_range(off, sw, w_, ow_)
                    wo = uint64((i * kw_ + k) * c_)
                    for ow in range(lo, hi):
                        o = line + uint64(ow * c_)
                        xo = uint64(((n * h_ + ih) * w_ + ow * sw + off) * c_)
                        for c in range(uc):
                            dxf[xo + c] += gf[o + c] * wf[wo + c]
