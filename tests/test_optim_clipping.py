"""Gradient clipping vs torch.nn.utils, and the sharded two-step global-norm clip."""
import math
import re

import numpy as np
import pytest
import torch

from bigdl_py.optim import clip_by_global_norm, clip_by_value, clip_coefficient, global_norm_sq, scale


def _grad(n=1000, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("max_norm", [0.5, 10.0, 1e3])  # clipped, clipped, untouched
def test_global_norm_matches_torch(max_norm):
    g = _grad()
    t = torch.from_numpy(g.copy())
    t_param = torch.nn.Parameter(torch.zeros_like(t))
    t_param.grad = t
    expected_norm = float(torch.nn.utils.clip_grad_norm_([t_param], max_norm))
    before = g.copy()
    norm = clip_by_global_norm(g, max_norm)
    assert norm == pytest.approx(expected_norm, rel=1e-6)
    np.testing.assert_allclose(g, t.numpy(), rtol=1e-6)
    assert np.array_equal(g, before) == (norm <= max_norm)


def test_sharded_clip_equals_whole_vector_clip():
    whole = _grad(70001)
    shards = np.array_split(whole.copy(), 3)
    total = math.sqrt(sum(global_norm_sq(s) for s in shards))
    coef = clip_coefficient(total, 1.0)
    for s in shards:
        scale(s, coef)
    norm = clip_by_global_norm(whole, 1.0)
    assert total == pytest.approx(norm, rel=1e-12)
    np.testing.assert_array_equal(np.concatenate(shards), whole)


def test_global_norm_sq_is_float64_accurate():
    g = np.full(200_003, 0.1, np.float32)
    assert global_norm_sq(g) == pytest.approx(200_003 * float(np.float32(0.1)) ** 2, rel=1e-12)


def test_clip_by_value_matches_torch():
    g = _grad()
    t_param = torch.nn.Parameter(torch.zeros(g.size))
    t_param.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_value_([t_param], 0.7)
    out = clip_by_value(g, -0.7, 0.7)
    assert out is g
    np.testing.assert_array_equal(g, t_param.grad.numpy())


@pytest.mark.parametrize("call, message", [
    (lambda: clip_by_global_norm(_grad(), 0.0), "Invalid max_norm: 0.0"),
    (lambda: clip_coefficient(float("inf"), 1.0), "total_norm: expected a finite gradient norm, received inf"),
    (lambda: clip_by_global_norm(np.array([1.0, np.nan], np.float32), 1.0), "received nan"),
    (lambda: clip_by_value(_grad(), 1.0, -1.0), "expected min_value <= max_value"),
    (lambda: clip_by_value([1.0, 2.0], -1, 1), "g: expected a numpy array, received list"),
])
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
