import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py.kernels import norm
from bigdl_py.testing import numeric_grad, projection

SHAPES = [(2, 3), (7, 5), (1, 3, 2, 4), (4, 5, 3, 6)]


def channels_first(t):
    """torch wants (N, C, ...); ours keeps channels last."""
    return t if t.dim() == 2 else t.permute(0, 3, 1, 2)


def channels_last(t):
    return t if t.dim() == 2 else t.permute(0, 2, 3, 1)


def bn_inputs(shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    c = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2, c).astype(dtype)
    return x, gamma, beta, rm, rv


def torch_bn(x, gamma, beta, rm, rv, grad_y, training, momentum=0.1, eps=1e-5):
    ts = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    y = channels_last(F.batch_norm(channels_first(ts[0]), rm_t, rv_t, ts[1], ts[2], training, momentum, eps))
    y.backward(torch.tensor(grad_y))
    return y.detach().numpy(), rm_t.numpy(), rv_t.numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_train_matches_torch_outputs_running_stats_and_gradients(shape, momentum):
    x, gamma, beta, rm, rv = bn_inputs(shape)
    grad_y = projection(shape, seed=1).astype(np.float32)
    yt, rmt, rvt, (dxt, dgt, dbt) = torch_bn(x, gamma, beta, rm, rv, grad_y, True, momentum)
    y, mean, invstd = norm.batchnorm_forward_train(x, gamma, beta, rm, rv, momentum)
    np.testing.assert_allclose(y, yt, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rm, rmt, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rv, rvt, rtol=1e-6, atol=1e-6)
    axes = tuple(range(x.ndim - 1))
    np.testing.assert_allclose(mean, x.mean(axis=axes, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x.var(axis=axes, dtype=np.float64) + 1e-5), rtol=1e-6)
    assert y.dtype == mean.dtype == invstd.dtype == np.float32
    dx, dgamma, dbeta = norm.batchnorm_backward(x, gamma, grad_y, mean, invstd)
    np.testing.assert_allclose(dx, dxt, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dgamma, dgt, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dbeta, dbt, rtol=1e-5, atol=1e-5)


