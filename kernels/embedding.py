"""Embedding lookup (row gather) and its scatter-add gradient."""
import numpy as np
from numba import njit

from ._checks import check_array, check_positive_int

_INDEX_DTYPES = (np.int32, np.int64)


def _check_indices(indices, num_embeddings):
    check_array("indices", indices, dtype=_INDEX_DTYPES, contiguous=False)
    # min/max are cheap reductions; the element-wise scan runs only to name the culprit.
    if indices.size and (indices.min() < 0 or indices.max() >= num_embeddings):
        flat = indices.reshape(-1)
        first = np.flatnonzero((flat < 0) | (flat >= num_embeddings))[0]
        pos = tuple(int(i) for i in np.unravel_index(first, indices.shape))
        raise ValueError(
            f"indices: expected values in [0, {num_embeddings}), received {flat[first]} at position {pos}"
        )


def _padding_row(padding_idx, num_embeddings):
    """padding_idx as a row number (negative counts from the end, as torch), or -1 for none."""
    if padding_idx is None:
        return -1
    if (isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer))
            or not -num_embeddings <= padding_idx < num_embeddings):
        raise ValueError(
            f"padding_idx: expected None or an int in [{-num_embeddings}, {num_embeddings}), "
            f"received {padding_idx!r}"
        )
    return int(padding_idx) % num_embeddings


def embedding_forward(indices, weight, padding_idx=None):
    """Rows of weight picked by indices.

    Args:
        indices: int32 or int64, any shape, values in [0, num_embeddings).
        weight: (num_embeddings, dim) float32 (or float64).
        padding_idx: row whose gradient is always zero (its value is used as is).
    Shape:
        indices (*) -> y (*, dim).
    """
    check_array("weight", weight, ndim=2)
    _padding_row(padding_idx, weight.shape[0])
    _check_indices(indices, weight.shape[0])
    return np.take(weight, indices, axis=0)


@njit(cache=True)
def _scatter_add(idx, g, pad, dw):
    for i in range(idx.size):
        r = idx[i]
        if r != pad:
            for d in range(g.shape[1]):
                dw[r, d] += g[i, d]


def embedding_backward(indices, grad_y, num_embeddings, padding_idx=None):
    """dL/dweight: grad_y rows summed into the rows they were read from.

    Repeated indices accumulate; the padding_idx row stays zero.
    Shape:
        indices (*), grad_y (*, dim) -> dweight (num_embeddings, dim).
    """
    num_embeddings = check_positive_int("num_embeddings", num_embeddings)
    pad = _padding_row(padding_idx, num_embeddings)
    _check_indices(indices, num_embeddings)
    check_array("grad_y", grad_y)
    if grad_y.shape[:-1] != indices.shape or grad_y.ndim != indices.ndim + 1:
        raise ValueError(
            f"grad_y: expected shape {indices.shape + ('dim',)} (indices shape plus dim), "
            f"received {grad_y.shape}"
        )
    dim = grad_y.shape[-1]
    dw = np.zeros((num_embeddings, dim), dtype=grad_y.dtype)
    _scatter_add(np.ascontiguousarray(indices).reshape(-1), grad_y.reshape(-1, dim), pad, dw)
    return dw
