"""gemm.matmul (the direct convolution's micro-kernels as a GEMM) and gemm.transpose."""
import numpy as np
import pytest

from bigdl_py.kernels import gemm, parallel

# (M, K, N): rows below one block, a block and a rest, the layers' shapes.
SHAPES = [(1, 3, 16), (7, 5, 32), (37, 100, 48), (32, 128, 512), (128, 512, 256)]


def operands(m, k, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("wide", [False, True], ids=["256_bit", "512_bit"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_matches_float64_product_at_either_vector_width(m, k, n, wide, dtype, monkeypatch):
    monkeypatch.setattr(gemm, "WIDE", wide)
    a, b = operands(m, k, n, dtype)
    out = np.full((m, n), np.nan, dtype)
    assert gemm.matmul(a, b, out) is out
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(out, want, rtol=0, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("m", [1, 37])
def test_matmul_adds_the_bias_to_every_row(m):
    a, b = operands(m, 20, 48, np.float32)
    bias = np.random.default_rng(1).standard_normal(48).astype(np.float32)
    out = np.empty((m, 48), np.float32)
    gemm.matmul(a, b, out, bias)
    want = a.astype(np.float64) @ b.astype(np.float64) + bias
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_bits_do_not_depend_on_threads_or_column_blocks(dtype):
    a, b = operands(150, 300, 320, dtype)  # 14.4M multiply-adds: split into tasks
    one = np.empty((150, 320), dtype)
    gemm.matmul(a, b, one)
    previous = parallel.get_threads()
    parallel.set_threads(2)
    try:
        two = np.empty_like(one)
        gemm.matmul(a, b, two)
    finally:
        parallel.set_threads(previous)
    blocks = np.empty_like(one)
    for c0, c1 in ((0, 16), (16, 208), (208, 320)):
        gemm.matmul_columns(a, b, blocks, c0, c1, b[0], False, gemm.WIDE)
    assert np.array_equal(one, two) and np.array_equal(one, blocks)


def test_applies_only_to_columns_in_blocks_of_16():
    assert gemm.applies(np.empty((3, 32), np.float32)) and gemm.applies(np.empty((3, 16), np.float64))
    assert not gemm.applies(np.empty((3, 120), np.float32))
    assert not gemm.applies(np.empty((3, 32), np.int32))


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (16, 16), (37, 21), (256, 512)])
def test_transpose_is_a_contiguous_copy_of_the_transpose(shape):
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    t = gemm.transpose(a)
    assert t.flags.c_contiguous and np.array_equal(t, a.T)


@pytest.mark.parametrize("shape,dtype", [((3, 5), np.float32), ((2, 3), np.float64), ((7,), np.float32)])
def test_empty_is_aligned_to_a_cache_line(shape, dtype):
    a = gemm.empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.ctypes.data % 64 == 0


@pytest.mark.parametrize("m,k,n", [(7, 5, 16), (37, 100, 120), (128, 256, 84), (20, 33, 48)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_t_matches_float64_product_also_on_padded_panels(m, k, n, with_bias):
    # 120 and 84 rows of w run as 128 and 96 (zero rows), copied out to n columns
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    out = np.full((m, n), np.nan, np.float32)
    assert gemm.matmul_t(a, w, out, bias) is out
    want = a.astype(np.float64) @ w.T.astype(np.float64) + (0 if bias is None else bias)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_applies_t_pads_float32_rows_wasting_at_most_a_quarter():
    assert gemm.applies_t(np.empty((120, 3), np.float32)) and gemm.applies_t(np.empty((84, 3), np.float32))
    assert gemm.applies_t(np.empty((32, 3), np.float64)) and not gemm.applies_t(np.empty((120, 3), np.float64))
    assert not gemm.applies_t(np.empty((10, 3), np.float32))
