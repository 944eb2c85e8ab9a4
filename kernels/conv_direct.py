"""Direct (im2col-free) stride-1 convolution on NHWC, register-blocked over 16 output channels.

The input of a block of images is copied once with its zero padding (Hp = H + 2*ph,
Wp = W + 2*pw). In that padded image, output pixel (oh, ow) and the input pixel
under its first tap are both at position oh * Wp + ow, so every tap (i, k) reads the
positions shifted by i * Wp + k: the output is computed at all OH * Wp positions of
each image (the Wp - OW past each output row are computed and dropped when copying
out) in blocks of _PIXELS consecutive positions.

The micro-kernel (_micro_kernel) holds a block of _PIXELS pixels x 16 output channels
in vector registers (12 AVX2 registers of 8 floats, 24 of 4 doubles) and adds, for
every tap and input channel, the broadcast input value times two vectors of weights:
the GEMM micro-kernel of BLAS with the A operand read from the padded input in place
of an im2col copy and a packed panel. numba cannot be made to keep accumulators in
registers from Python source (a local array stays in memory; scalar locals are
spilled and not vectorised), so the kernel is written in LLVM IR with llvmlite
(`numba.extending.intrinsic`), as portable vector types: LLVM lowers them to AVX2 or
AVX-512 for the machine it compiles on. Where the host has AVX-512 (WIDE), the forward
uses _wide_micro_kernel instead: 512-bit vectors and _WIDE_PIXELS pixels per block,
filling more of AVX-512's 32 registers (see _block_pixels).

Each weight row of 16 channels is read once per pixel block, so the kernel pays
where all KH*KW*Cin rows of a channel block stay in L1 (_L1_WEIGHT_BYTES), or
where the blocks skip the padding positions (_row_blocks, _ROW_WEIGHT_BYTES).

The weight gradient (weight_grad_images) is the same pairing the other way round:
grad_y is read in place, row by row, against the padded input rows, and
_grad_micro_kernel holds 4 input channels x 16 output channels of dW in registers
while it runs over a chunk of output rows, adding each position's two vectors of
grad_y times the broadcast input values under one tap (_wide_grad_micro_kernel: 8
input channels, one 512-bit vector each, the same sums in the same order).
"""
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from .epilogue import bias_relu

# Output pixels per micro-kernel call: 6 x 2 accumulator vectors + 2 weight vectors +
# 1 broadcast = 15 of AVX2's 16 vector registers.
_PIXELS = 6
# The 512-bit forward micro-kernel, taken where the host CPU has AVX-512 (read once;
# tests set it to run either width on any machine: LLVM lowers 512-bit vectors to
# pairs of 256-bit ones on AVX2, slower but exact).
WIDE = bool(llvm.get_host_cpu_features().get("avx512f", False))
# Its float32 block: _WIDE_PIXELS x 1 accumulator vector + 1 weight vector, the input
# values broadcast from memory by the FMA itself; float64 halves the pixels (2 vectors
# each). On Zen 4 (512-bit FMAs issued as two 256-bit halves), ResNet-20's 3x3 forwards
# ran 0.87-0.89 of the 256-bit kernel's time with 16 pixels (12 and 14: 0.88-0.93;
# 24 and 28: 0.97-0.99), float64 as fast as before with 8 (10 and 12 pixels: 1.5-2x slower).
_WIDE_PIXELS = 16
_CHANNELS = 16  # output channels per micro-kernel call
# The weight rows of a channel block (KH*KW*Cin*16 values) must fit in L1 beside the
# input rows: ResNet-20's 16 and 32 channels (9 and 18 KB) ran 1.75x and 1.17x faster
# than im2col + GEMM, its 64 channels (36 KB, over Zen 3's 32 KB L1) 1.2x slower.
_L1_WEIGHT_BYTES = 20 * 1024
# Blocks inside output rows (_row_blocks, 512-bit) compute no padding positions, which
# outweighs weights streamed from L2: on Zen 4, ResNet-20's 64 channels (36 KB) ran
# 0.81 of im2col + GEMM's time, 128 channels on 8 x 8 (72 KB) 0.89.
_ROW_WEIGHT_BYTES = 72 * 1024


def _weight_bytes(kh, kw, cin, itemsize):
    return kh * kw * cin * _CHANNELS * itemsize


