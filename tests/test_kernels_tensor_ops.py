import numpy as np
import pytest
import torch

from bigdl_py.kernels import tensor_ops as ops


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_matches_torch_cat(axis):
    shapes = {0: [(1, 3, 2), (4, 3, 2)], 1: [(2, 1, 2), (2, 5, 2)], -1: [(2, 3, 1), (2, 3, 4)]}[axis]
    arrays = [rand(*s, seed=i) for i, s in enumerate(shapes)] + [rand(*shapes[0], seed=9)]
    y = ops.concat(arrays, axis)
    np.testing.assert_array_equal(y, torch.cat([torch.tensor(a) for a in arrays], axis).numpy())
    assert y.flags.c_contiguous


@pytest.mark.parametrize("sizes,axis", [([1, 2], 0), ([2, 0, 3], 1), ([4, 1, 1], -1)])
def test_split_matches_torch_split_and_gives_contiguous_pieces(sizes, axis):
    x = rand(3, 5, 6)
    parts = ops.split(x, sizes, axis)
    expected = torch.split(torch.tensor(x), sizes, axis)
    assert len(parts) == len(expected)
    for p, e in zip(parts, expected):
        np.testing.assert_array_equal(p, e.numpy())
        assert p.flags.c_contiguous


def test_split_then_concat_round_trips():
    x = rand(2, 3, 4, 5)
    np.testing.assert_array_equal(ops.concat(ops.split(x, [2, 3], -1), -1), x)


def test_layout_conversions_match_torch_permute_and_round_trip():
    x = rand(2, 3, 4, 5)
    nhwc = ops.nchw_to_nhwc(x)
    np.testing.assert_array_equal(nhwc, torch.tensor(x).permute(0, 2, 3, 1).numpy())
    assert nhwc.flags.c_contiguous and nhwc.shape == (2, 4, 5, 3)
    back = ops.nhwc_to_nchw(nhwc)
    np.testing.assert_array_equal(back, x)
    assert back.flags.c_contiguous
    images = np.arange(24, dtype=np.uint8).reshape(1, 2, 3, 4)
    assert ops.nchw_to_nhwc(images).dtype == np.uint8


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (1, -1)])
def test_reduce_sum_matches_torch_sum(axis):
    x = rand(3, 4, 5)
    y = ops.reduce_sum(x, axis)
    expected = torch.tensor(x, dtype=torch.float64).sum(dim=axis) if axis is not None else \
        torch.tensor(x, dtype=torch.float64).sum()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-6, atol=1e-6)


def test_reduce_sum_accumulates_in_float64():
    # In float32, 1e8 + 1 rounds back to 1e8 and the 1 is lost.
    x = np.array([[1e8, 1.0, -1e8]], dtype=np.float32)
    assert ops.reduce_sum(x) == 1.0
    np.testing.assert_array_equal(ops.reduce_sum(x, axis=1), [1.0])


def test_scale_and_add_match_torch_and_keep_dtype():
    a, b = rand(3, 4), rand(3, 4, seed=1)
    s = ops.scale(a, 0.3)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, (torch.tensor(a) * 0.3).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ops.add(a, b), (torch.tensor(a) + torch.tensor(b)).numpy())
    assert ops.add(a.T, b.T).flags.c_contiguous


A = np.zeros((2, 3), np.float32)


@pytest.mark.parametrize("call,name", [
    (lambda: ops.concat([], 0), "arrays"),
    (lambda: ops.concat([A, np.zeros((3, 3), np.float32)], 1), r"arrays\[1\]"),
    (lambda: ops.concat([A, A.astype(np.float64)], 0), r"arrays\[1\]"),
    (lambda: ops.concat([A, A], 2), "axis"),
    (lambda: ops.split(A, [1, 1], 1), "sizes"),
    (lambda: ops.split(A, [1, -1, 3], 1), "sizes"),
    (lambda: ops.split(A, [2], -3), "axis"),
    (lambda: ops.nchw_to_nhwc(A), "x"),
    (lambda: ops.nhwc_to_nchw(A), "x"),
    (lambda: ops.reduce_sum(A, (0, -2)), "axis"),
    (lambda: ops.reduce_sum(A, 2), "axis"),
    (lambda: ops.scale(A, "2"), "alpha"),
    (lambda: ops.add(A, A.T), "b"),
    (lambda: ops.add(A, A.astype(np.float64)), "b"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
