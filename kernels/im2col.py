"""im2col / col2im for NHWC convolutions, over a range of output lines.

A row of `cols` is one output pixel (n, oh, ow); its columns are ordered
(group, kh, kw, c) with c the channel inside the group, so for groups == 1 a row
times the HWIO weight reshaped to (KH*KW*Cin, Cout) is the convolution, and for
groups > 1 each group's columns form one contiguous block of the row. With
channels innermost every tap is a contiguous run of Cin/groups values, and with
groups == 1 and no horizontal dilation the KW taps of a kernel row are one run
of KW*Cin values.

"Lines" are the flattened (n, oh) output rows: line l covers n = l // OH,
oh = l % OH, so a caller can work through a batch in cache-sized chunks.

Offsets into the flat arrays are uint64 on purpose: numba then skips the
negative-index wraparound test, which is what lets LLVM vectorise the short
copies (4-6x faster than with signed indices).
"""
from numba import njit, uint64


@njit(cache=True)
def im2col(x, cols, line0, line1, oh_, ow_, kh_, kw_, sh, sw, ph, pw, dh, dw, groups):
    """Fill cols[(l - line0) * OW + ow, :] for output lines l in [line0, line1).

    Taps that fall into the zero padding are written as zeros.
    """
    h_, w_, c_ = x.shape[1], x.shape[2], x.shape[3]
    cg = c_ // groups
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    ucg = uint64(cg)
    run = uint64(kw_ * c_)
    seg = uint64(kw_ * cg)
    runs_ok = groups == 1 and dw == 1
    j = uint64(0)
    for line in range(line0, line1):
        n = line // oh_
        ih0 = (line - n * oh_) * sh - ph
        for ow in range(ow_):
            iw0 = ow * sw - pw
            inside = runs_ok and iw0 >= 0 and iw0 + kw_ <= w_
            for g in range(groups):
                for i in range(kh_):
                    ih = ih0 + i * dh
                    if ih < 0 or ih >= h_:
                        for c in range(seg):
                            cf[j + c] = 0
                        j += seg
                    elif inside:
                        s = uint64(((n * h_ + ih) * w_ + iw0) * c_)
                        for c in range(run):
                            cf[j + c] = xf[s + c]
                        j += run
                    else:
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


@njit(cache=True)
def col2im(cols, dx, line0, line1, oh_, ow_, kh_, kw_, sh, sw, ph, pw, dh, dw, groups):
    """Adjoint of im2col: add each row of cols back into dx (padding taps dropped).

    Accumulates, so dx must start at zero; consecutive chunks may overlap in dx.
    """
    h_, w_, c_ = dx.shape[1], dx.shape[2], dx.shape[3]
    cg = c_ // groups
    df = dx.reshape(-1)
    cf = cols.reshape(-1)
    ucg = uint64(cg)
    run = uint64(kw_ * c_)
    seg = uint64(kw_ * cg)
    runs_ok = groups == 1 and dw == 1
    j = uint64(0)
    for line in range(line0, line1):
        n = line // oh_
        ih0 = (line - n * oh_) * sh - ph
        for ow in range(ow_):
            iw0 = ow * sw - pw
            inside = runs_ok and iw0 >= 0 and iw0 + kw_ <= w_
            for g in range(groups):
                for i in range(kh_):
                    ih = ih0 + i * dh
                    if ih < 0 or ih >= h_:
                        j += seg
                    elif inside:
                        d = uint64(((n * h_ + ih) * w_ + iw0) * c_)
                        for c in range(run):
                            df[d + c] += cf[j + c]
                        j += run
                    else:
                        base = (n * h_ + ih) * w_
                        for k in range(kw_):
                            iw = iw0 + k * dw
                            if 0 <= iw < w_:
                                d = uint64((base + iw) * c_ + g * cg)
                                for c in range(ucg):
                                    df[d + c] += cf[j + c]
                            j += ucg