def test_batchnorm_batch_statistics_keep_float64_accuracy_over_a_million_rows_far_from_zero():
    # |mean| >> std over 2^20 rows: float32 running sums would lose the variance
    rng = np.random.default_rng(3)
    x = (1000.0 + 0.01 * rng.standard_normal((1 << 20, 3))).astype(np.float32)
    mean, var = norm._bn_stats(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(var, x64.var(axis=0), rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_eval_matches_torch_and_leaves_running_stats(shape):
    x, gamma, beta, rm, rv = bn_inputs(shape)
    grad_y = projection(shape, seed=1).astype(np.float32)
    yt, _, _, (dxt, dgt, dbt) = torch_bn(x, gamma, beta, rm, rv, grad_y, False)
    rm0, rv0 = rm.copy(), rv.copy()
    y = norm.batchnorm_forward_eval(x, gamma, beta, rm, rv)
    np.testing.assert_allclose(y, yt, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    invstd = (1 / np.sqrt(rv.astype(np.float64) + 1e-5)).astype(np.float32)
    dx, dgamma, dbeta = norm.batchnorm_backward(x, gamma, grad_y, rm, invstd, training=False)
    np.testing.assert_allclose(dx, dxt, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dgamma, dgt, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dbeta, dbt, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_with_fused_relu_matches_torch_batchnorm_then_relu(training):
    shape = (4, 5, 3, 6)
    x, gamma, beta, rm, rv = bn_inputs(shape)
    grad_y = projection(shape, seed=1).astype(np.float32)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    yt = channels_last(F.relu(F.batch_norm(channels_first(ts[0]), torch.tensor(rm), torch.tensor(rv), ts[1], ts[2],
                                           training)))
    yt.backward(torch.tensor(grad_y))
    if training:
        y, mean, invstd = norm.batchnorm_forward_train(x, gamma, beta, rm.copy(), rv.copy(), relu=True)
    else:
        y = norm.batchnorm_forward_eval(x, gamma, beta, rm, rv, relu=True)
        mean, invstd = rm, (1 / np.sqrt(rv.astype(np.float64) + 1e-5)).astype(np.float32)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    assert 0.05 < np.mean(y == 0) < 0.95  # both sides of the kink are exercised
    dx, dgamma, dbeta = norm.batchnorm_backward(x, gamma, grad_y, mean, invstd, training=training, y=y)
    for ours, theirs in zip((dx, dgamma, dbeta), ts):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 5, 7, 16), (2, 9, 11, 3), (2, 3, 5, 200)])
def test_batchnorm_backward_over_lines_of_rows_and_a_remainder_matches_torch_and_masks_nans(shape):
    # the kernels read rows in lines of k = 128 // C rows (one row of 200 channels), then
    # the remaining rows; NaN gradients where the fused ReLU is off give 0, as in torch
    x, gamma, beta, _, _ = bn_inputs(shape, seed=4, dtype=np.float64)
    y, mean, invstd = norm.batchnorm_forward_train(x, gamma, beta, None, None, relu=True)
    grad_y = projection(shape, seed=5)
    grad_y[y == 0] = np.nan
    dx, dgamma, dbeta = norm.batchnorm_backward(x, gamma, grad_y, mean, invstd, y=y)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    yt = channels_last(F.relu(F.batch_norm(channels_first(ts[0]), None, None, ts[1], ts[2], True)))
    yt.backward(torch.tensor(grad_y))
    for ours, theirs in zip((dx, dgamma, dbeta), ts):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_batchnorm_fused_relu_backward_matches_finite_differences():
    x, gamma, beta, _, _ = bn_inputs((2, 3, 2, 3), seed=2, dtype=np.float64)
    r = projection(x.shape)
    y, mean, invstd = norm.batchnorm_forward_train(x, gamma, beta, None, None, relu=True)
    dx, dgamma, dbeta = norm.batchnorm_backward(x, gamma, r, mean, invstd, y=y)
    for got, wrt in ((dx, "x"), (dgamma, "gamma"), (dbeta, "beta")):
        def loss(v, wrt=wrt):
            args = dict(dict(x=x, gamma=gamma, beta=beta), **{wrt: v})
            return np.sum(r * norm.batchnorm_forward_train(args["x"], args["gamma"], args["beta"], None, None,
                                                           relu=True)[0])
        np.testing.assert_allclose(got, numeric_grad(loss, dict(x=x, gamma=gamma, beta=beta)[wrt]),
                                   rtol=1e-5, atol=1e-7)


def test_batchnorm_without_affine_or_running_stats_matches_torch():
    x = bn_inputs((3, 2, 2, 4))[0]
    y, _, _ = norm.batchnorm_forward_train(x, None, None, None, None)
    yt = channels_last(F.batch_norm(channels_first(torch.tensor(x)), None, None, training=True))
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 2), (2, 2, 1, 3)])
@pytest.mark.parametrize("wrt", ["x", "gamma", "beta"])
def test_batchnorm_train_backward_matches_finite_differences(shape, wrt):
    x, gamma, beta, rm, rv = bn_inputs(shape, seed=2, dtype=np.float64)
    r = projection(shape)
    inputs = {"x": x, "gamma": gamma, "beta": beta}

    def loss(v):
        args = dict(inputs, **{wrt: v})
        y = norm.batchnorm_forward_train(args["x"], args["gamma"], args["beta"], None, None)[0]
        return np.sum(r * y)

    _, mean, invstd = norm.batchnorm_forward_train(x, gamma, beta, None, None)
    grads = dict(zip(["x", "gamma", "beta"], norm.batchnorm_backward(x, gamma, r, mean, invstd)))
    np.testing.assert_allclose(grads[wrt], numeric_grad(loss, inputs[wrt]), rtol=1e-5, atol=1e-7)


