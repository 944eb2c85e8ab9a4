"""Top-k kernel and block sizing: exact against numpy sorting, ties by catalogue index."""
import numpy as np
import pytest

from bigdl_py.pipelines.similarity._topk_kernel import (CHUNK, empty_topk, merge_order, topk_update,
                                                          topk_update_columns)
from bigdl_py.pipelines.similarity.blocks import block_rows_for_budget, l2_normalize


def _reference(scores, k, row_start=None):
    """Top-k by (score desc, index asc), skipping column row_start + r in row r."""
    s = scores.astype(np.float64).copy()
    if row_start is not None:
        for r in range(len(s)):
            if 0 <= row_start + r < s.shape[1]:
                s[r, row_start + r] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(s.shape[1]), s.shape), -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), order


@pytest.mark.parametrize("cols", [1, CHUNK - 1, CHUNK, 3 * CHUNK + 5])
def test_topk_update_equals_sorting_across_chunk_boundaries(cols):
    rng = np.random.default_rng(cols)
    scores = rng.standard_normal((40, cols)).astype(np.float32)
    best_s, best_i = empty_topk(40, 5)
    topk_update(scores, best_s, best_i, 0, 10 ** 9)
    ref_s, ref_i = _reference(scores, 5)
    kept = min(5, cols)
    np.testing.assert_array_equal(best_i[:, :kept], ref_i[:, :kept])
    np.testing.assert_array_equal(best_s[:, :kept], ref_s[:, :kept].astype(np.float32))
    assert (best_i[:, kept:] == -1).all() and np.isneginf(best_s[:, kept:]).all()


def test_blocks_merged_in_any_order_equal_one_pass_and_skip_self():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, (30, 300)).astype(np.float32)  # many ties
    ref_s, ref_i = _reference(scores, 7, row_start=100)
    states = []
    for lo, hi in [(200, 300), (0, 120), (120, 200)]:  # blocks arrive out of order
        s, i = empty_topk(30, 7)
        topk_update(np.ascontiguousarray(scores[:, lo:hi]), s, i, lo, 100)
        states.append((s, i))
    s, i = states[0]
    for s2, i2 in states[1:]:
        order = merge_order(s, i, s2, i2)
        s = np.take_along_axis(np.concatenate([s, s2], axis=1), order, axis=1)
        i = np.take_along_axis(np.concatenate([i, i2], axis=1), order, axis=1)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(s, ref_s.astype(np.float32))
    assert not (i == (100 + np.arange(30))[:, None]).any()


@pytest.mark.parametrize("memory_mb,dim", [(16, 8), (256, 128), (1024, 2048)])
def test_block_rows_fit_the_memory_budget(memory_mb, dim):
    b = block_rows_for_budget(memory_mb, dim)
    assert 4 * b * b + 8 * b * dim <= memory_mb * 2 ** 20
    assert 4 * (b + 64) ** 2 + 8 * (b + 64) * dim > memory_mb * 2 ** 20  # not needlessly small


def test_l2_normalize_refuses_zero_rows():
    np.testing.assert_allclose(np.linalg.norm(l2_normalize([[3, 4], [1, 0]]), axis=1), 1, rtol=1e-6)
    with pytest.raises(ValueError, match="1 all-zero row"):
        l2_normalize([[0, 0], [1, 0]])


def test_column_update_equals_the_row_update_of_the_transpose():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, (3 * CHUNK + 7, 70)).astype(np.float32)  # ties across rows
    by_rows_s, by_rows_i = empty_topk(70, 6)
    topk_update(np.ascontiguousarray(scores.T), by_rows_s, by_rows_i, 500, 10 ** 9)
    s, i = empty_topk(70, 6)
    topk_update_columns(scores[:100], s, i, 500)  # two calls: a running state carries over
    topk_update_columns(scores[100:], s, i, 600)
    np.testing.assert_array_equal(i, by_rows_i)
    np.testing.assert_array_equal(s, by_rows_s)
