import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py.kernels import activation as act
from bigdl_py.testing import numeric_grad, projection

# name -> (our kwargs, torch function of a tensor)
ACTIVATIONS = {
    "relu": ({}, F.relu),
    "relu6": ({}, F.relu6),
    "leaky_relu": ({"negative_slope": 0.2}, lambda t: F.leaky_relu(t, 0.2)),
    "elu": ({"alpha": 0.7}, lambda t: F.elu(t, alpha=0.7)),
    "tanh": ({}, torch.tanh),
    "sigmoid": ({}, torch.sigmoid),
    "softmax": ({}, lambda t: F.softmax(t, dim=-1)),
    "log_softmax": ({}, lambda t: F.log_softmax(t, dim=-1)),
}
SHAPES = [(1,), (3, 5), (2, 3, 4, 5)]


def ours(name):
    return getattr(act, name), getattr(act, name + "_backward")


def sample(shape, seed=0):
    """Values spread over [-8, 8], kept 0.05 away from the kinks at 0 and 6."""
    x = np.random.default_rng(seed).uniform(-8, 8, shape)
    for kink in (0.0, 6.0):
        near = np.abs(x - kink) < 0.05
        x[near] = kink + 0.1 * np.sign(x[near] - kink + 1e-9)
    return x


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_torch(name, shape):
    kwargs, torch_fn = ACTIVATIONS[name]
    fwd, bwd = ours(name)
    x = sample(shape).astype(np.float32)
    grad_y = projection(shape, seed=1).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fn(xt)
    yt.backward(torch.tensor(grad_y))
    y = fwd(x, **kwargs)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    dx = bwd(x, y, grad_y, **kwargs)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_matches_finite_differences(name):
    kwargs, _ = ACTIVATIONS[name]
    fwd, bwd = ours(name)
    x = sample((3, 4), seed=2)
    r = projection(x.shape)
    dx = bwd(x, fwd(x, **kwargs), r, **kwargs)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: np.sum(r * fwd(v, **kwargs)), x),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "elu", "tanh", "sigmoid"])
def test_nan_propagates_like_torch(name):
    kwargs, torch_fn = ACTIVATIONS[name]
    x = np.array([np.nan, -1.0, 2.0], dtype=np.float32)
    np.testing.assert_allclose(ours(name)[0](x, **kwargs), torch_fn(torch.tensor(x)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "elu"])
def test_gradient_at_the_kinks_matches_torch(name):
    kwargs, torch_fn = ACTIVATIONS[name]
    fwd, bwd = ours(name)
    x = np.array([0.0, -0.0, 6.0, -1e-30], dtype=np.float32)
    xt = torch.tensor(x, requires_grad=True)
    torch_fn(xt).backward(torch.ones(4))
    np.testing.assert_array_equal(bwd(x, fwd(x, **kwargs), np.ones_like(x), **kwargs), xt.grad.numpy())


def test_sigmoid_and_softmax_are_stable_at_extremes_without_warnings():
    x = np.array([[-1000.0, 0.0, 1000.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = act.sigmoid(x)
        sm = act.softmax(x)
        lsm = act.log_softmax(x)
    np.testing.assert_array_equal(s, [[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(sm, [[0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(lsm, F.log_softmax(torch.tensor(x), dim=-1).numpy())


def test_relu_inplace_overwrites_its_input():
    x = np.array([-1.0, 0.5, -0.0, 3.0], dtype=np.float32)
    out = act.relu_inplace(x)
    assert out is x
    np.testing.assert_array_equal(x, [0.0, 0.5, 0.0, 3.0])


def test_backward_unused_forward_array_may_be_none():
    y = act.tanh(np.array([0.5, -0.5], dtype=np.float32))
    g = np.ones(2, dtype=np.float32)
    np.testing.assert_array_equal(act.tanh_backward(None, y, g), 1 - y * y)
    np.testing.assert_array_equal(act.relu_backward(np.array([1, -1], np.float32), None, g), [1, 0])


X = np.zeros((2, 3), np.float32)


@pytest.mark.parametrize("call,name", [
    (lambda: act.relu(X.astype(np.int64)), "x"),
    (lambda: act.relu([1.0, 2.0]), "x"),
    (lambda: act.sigmoid(X.T), "x"),
    (lambda: act.relu_backward(X, None, X[:1]), "x"),
    (lambda: act.tanh_backward(X, None, X), "y"),
    (lambda: act.elu_backward(X, X.astype(np.float64), X), "y"),
    (lambda: act.leaky_relu(X, negative_slope="0.1"), "negative_slope"),
    (lambda: act.elu(X, alpha=float("nan")), "alpha"),
    (lambda: act.softmax(np.zeros((2, 0), np.float32)), "x"),
    (lambda: act.softmax_backward(X, X, np.zeros((2, 4), np.float32)), "y"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