@register_jitable
def row_blocks_apply(ow, itemsize, wide):
    """Whether forward_images runs its blocks inside output rows (_row_blocks)."""
    return wide and ow % (_block_pixels(True, itemsize) // 2) == 0


def applies(geo, dtype):
    """Whether conv.py's geometry is one this kernel computes (and pays for): no dilation,
    one group, output channels a multiple of 16, float32/64; stride 1 with weights
    fitting L1, or where the forward runs in row blocks L2-sized weights and any stride
    (but 1 x 1 kernels only at stride 1: a strided 1 x 1 conv reads a quarter of the
    padded copy, and im2col's gather ran its forward in 0.7-0.8 of the time)."""
    itemsize = np.dtype(dtype).itemsize
    rows = row_blocks_apply(geo.ow, itemsize, WIDE)
    return (
        (geo.stride == (1, 1) or rows and (geo.kh, geo.kw) != (1, 1))
        and geo.dilation == (1, 1) and geo.groups == 1 and geo.cout % _CHANNELS == 0
        and np.dtype(dtype) in (np.float32, np.float64)
        and _weight_bytes(geo.kh, geo.kw, geo.cin, itemsize) <= (_ROW_WEIGHT_BYTES if rows else _L1_WEIGHT_BYTES)
    )


def padded_rows(n_images, hp, wp, kw):
    """Rows of the padded-input workspace: the images plus the positions the last
    pixel block (of either width) reads past them."""
    return n_images * hp * wp + _WIDE_PIXELS + kw


def output_rows(n_images, oh, wp):
    """Rows of the output workspace: OH * Wp positions per image plus the last block's overrun."""
    return n_images * oh * wp + _WIDE_PIXELS


def _vector_registers(builder, dtype, rows, bits=256):
    """What the micro-kernels build first: the `bits`-wide vector type of `dtype`, its lane count,
    the vectors per _CHANNELS, LLVM's fused multiply-add on it, the lane-0 broadcast mask, and
    rows x (vectors per _CHANNELS) zeroed accumulators (allocas in the entry block: LLVM
    promotes them to registers)."""
    scalar = ir.FloatType() if dtype == types.float32 else ir.DoubleType()
    lanes = bits // dtype.bitwidth
    n_vec = _CHANNELS // lanes
    vec = ir.VectorType(scalar, lanes)
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{lanes}f{dtype.bitwidth}")
    zero_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
    acc = [[cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * lanes)) for _ in range(n_vec)]
           for _ in range(rows)]
    return vec, lanes, n_vec, fma, zero_mask, acc