def test_batchnorm_eval_backward_matches_finite_differences():
    x, gamma, beta, rm, rv = bn_inputs((2, 2, 2, 3), seed=2, dtype=np.float64)
    r = projection(x.shape)
    dx, dgamma, _ = norm.batchnorm_backward(x, gamma, r, rm, 1 / np.sqrt(rv + 1e-5), training=False)
    np.testing.assert_allclose(
        dx, numeric_grad(lambda v: np.sum(r * norm.batchnorm_forward_eval(v, gamma, beta, rm, rv)), x),
        rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        dgamma, numeric_grad(lambda v: np.sum(r * norm.batchnorm_forward_eval(x, v, beta, rm, rv)), gamma),
        rtol=1e-6, atol=1e-8)


# (shape, size, alpha, beta, k): odd, even, 1 and wider-than-C windows.
LRN_CASES = [
    ((2, 3, 4, 7), 5, 1e-4, 0.75, 1.0),
    ((1, 2, 2, 6), 2, 0.5, 0.75, 2.0),
    ((2, 2, 3, 4), 1, 0.3, 0.5, 1.0),
    ((1, 3, 1, 3), 8, 1.0, 1.2, 0.5),
    ((2, 5, 6), 4, 0.2, 0.75, 1.0),
]


def torch_lrn(t, size, alpha, beta, k):
    if t.dim() == 4:
        return F.local_response_norm(t.permute(0, 3, 1, 2), size, alpha, beta, k).permute(0, 2, 3, 1)
    return F.local_response_norm(t.transpose(1, 2), size, alpha, beta, k).transpose(1, 2)


@pytest.mark.parametrize("shape,size,alpha,beta,k", LRN_CASES)
def test_lrn_matches_torch(shape, size, alpha, beta, k):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 2
    grad_y = projection(shape, seed=1).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_lrn(xt, size, alpha, beta, k)
    yt.backward(torch.tensor(grad_y))
    y, scale = norm.lrn_forward(x, size, alpha, beta, k)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, x * scale ** -beta, rtol=1e-5, atol=1e-6)
    dx = norm.lrn_backward(x, y, scale, grad_y, size, alpha, beta, k)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape,size,alpha,beta,k", LRN_CASES[1:])
def test_lrn_backward_matches_finite_differences(shape, size, alpha, beta, k):
    x = np.random.default_rng(0).standard_normal(shape)
    r = projection(shape)
    y, scale = norm.lrn_forward(x, size, alpha, beta, k)
    dx = norm.lrn_backward(x, y, scale, r, size, alpha, beta, k)
    loss = lambda v: np.sum(r * norm.lrn_forward(v, size, alpha, beta, k)[0])
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)


X, C3 = np.zeros((2, 3), np.float32), np.ones(3, np.float32)


@pytest.mark.parametrize("call,name", [
    (lambda: norm.batchnorm_forward_train(X, np.ones(4, np.float32), None, None, None), "gamma"),
    (lambda: norm.batchnorm_forward_train(X[:1], C3, C3, C3, C3), "x"),
    (lambda: norm.batchnorm_forward_train(X[None], C3, C3, C3, C3), "x"),
    (lambda: norm.batchnorm_forward_train(X, C3, C3, C3, None), "running_var"),
    (lambda: norm.batchnorm_forward_train(X, C3, C3, C3, C3, momentum=1.5), "momentum"),
    (lambda: norm.batchnorm_forward_train(X, C3, C3, C3, C3, eps=0.0), "eps"),
    (lambda: norm.batchnorm_forward_eval(X, C3, C3, None, C3), "running_mean"),
    (lambda: norm.batchnorm_backward(X, C3, X[:1], C3, C3), "grad_y"),
    (lambda: norm.batchnorm_backward(X, C3, X, C3, C3[:2]), "save_invstd"),
    (lambda: norm.batchnorm_backward(X, C3, X, C3, C3, y=X[:1]), "y"),
    (lambda: norm.batchnorm_forward_train(X, C3, C3, C3, C3, relu="yes"), "relu"),
    (lambda: norm.lrn_forward(X, size=0), "size"),
    (lambda: norm.lrn_forward(X, k=0.0), "k"),
    (lambda: norm.lrn_forward(X[0]), "x"),
    (lambda: norm.lrn_backward(X, X, X, X[:1]), "grad_y"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
