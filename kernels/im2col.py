"""im2col / col2im for NHWC convolutions, over a range of output lines.

A row of `cols` is one output pixel (n, oh, ow); its columns are ordered
(group, kh, kw, c) with c the channel inside the group, so for groups == 1 a row
times the HWIO weight reshaped to (KH*KW*Cin, Cout) is the convolution, and for
groups > 1 each group's columns form one contiguous block of the row. With
channels innermost every tap is a contiguous run of Cin/groups values, and with
groups == 1 and no horizontal dilation a whole kernel row is one run of KW*Cin
values; output columns whose kernel rows lie inside the input width are copied
that way, kernel row by kernel row, and only the border columns tap by tap.

"Lines" are the flattened (n, oh) output rows: line l covers n = l // OH,
oh = l % OH, so a caller can work through a batch in cache-sized chunks.

Offsets into the flat arrays are uint64 on purpose: numba then skips the
negative-index wraparound test, which is what lets LLVM vectorise the short
copies (4-6x faster than with signed indices).
"""
from numba import njit, uint64


@njit(cache=True)
def _interior(ow_, w_, kw_, sw, pw, dw, groups):
    """[lo, hi): output columns whose kernel row is one in-bounds run of the input row."""
    if groups != 1 or dw != 1 or w_ - kw_ + pw < 0:
        return 0, 0
    lo = (pw + sw - 1) // sw
    return lo, max(lo, min(ow_, (w_ - kw_ + pw) // sw + 1))


@njit(cache=True, nogil=True)
def im2col(x, cols, line0, line1, oh_, ow_, kh_, kw_, sh, sw, ph, pw, dh, dw, groups):
    """Fill cols[(l - line0) * OW + ow, :] for output lines l in [line0, line1).

    Taps that fall into the zero padding are written as zeros.
    """
    h_, w_, c_ = x.shape[1], x.shape[2], x.shape[3]
    cg = c_ // groups
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    width = uint64(cols.shape[1])
    ucg = uint64(cg)
    run = uint64(kw_ * c_)
    seg = uint64(kw_ * cg)
    x_step = uint64(sw * c_)
    in_lo, in_hi = _interior(ow_, w_, kw_, sw, pw, dw, groups)
    for line in range(line0, line1):
        n = line // oh_
        ih0 = (line - n * oh_) * sh - ph
        r0 = uint64((line - line0) * ow_) * width
        for i in range(kh_):
            ih = ih0 + i * dh
            d = r0 + uint64(in_lo) * width + uint64(i) * run
            if ih < 0 or ih >= h_:
                for _ in range(in_hi - in_lo):
                    for c in range(run):
                        cf[d + c] = 0
                    d += width
                continue
            s = uint64(((n * h_ + ih) * w_ + in_lo * sw - pw) * c_)
            for _ in range(in_hi - in_lo):
                for c in range(run):
                    cf[d + c] = xf[s + c]
                d += width
                s += x_step
        for ow in range(ow_):
            if in_lo <= ow < in_hi:
                continue
            iw0 = ow * sw - pw
            j = r0 + uint64(ow) * width
            for g in range(groups):
                for i in range(kh_):
                    ih = ih0 + i * dh
                    if ih < 0 or ih >= h_:
                        for c in range(seg):
                            cf[j + c] = 0
                        j += seg
                        continue
                    base = (n * h_ + ih) * w_
                    for k in range(kw_):
                        iw = iw0 + k * dw
                        if 0 <= iw < w_:
                            s = uint64((base + iw) * c_ + g * cg)
                            for c in range(ucg):
                                cf[j + c] = xf[s + c]
                        else:
                            for c in range(ucg):
                                cf[j + c] = 0
                        j += ucg


@njit(cache=True, nogil=True)
def col2im(cols, dx, line0, line1, oh_, ow_, kh_, kw_, sh, sw, ph, pw, dh, dw, groups):
    """Adjoint of im2col: add each row of cols back into dx (padding taps dropped).

    Accumulates, so dx must start at zero; consecutive chunks may overlap in dx.
    """
    h_, w_, c_ = dx.shape[1], dx.shape[2], dx.shape[3]
    cg = c_ // groups
    df = dx.reshape(-1)
    cf = cols.reshape(-1)
    width = uint64(cols.shape[1])
    ucg = uint64(cg)
    run = uint64(kw_ * c_)
    x_step = uint64(sw * c_)
    in_lo, in_hi = _interior(ow_, w_, kw_, sw, pw, dw, groups)
    for line in range(line0, line1):
        n = line // oh_
        ih0 = (line - n * oh_) * sh - ph
        r0 = uint64((line - line0) * ow_) * width
        for i in range(kh_):
            ih = ih0 + i * dh
            if ih < 0 or ih >= h_:
                continue
            j = r0 + uint64(in_lo) * width + uint64(i) * run
            d = uint64(((n * h_ + ih) * w_ + in_lo * sw - pw) * c_)
            for _ in range(in_hi - in_lo):
                for c in range(run):
                    df[d + c] += cf[j + c]
                j += width
                d += x_step
        for ow in range(ow_):
            if in_lo <= ow < in_hi:
                continue
            iw0 = ow * sw - pw
            j = r0 + uint64(ow) * width
            for g in range(groups):
                for i in range(kh_):
                    ih = ih0 + i * dh
                    base = (n * h_ + ih) * w_
                    for k in range(kw_):
                        iw = iw0 + k * dw
                        if 0 <= ih < h_ and 0 <= iw < w_:
                            d = uint64((base + iw) * c_ + g * cg)
                            for c in range(ucg):
                                df[d + c] += cf[j + c]
                        j += ucg
