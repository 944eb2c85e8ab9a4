"""Fully connected layer as GEMMs: y = x @ w.T + b, weight (out, in) as in PyTorch.

The forward runs on gemm's micro-kernels, the bias as the accumulators' start, where
gemm.applies_t(w) (out a multiple of 16, or float32 padded to one wasting at most a
quarter): each 16-row panel of w transposed just before use, (128, 512) -> 256 in 0.33 ms
against sgemm's 0.39 on w.T, which OpenBLAS packs on every call. Else BLAS.

The backward's dx = grad_y @ w and dW = grad_y.T @ x run on them where _backward_direct
(grad_y transposed first; (128, 512) -> 256: 0.30 and 0.32 ms against 0.34 and 0.34), as
two whole tasks (gemm.matmuls). Else BLAS: with several kernel threads each GEMM is split
into row blocks (parallel.matmul_rows), the backward's dx and dW GEMMs as the tasks of one
split (parallel.matmuls).
"""
import numpy as np

from . import gemm
from ._checks import check_array, check_same_dtype, check_shape
from .parallel import matmul_rows, matmuls


def _check_x_w(x, w):
    check_array("x", x, ndim=2)
    check_array("w", w, ndim=2)
    check_same_dtype(x=x, w=w)
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"w: expected shape (*, {x.shape[1]}) to match x's {x.shape[1]} input features, "
            f"received {w.shape}"
        )


def linear_forward(x, w, b=None):
    """y = x @ w.T + b.

    Args:
        x: inputs, float32 (or float64).
        w: weight (out_features, in_features).
        b: optional bias (out_features,).
    Shape:
        x (N, in) -> y (N, out).
    """
    _check_x_w(x, w)
    if b is not None:
        check_array("b", b, ndim=1)
        check_shape("b", b, (w.shape[0],))
        check_same_dtype(x=x, b=b)
    if gemm.applies_t(w):
        return gemm.matmul_t(x, w, gemm.empty((x.shape[0], w.shape[0]), x.dtype), b)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    matmul_rows(x, w.T, y)
    if b is not None:
        y += b
    return y


def _backward_direct(x, w, need_dw):
    """Whether linear_backward runs on gemm: in a multiple of 16, out at least 16 (it is K of
    dx and dW's rows: 64 -> 2 took 45 us against BLAS's 26), and dW's K = N at most 512 with
    in at least 128 (a long K over few columns is where the micro-kernel loses: batch 512,
    in 64: 0.18 against 0.17 ms; an LSTM's K = 1024: 1.8x)."""
    n, fin = x.shape
    return (gemm.applies(x) and w.shape[0] >= gemm.CHANNELS
            and (not need_dw or (fin >= 128 and n <= 512)))


def linear_backward(x, w, grad_y, need_dx=True, has_bias=True, need_dw=True):
    """Gradients of linear_forward.

    Args:
        x, w: the forward inputs.
        grad_y: dL/dy, (N, out).
        need_dx: skip the dx GEMM when False (first layer of a model).
        has_bias: return db when True.
        need_dw: skip the dw GEMM and db when False (a frozen layer: only dx is wanted).
    Returns:
        (dx or None, dw or None, db or None); dx (N, in), dw (out, in), db (out,).
    """
    _check_x_w(x, w)
    check_array("grad_y", grad_y, ndim=2)
    check_shape("grad_y", grad_y, (x.shape[0], w.shape[0]))
    check_same_dtype(x=x, grad_y=grad_y)
    direct = _backward_direct(x, w, need_dw)
    empty = gemm.empty if direct else np.empty
    dx = empty(x.shape, x.dtype) if need_dx else None
    dw = empty(w.shape, x.dtype) if need_dw else None
    if direct:
        gemm.matmuls(*([(grad_y, w, dx)] if need_dx else []),
                     *([(gemm.transpose(grad_y), x, dw)] if need_dw else []))
    else:
        matmuls(*([(grad_y, w, dx)] if need_dx else []), *([(grad_y.T, x, dw)] if need_dw else []))
    db = grad_y.sum(axis=0) if need_dw and has_bias else None
    return dx, dw, db