@register_jitable
def _block_pixels(wide, itemsize):
    """Output pixels per call of the forward micro-kernel of that width and item size
    (from Python, in the kernel's code generation, and from numba, in its caller)."""
    return (_WIDE_PIXELS if itemsize == 4 else _WIDE_PIXELS // 2) if wide else _PIXELS


def _forward_micro_kernel(bits, halved=False, strided=False):
    """The forward micro-kernel on `bits`-wide vectors (an intrinsic):
    out[o0 + p*cout + j] = sum over i < kh, k < kw, c < cin of
    xp[x0 + i*row_stride + k*cin + p*pixel_stride + c] * wf[w0 + ((i*kw + k)*cin + c)*cout + j]
    for p < _block_pixels(bits == 512, itemsize) (half as many if `halved`), j < 16
    (flat arrays, int64 offsets). pixel_stride is an argument (before row_stride) if
    `strided`, else cin (consecutive pixels)."""
    if strided:
        def micro_kernel(typingctx, xp, x0, wf, w0, out, o0, cin, cout, pixel_stride, row_stride, kh, kw):
            return _forward_codegen(bits, halved, True, xp, wf, out)
    else:
        def micro_kernel(typingctx, xp, x0, wf, w0, out, o0, cin, cout, row_stride, kh, kw):
            return _forward_codegen(bits, halved, False, xp, wf, out)
    micro_kernel.__name__ = f"micro_kernel_{bits}{'_halved' if halved else ''}{'_strided' if strided else ''}"
    return intrinsic(micro_kernel)


def _forward_codegen(bits, halved, strided, xp, wf, out):
    dtype = xp.dtype
    if dtype not in (types.float32, types.float64) or wf.dtype != dtype or out.dtype != dtype:
        return None
    pixels = _block_pixels(bits == 512, dtype.bitwidth // 8) // (2 if halved else 1)
    sig = types.void(xp, types.int64, wf, types.int64, out, *[types.int64] * (7 if strided else 6))

    def codegen(context, builder, signature, args):
        if strided:
            xa, xo, wa, wo, oa, oo, cin_, cout_, pixel_stride_, stride_, kh_, kw_ = args
        else:
            xa, xo, wa, wo, oa, oo, cin_, cout_, stride_, kh_, kw_ = args
            pixel_stride_ = cin_
        x_ptr = context.make_array(signature.args[0])(context, builder, xa).data
        w_ptr = context.make_array(signature.args[2])(context, builder, wa).data
        o_ptr = context.make_array(signature.args[4])(context, builder, oa).data
        vec, lanes, n_vec, fma, zero_mask, acc = _vector_registers(builder, dtype, pixels, bits)
        i64 = ir.IntType(64)
        with cgutils.for_range(builder, kh_) as loop_i:
            with cgutils.for_range(builder, kw_) as loop_k:
                i, k = loop_i.index, loop_k.index
                x_tap = builder.add(xo, builder.add(builder.mul(i, stride_), builder.mul(k, cin_)))
                w_tap = builder.add(wo, builder.mul(builder.mul(builder.add(builder.mul(i, kw_), k), cin_), cout_))
                with cgutils.for_range(builder, cin_) as loop_c:
                    c = loop_c.index
                    w_row = builder.add(w_tap, builder.mul(c, cout_))
                    weights = [
                        builder.load(builder.bitcast(builder.gep(w_ptr, [builder.add(w_row, ir.Constant(i64, v * lanes))]),
                                                     vec.as_pointer()), align=dtype.bitwidth // 8)
                        for v in range(n_vec)
                    ]
                    for p in range(pixels):
                        at = builder.add(builder.add(x_tap, builder.mul(ir.Constant(i64, p), pixel_stride_)), c)
                        value = builder.load(builder.gep(x_ptr, [at]))
                        lane0 = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
                        broadcast = builder.shuffle_vector(lane0, ir.Constant(vec, ir.Undefined), zero_mask)
                        for v in range(n_vec):
                            builder.store(builder.call(fma, [broadcast, weights[v], builder.load(acc[p][v])]), acc[p][v])
        for p in range(pixels):
            for v in range(n_vec):
                at = builder.add(oo, builder.add(builder.mul(ir.Constant(i64, p), cout_), ir.Constant(i64, v * lanes)))
                builder.store(builder.load(acc[p][v]), builder.bitcast(builder.gep(o_ptr, [at]), vec.as_pointer()),
                              align=dtype.bitwidth // 8)
        return context.get_dummy_value()

    return sig, codegen


_micro_kernel = _forward_micro_kernel(256)
_wide_micro_kernel = _forward_micro_kernel(512)
# the row blocks' kernels (_row_blocks): any pixel stride
_wide_row_kernel = _forward_micro_kernel(512, strided=True)
_wide_half_row_kernel = _forward_micro_kernel(512, halved=True, strided=True)


@njit(cache=True, nogil=True)
def _pad_images(xf, xp, n0, n1, h_, w_, cin, ph, pw):
    """xp = images n0..n1 of the flat NHWC x (H x W x Cin each) zero-padded by ph, pw:
    zero borders, each interior row one contiguous run, and zeros past the images (the
    rows the last blocks read beyond them). Each value is written once."""
    hp, wp = h_ + 2 * ph, w_ + 2 * pw
    zero = xp.dtype.type(0)
    row, run, left = uint64(wp * cin), uint64(w_ * cin), uint64(pw * cin)
    for n in range(n0, n1):
        for r in range(hp):
            d = uint64(((n - n0) * hp + r) * wp * cin)
            if r < ph or r >= ph + h_:
                for j in range(row):
                    xp[d + j] = zero
                continue
            s = uint64(((n * h_) + r - ph) * w_ * cin)
            for j in range(left):
                xp[d + j] = zero
            for j in range(run):
                xp[d + left + j] = xf[s + j]
            for j in range(left + run, row):
                xp[d + j] = zero
    # (int64 bounds: a uint64 range whose start passes its stop wraps round instead of
    # being empty, and image blocks may be empty with n1 < n0)
    for j in range(max(n1 - n0, 0) * hp * wp * cin, xp.size):
        xp[j] = zero


@njit(cache=True, nogil=True)
def _row_blocks(xp, wf, yf, y0, images, oh_, ow_, hp, wp, sh, sw, cin, cout, kh_, kw_, pixels):
    """The 512-bit forward over blocks that stay inside each output row (OW a multiple of
    pixels / 2), written straight into y (output pixel (n, r, q) of the block's images at
    y0 + ((n*OH + r)*OW + q)*Cout, its taps from padded-input pixel (r*sh, q*sw) on,
    so any stride): the Wp - OW padding positions past each row, a fifth
    of the work on 8 x 8 images, are not computed, and no copy-out pass follows. Blocks of
    `pixels` where OW allows, else the halved kernel's; each output value is the same sum
    in the same order as in span blocks."""
    step = pixels if ow_ % pixels == 0 else pixels // 2
    for n in range(images):
        for r in range(oh_):
            for q in range(0, ow_, step):
                x0 = (n * hp * wp + r * sh * wp + q * sw) * cin
                o0 = y0 + ((n * oh_ + r) * ow_ + q) * cout
                for co in range(0, cout, _CHANNELS):
                    if step == pixels:
                        _wide_row_kernel(xp, x0, wf, co, yf, o0 + co, cin, cout, sw * cin, wp * cin, kh_, kw_)
                    else:
                        _wide_half_row_kernel(xp, x0, wf, co, yf, o0 + co, cin, cout, sw * cin, wp * cin, kh_, kw_)


@njit(cache=True, nogil=True)
def forward_images(x, w, y, n0, n1, sh, sw, ph, pw, xp, yp, b, has_bias, relu, cap, wide):
    """y[n0:n1] = conv(x[n0:n1], w) (stride sh, sw, zero padding ph, pw) (+ b, ReLU capped at
    cap), with xp and yp as the padded-input and output workspaces (flat, at least
    padded_rows(n1 - n0, ...) * Cin and output_rows(n1 - n0, ...) * Cout values; yp is
    not used where row blocks apply), by the 512-bit micro-kernel if `wide` (pass WIDE),
    else the 256-bit one. A stride other than 1 only where row blocks apply."""
    h_, w_, cin = x.shape[1], x.shape[2], x.shape[3]
    kh_, kw_, cout = w.shape[0], w.shape[1], w.shape[3]
    oh_, ow_ = y.shape[1], y.shape[2]
    hp, wp = h_ + 2 * ph, w_ + 2 * pw
    xf, yf, wf = x.reshape(-1), y.reshape(-1), w.reshape(-1)
    _pad_images(xf, xp, n0, n1, h_, w_, cin, ph, pw)
    zero = xp.dtype.type(0)
    span = oh_ * wp
    pixels = _block_pixels(wide, xp.itemsize)
    if row_blocks_apply(ow_, xp.itemsize, wide):
        y0, y1 = n0 * oh_ * ow_ * cout, n1 * oh_ * ow_ * cout
        _row_blocks(xp, wf, yf, y0, n1 - n0, oh_, ow_, hp, wp, sh, sw, cin, cout, kh_, kw_, pixels)
        bias_relu(yf[y0:y1].reshape(-1, cout), b, has_bias, relu, cap)
        return
    for n in range(n1 - n0):
        for p0 in range(0, span, pixels):
            for co in range(0, cout, _CHANNELS):
                if wide:
                    _wide_micro_kernel(xp, (n * hp * wp + p0) * cin, wf, co, yp, (n * span + p0) * cout + co,
                                       cin, cout, wp * cin, kh_, kw_)
                else:
                    _micro_kernel(xp, (n * hp * wp + p0) * cin, wf, co, yp, (n * span + p0) * cout + co,
                                  cin, cout, wp * cin, kh_, kw_)
    # copy out the OW valid positions of each output row, with bias and ReLU
    for n in range(n0, n1):
        for r in range(oh_):
            s = uint64(((n - n0) * span + r * wp) * cout)
            d = uint64(((n * oh_) + r) * ow_ * cout)
            for q in range(uint64(ow_)):
                for co in range(uint64(cout)):
                    v = yp[s + q * uint64(cout) + co]
                    if has_bias:
                        v += b[co]
                    if relu:
                        v = min(max(v, zero), cap)
                    yf[d + q * uint64(cout) + co] = v


@njit(cache=True, nogil=True)
def forward_image_blocks(x, w, y, n0, n1, per_block, sh, sw, ph, pw, xp, yp, b, has_bias, relu, cap, wide):
    """forward_images over images n0..n1 in blocks of per_block images, one after the other
    through the same workspaces (sized for per_block images): many images in one call from
    Python, each block's padded copy still in cache when the micro-kernels read it."""
    for s0 in range(n0, n1, per_block):
        forward_images(x, w, y, s0, min(n1, s0 + per_block), sh, sw, ph, pw, xp, yp, b, has_bias, relu, cap, wide)


# Input channels per weight-gradient micro-kernel call: 4 x 2 accumulator vectors.
_GRAD_CHANNELS = 4
# Bytes of input and grad_y rows per chunk of output positions of the weight gradient:
# every tap and channel block reads the chunk again, so it should stay in L1.
_GRAD_CHUNK_BYTES = 24 * 1024


@register_jitable
def _grad_block_channels(wide, itemsize):
    """Input channels per call of the weight-gradient micro-kernel of that width: 8
    accumulators of 512 bits, or 4 x 2 of 256 bits."""
    return 32 // itemsize if wide else _GRAD_CHANNELS


def _weight_grad_micro_kernel(bits):
    """The weight-gradient micro-kernel on `bits`-wide vectors (an intrinsic):
    dw[d0 + c*cout + j] += sum over r < rows, q < row_len of
    xp[x0 + r*x_row + q*x_pixel + c] * gf[g0 + (r*g_stride + q)*cout + j]
    for c < channels (at most _grad_block_channels(bits == 512, itemsize)), j < 16 (flat
    arrays, int64 offsets): row_len pixels of each of `rows` rows, whose strides (in
    values) differ in the padded input (a strided conv's pixels are x_pixel apart) and
    in grad_y. Each dw value is summed over the pixels in order at either width."""
    def grad_micro_kernel(typingctx, xp, x0, gf, g0, rows, row_len, x_row, x_pixel, g_stride, cout, channels, dw,
                          d0):
        return _weight_grad_codegen(bits, xp, gf, dw)
    grad_micro_kernel.__name__ = f"grad_micro_kernel_{bits}"
    return intrinsic(grad_micro_kernel)


def _weight_grad_codegen(bits, xp, gf, dw):
    dtype = xp.dtype
    if dtype not in (types.float32, types.float64) or gf.dtype != dtype or dw.dtype != dtype:
        return None
    block = _grad_block_channels(bits == 512, dtype.bitwidth // 8)
    sig = types.void(xp, types.int64, gf, types.int64, types.int64, types.int64, types.int64, types.int64,
                     types.int64, types.int64, types.int64, dw, types.int64)

    def codegen(context, builder, signature, args):
        xa, xo, ga, go, rows_, row_len_, x_row_, x_pixel_, g_stride_, cout_, channels_, da, do = args
        x_ptr = context.make_array(signature.args[0])(context, builder, xa).data
        g_ptr = context.make_array(signature.args[2])(context, builder, ga).data
        d_ptr = context.make_array(signature.args[11])(context, builder, da).data
        vec, lanes, n_vec, fma, zero_mask, acc = _vector_registers(builder, dtype, block, bits)
        i64 = ir.IntType(64)
        align = dtype.bitwidth // 8
        with cgutils.for_range(builder, rows_) as loop_r, cgutils.for_range(builder, row_len_) as loop_q:
            r, q = loop_r.index, loop_q.index
            g_row = builder.add(go, builder.mul(builder.add(builder.mul(r, g_stride_), q), cout_))
            grads = [
                builder.load(builder.bitcast(builder.gep(g_ptr, [builder.add(g_row, ir.Constant(i64, v * lanes))]),
                                             vec.as_pointer()), align=align)
                for v in range(n_vec)
            ]
            x_row = builder.add(xo, builder.add(builder.mul(r, x_row_), builder.mul(q, x_pixel_)))
            for c in range(block):  # channels past `channels` read the buffer's next values, never stored
                value = builder.load(builder.gep(x_ptr, [builder.add(x_row, ir.Constant(i64, c))]))
                lane0 = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
                broadcast = builder.shuffle_vector(lane0, ir.Constant(vec, ir.Undefined), zero_mask)
                for v in range(n_vec):
                    builder.store(builder.call(fma, [broadcast, grads[v], builder.load(acc[c][v])]), acc[c][v])
        for c in range(block):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, c), channels_)):
                for v in range(n_vec):
                    at = builder.add(do, builder.add(builder.mul(ir.Constant(i64, c), cout_), ir.Constant(i64, v * lanes)))
                    ptr = builder.bitcast(builder.gep(d_ptr, [at]), vec.as_pointer())
                    builder.store(builder.fadd(builder.load(ptr, align=align), builder.load(acc[c][v])), ptr, align=align)
        return context.get_dummy_value()

    return sig, codegen


_grad_micro_kernel = _weight_grad_micro_kernel(256)
_wide_grad_micro_kernel = _weight_grad_micro_kernel(512)


def grad_padded_rows(n_images, hp, wp, kw):
    """Rows of the padded-input workspace of weight_grad_images (reads past the images
    by up to 8 values, at least a row each)."""
    return n_images * hp * wp + kw + 8


@njit(cache=True, nogil=True)
def weight_grad_images(x, grad_y, dw_shape, n0, n1, sh, sw, ph, pw, xp, dw, wide, chunk_bytes=_GRAD_CHUNK_BYTES):
    """dw (flat, KH*KW*Cin*Cout, zeroed by the caller) = the weight gradient of the
    conv of stride (sh, sw) over images n0..n1 (by the 512-bit micro-kernel if `wide`, the
    same bits), with xp (grad_padded_rows(...) * Cin values) as the padded-input
    workspace: output pixel (r, q) of grad_y and padded-input pixel (r*sh + i, q*sw + k)
    are an output pixel and the input pixel under its tap (i, k). The micro-kernel reads
    grad_y in place, over chunks of whole output rows."""
    h_, w_, cin = x.shape[1], x.shape[2], x.shape[3]
    kh_, kw_, cout = dw_shape[0], dw_shape[1], dw_shape[3]
    oh_, ow_ = grad_y.shape[1], grad_y.shape[2]
    hp, wp = h_ + 2 * ph, w_ + 2 * pw
    xf, gf = x.reshape(-1), grad_y.reshape(-1)
    _pad_images(xf, xp, n0, n1, h_, w_, cin, ph, pw)
    chunk_rows = max(1, max(16, chunk_bytes // ((cin + cout) * xp.itemsize)) // ow_)
    # the KW*Cin values under a row of taps are contiguous in xp, as are their dW rows:
    # channel blocks run over them, so that a small Cin fills the blocks (LeNet-5's 5x5
    # conv of 6 channels: 30 values in 4 blocks of 8, not 5 blocks of 6 of 8)
    row_values = kw_ * cin
    # 512 bits pay from 5 input channels (LeNet-5's 6: 0.92 of the 256-bit time, 16 and
    # 32: 0.92); ResNet's 3-channel stem would compute 8 channels for 3 (1.6x slower)
    wide = wide and cin > _GRAD_CHANNELS
    block = _grad_block_channels(wide, xp.itemsize)
    for n in range(n1 - n0):
        for r0 in range(0, oh_, chunk_rows):
            rows = min(chunk_rows, oh_ - r0)
            g0 = ((n0 + n) * oh_ + r0) * ow_ * cout
            for i in range(kh_):
                x0 = (n * hp * wp + r0 * sh * wp + i * wp) * cin
                for c0 in range(0, row_values, block):
                    channels = min(block, row_values - c0)
                    d0 = (i * row_values + c0) * cout
                    for co in range(0, cout, _CHANNELS):
                        if wide:
                            _wide_grad_micro_kernel(xp, x0 + c0, gf, g0 + co, rows, ow_, sh * wp * cin, sw * cin,
                                                    ow_, cout, channels, dw, d0 + co)
                        else:
                            _grad_micro_kernel(xp, x0 + c0, gf, g0 + co, rows, ow_, sh * wp * cin, sw * cin, ow_,
                                               cout, channels, dw, d0 + co)
