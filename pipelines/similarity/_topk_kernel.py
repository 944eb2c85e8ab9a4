"""Running top-k per row of a score matrix (numba, serial, cached).

Each row keeps its k best (score, catalogue index) pairs sorted by score
descending, ties broken by the smaller catalogue index, so the result does not
depend on the order in which catalogue blocks arrive.
"""
import numpy as np
from numba import njit

CHUNK = 64  # columns whose maximum is checked before any of them is looked at one by one


@njit(cache=True)
def _better(s, i, ref_s, ref_i):
    return s > ref_s or (s == ref_s and i < ref_i)


@njit(cache=True)
def _insert(best_s, best_i, r, s, idx):
    k = best_s.shape[1]
    p = k - 1
    while p > 0 and _better(s, idx, best_s[r, p - 1], best_i[r, p - 1]):
        best_s[r, p] = best_s[r, p - 1]
        best_i[r, p] = best_i[r, p - 1]
        p -= 1
    best_s[r, p] = s
    best_i[r, p] = idx


@njit(cache=True, fastmath=True)
def _chunk_max(scores, r, c0, c1):
    m = scores[r, c0]
    for j in range(c0 + 1, c1):
        m = max(m, scores[r, j])
    return m


@njit(cache=True)
def topk_update(scores, best_s, best_i, col_start, row_start):
    """Fold one (query block x catalogue block) score matrix into the running top-k.

    scores (bq, bc) float32: column j is catalogue item col_start + j, row r is
    query item row_start + r (that pair is skipped: an item is not its own
    neighbour). best_s (bq, k) float32 and best_i (bq, k) int64 are updated in place.
    """
    bq, bc = scores.shape
    k = best_s.shape[1]
    for r in range(bq):
        self_col = row_start + r - col_start
        for c0 in range(0, bc, CHUNK):
            c1 = min(c0 + CHUNK, bc)
            # Most chunks hold nothing better than the current k-th score: one
            # vectorised max rejects them without the per-element branch.
            if _chunk_max(scores, r, c0, c1) < best_s[r, k - 1]:
                continue
            for j in range(c0, c1):
                s = scores[r, j]
                idx = col_start + j
                if j != self_col and _better(s, idx, best_s[r, k - 1], best_i[r, k - 1]):
                    _insert(best_s, best_i, r, s, idx)


@njit(cache=True, fastmath=True)
def _chunk_gain(scores, r, c0, c1, thr):
    m = scores[r, c0] - thr[c0]
    for j in range(c0 + 1, c1):
        m = max(m, scores[r, j] - thr[j])
    return m


@njit(cache=True)
def topk_update_columns(scores, best_s, best_i, row_start):
    """Fold the COLUMNS of a score matrix into the running top-k of the catalogue block.

    The same as topk_update(scores.T, ...) without the transposed copy: row r is
    query item row_start + r, column j's running top-k is best_s[j] / best_i[j]
    (bc, k). Used for the mirrored half of a symmetric pair of blocks; never
    called on a block against itself, so there is no self pair to skip.
    """
    bq, bc = scores.shape
    k = best_s.shape[1]
    thr = best_s[:, k - 1].copy()  # each column's k-th best score so far
    for r in range(bq):
        idx = row_start + r
        for c0 in range(0, bc, CHUNK):
            c1 = min(c0 + CHUNK, bc)
            if _chunk_gain(scores, r, c0, c1, thr) < 0:
                continue
            for j in range(c0, c1):
                s = scores[r, j]
                if s >= thr[j] and _better(s, idx, best_s[j, k - 1], best_i[j, k - 1]):
                    _insert(best_s, best_i, j, s, idx)
                    thr[j] = best_s[j, k - 1]


def empty_topk(rows, k):
    """Running top-k state for `rows` queries: scores -inf, indices -1 (no neighbour yet)."""
    return np.full((rows, k), -np.inf, np.float32), np.full((rows, k), -1, np.int64)


def merge_order(a_s, a_i, b_s, b_i):
    """Column order that merges two top-k states of the same rows (as topk_update orders them).

    Returns (bq, k) positions into the concatenation [a | b] of the two states.
    """
    k = a_s.shape[1]
    s = np.concatenate([a_s, b_s], axis=1)
    i = np.concatenate([a_i, b_i], axis=1)
    # Empty slots (-1) sort last among equal (-inf) scores.
    return np.lexsort((np.where(i < 0, np.iinfo(np.int64).max, i), -s), axis=1)[:, :k]
