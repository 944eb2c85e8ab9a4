import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py.kernels import pool
from bigdl_py.testing import numeric_grad, projection

# (x shape NHWC, kernel, stride, padding, ceil_mode)
CASES = [
    ((1, 5, 5, 3), 2, None, 0, False),
    ((2, 7, 6, 4), 3, 2, 1, False),
    ((2, 7, 6, 4), 3, 2, 1, True),
    ((1, 6, 7, 2), (2, 3), (2, 1), (1, 1), True),
    ((3, 5, 8, 5), 3, 3, 0, True),
    # ceil mode would add a window starting in the right padding: torch drops it.
    ((1, 5, 5, 2), 2, 2, 1, True),
    ((2, 4, 4, 1), 4, 1, 2, False),
]


def nchw(t):
    return t.permute(0, 3, 1, 2)


def nhwc(t):
    return t.permute(0, 2, 3, 1)


def distinct(shape, seed=0):
    """Values 0.1 apart in random order: no ties, and gaps wider than finite-difference steps."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) * 0.1 - n * 0.05).reshape(shape)


def torch_forward_backward(fn, x, grad_y):
    xt = torch.tensor(x, requires_grad=True)
    out = fn(xt)
    y = out[0] if isinstance(out, tuple) else out
    y.backward(torch.tensor(grad_y))
    return out, xt.grad.numpy()


@pytest.mark.parametrize("shape,kernel,stride,padding,ceil_mode", CASES)
def test_maxpool_matches_torch_values_indices_and_gradient(shape, kernel, stride, padding, ceil_mode):
    x = distinct(shape).astype(np.float32)
    y, arg = pool.maxpool2d_forward(x, kernel, stride, padding, ceil_mode)
    assert y.shape == pool.pool2d_output_shape(shape, kernel, stride, padding, ceil_mode)
    grad_y = projection(y.shape, seed=1).astype(np.float32)

    def ref(xt):
        yt, it = F.max_pool2d(nchw(xt), kernel, stride, padding, ceil_mode=ceil_mode,
                              return_indices=True)
        return nhwc(yt), nhwc(it)

    (yt, it), dxt = torch_forward_backward(ref, x, grad_y)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(arg, it.numpy())
    assert arg.dtype == np.int32
    dx = pool.maxpool2d_backward(grad_y, arg, shape)
    np.testing.assert_allclose(dx, dxt, rtol=1e-6, atol=1e-6)


def test_maxpool_propagates_nan_and_handles_all_minus_inf_like_torch():
    x = np.full((1, 4, 4, 2), -np.inf, dtype=np.float32)
    x[0, 1, 2, 0] = np.nan
    x[0, 3, 3, 1] = 5.0
    y, arg = pool.maxpool2d_forward(x, 2, 2, 1)
    yt, it = F.max_pool2d(nchw(torch.tensor(x)), 2, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y, nhwc(yt).numpy())
    np.testing.assert_array_equal(arg, nhwc(it).numpy())


@pytest.mark.parametrize("shape,kernel,stride,padding,ceil_mode", CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool_matches_torch(shape, kernel, stride, padding, ceil_mode, count_include_pad):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    args = (kernel, stride, padding, ceil_mode, count_include_pad)
    y = pool.avgpool2d_forward(x, *args)
    grad_y = projection(y.shape, seed=1).astype(np.float32)
    yt, dxt = torch_forward_backward(
        lambda xt: nhwc(F.avg_pool2d(nchw(xt), kernel, stride, padding, ceil_mode, count_include_pad)),
        x, grad_y)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    dx = pool.avgpool2d_backward(grad_y, shape, *args)
    np.testing.assert_allclose(dx, dxt, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 3, 5, 4)])
def test_global_avgpool_matches_torch_adaptive_avg_pool(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = pool.global_avgpool_forward(x)
    grad_y = projection(y.shape, seed=1).astype(np.float32)
    yt, dxt = torch_forward_backward(lambda xt: F.adaptive_avg_pool2d(nchw(xt), 1)[:, :, 0, 0], x, grad_y)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pool.global_avgpool_backward(grad_y, shape), dxt, rtol=1e-6, atol=1e-7)


GRAD_CASES = [((1, 5, 4, 2), 3, 2, 1, True), ((2, 4, 5, 1), (2, 3), 1, (1, 0), False)]


@pytest.mark.parametrize("shape,kernel,stride,padding,ceil_mode", GRAD_CASES)
def test_maxpool_backward_matches_finite_differences(shape, kernel, stride, padding, ceil_mode):
    x = distinct(shape, seed=3)
    _, arg = pool.maxpool2d_forward(x, kernel, stride, padding, ceil_mode)
    r = projection(arg.shape)
    loss = lambda v: np.sum(r * pool.maxpool2d_forward(v, kernel, stride, padding, ceil_mode)[0])
    dx = pool.maxpool2d_backward(r, arg, shape)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape,kernel,stride,padding,ceil_mode", GRAD_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool_backward_matches_finite_differences(shape, kernel, stride, padding, ceil_mode,
                                                     count_include_pad):
    x = np.random.default_rng(0).standard_normal(shape)
    args = (kernel, stride, padding, ceil_mode, count_include_pad)
    r = projection(pool.pool2d_output_shape(shape, kernel, stride, padding, ceil_mode))
    loss = lambda v: np.sum(r * pool.avgpool2d_forward(v, *args))
    dx = pool.avgpool2d_backward(r, shape, *args)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)


def test_global_avgpool_backward_matches_finite_differences():
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 2))
    r = projection((2, 2))
    dx = pool.global_avgpool_backward(r, x.shape)
    loss = lambda v: np.sum(r * pool.global_avgpool_forward(v))
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)


def test_float32_in_float32_out():
    x = np.ones((1, 4, 4, 2), dtype=np.float32)
    assert pool.maxpool2d_forward(x, 2)[0].dtype == np.float32
    assert pool.avgpool2d_forward(x, 2).dtype == np.float32
    assert pool.global_avgpool_forward(x).dtype == np.float32


X = np.zeros((1, 4, 4, 2), dtype=np.float32)


@pytest.mark.parametrize("call,name", [
    (lambda: pool.maxpool2d_forward(X, 0), "kernel"),
    (lambda: pool.maxpool2d_forward(X, 2, stride=(1, 0)), "stride"),
    (lambda: pool.avgpool2d_forward(X, 2, padding=2), "padding"),
    (lambda: pool.avgpool2d_forward(X, 5), "x"),
    (lambda: pool.maxpool2d_forward(X[0], 2), "x"),
    (lambda: pool.maxpool2d_forward(X.astype(np.int32), 2), "x"),
    (lambda: pool.pool2d_output_shape((1, 4, 4), 2), "x_shape"),
    (lambda: pool.maxpool2d_backward(np.zeros((1, 2, 2, 2), np.float32),
                                     np.zeros((1, 2, 2, 2), np.int64), X.shape), "argmax"),
    (lambda: pool.maxpool2d_backward(np.zeros((1, 2, 2, 2), np.float32),
                                     np.full((1, 2, 2, 2), 16, np.int32), X.shape), "argmax"),
    (lambda: pool.maxpool2d_backward(np.zeros((1, 2, 2, 2), np.float32),
                                     np.zeros((1, 2, 2, 2), np.int32), (1, 4, 4, 3)), "x_shape"),
    (lambda: pool.avgpool2d_backward(np.zeros((1, 3, 2, 2), np.float32), X.shape, 2), "grad_y"),
    (lambda: pool.global_avgpool_backward(np.zeros((1, 3), np.float32), X.shape), "grad_y"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
