import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py.kernels import linear
from bigdl_py.testing import numeric_grad, projection


def make(n, fan_in, fan_out, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, fan_in)).astype(dtype),
            rng.standard_normal((fan_out, fan_in)).astype(dtype),
            rng.standard_normal(fan_out).astype(dtype))


@pytest.mark.parametrize("n,fan_in,fan_out", [(1, 3, 2), (5, 7, 4), (16, 33, 9)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_backward_match_torch(n, fan_in, fan_out, bias):
    x, w, b = make(n, fan_in, fan_out)
    b = b if bias else None
    grad_y = projection((n, fan_out), seed=1).astype(np.float32)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, w) + ((b,) if bias else ())]
    yt = F.linear(*ts)
    yt.backward(torch.tensor(grad_y))
    y = linear.linear_forward(x, w, b)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    dx, dw, db = linear.linear_backward(x, w, grad_y, has_bias=bias)
    np.testing.assert_allclose(dx, ts[0].grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, ts[1].grad.numpy(), rtol=1e-5, atol=1e-5)
    if bias:
        np.testing.assert_allclose(db, ts[2].grad.numpy(), rtol=1e-5, atol=1e-5)
    else:
        assert db is None


def test_need_dx_false_skips_dx_only():
    x, w, _ = make(3, 4, 2)
    g = np.ones((3, 2), np.float32)
    dx, dw, db = linear.linear_backward(x, w, g, need_dx=False)
    assert dx is None
    np.testing.assert_allclose(dw, g.T @ x, rtol=1e-6)
    np.testing.assert_allclose(db, [3.0, 3.0])


def test_need_dw_false_gives_the_same_dx_with_one_gemm_instead_of_two(monkeypatch):
    x, w, _ = make(5, 7, 4)
    g = projection((5, 4), seed=1).astype(np.float32)
    dx_full, _, _ = linear.linear_backward(x, w, g)
    gemms = []
    matmuls = linear.matmuls
    monkeypatch.setattr(linear, "matmuls", lambda *products: gemms.extend(out.shape for *_, out in products)
                        or matmuls(*products))
    dx, dw, db = linear.linear_backward(x, w, g, need_dw=False)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, dx_full)
    assert gemms == [x.shape]  # the dx GEMM only
    assert linear.linear_backward(x, w, g, need_dx=False, need_dw=False) == (None, None, None)
    assert gemms == [x.shape]


@pytest.mark.parametrize("wrt", ["x", "w", "b"])
def test_backward_matches_finite_differences(wrt):
    x, w, b = make(3, 4, 2, dtype=np.float64, seed=2)
    r = projection((3, 2))
    inputs = {"x": x, "w": w, "b": b}

    def loss(v):
        args = dict(inputs, **{wrt: v})
        return np.sum(r * linear.linear_forward(args["x"], args["w"], args["b"]))

    grads = dict(zip("x w b".split(), linear.linear_backward(x, w, r)))
    np.testing.assert_allclose(grads[wrt], numeric_grad(loss, inputs[wrt]), rtol=1e-6, atol=1e-8)


X, W = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32)


@pytest.mark.parametrize("call,name", [
    (lambda: linear.linear_forward(X, W[:, :2]), "w"),
    (lambda: linear.linear_forward(X[0], W), "x"),
    (lambda: linear.linear_forward(X, W.astype(np.float64)), "w"),
    (lambda: linear.linear_forward(X, W, np.zeros(3, np.float32)), "b"),
    (lambda: linear.linear_forward(X.astype(np.int32), W), "x"),
    (lambda: linear.linear_backward(X, W, np.zeros((2, 3), np.float32)), "grad_y"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
