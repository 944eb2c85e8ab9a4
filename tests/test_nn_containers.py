"""Sequential: chaining, reverse backward, naming, configs; checked against torch and finite differences."""
import json

import numpy as np
import pytest
import torch

from bigdl_py import nn
from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.module import Module, register
from bigdl_py.testing import numeric_grad, projection


@register
class _Scale(Module):
    """y = tanh(x * w): a tiny custom module with one parameter (no kernels involved)."""

    def __init__(self, size, name=None):
        super().__init__(name)
        self.config = {"size": size}
        self.params["w"] = np.linspace(0.5, 1.5, size)
        self.grads["w"] = np.zeros(size)

    def forward(self, x):
        return np.tanh(x * self.params["w"])

    def backward(self, x, grad_y):
        d = grad_y * (1 - np.tanh(x * self.params["w"]) ** 2)
        self.grads["w"] += (d * x).sum(axis=0)
        return d * self.params["w"]


def to_float64(model):
    """Parameters, gradients and buffers in float64, for finite-difference checks."""
    for _, m in model.named_modules():
        for k in m.params:
            m.params[k] = m.params[k].astype(np.float64)
            m.grads[k] = np.zeros_like(m.params[k])
        for k in m.buffers:
            m.buffers[k] = m.buffers[k].astype(np.float64)
    return model


def check_grads(model, x, seed=0, tol=1e-6):
    """Input and parameter gradients of sum(r * model(x)) against central differences."""
    r = projection(model.forward(x).shape, seed)

    def loss_at(v):
        return float((model.forward(v) * r).sum())

    model.zero_grad()
    model.forward(x)
    dx = model.backward(x, r)
    np.testing.assert_allclose(dx, numeric_grad(loss_at, x, eps=1e-5), rtol=tol, atol=tol)
    for name, p in model.named_parameters():
        grad = dict(model.named_gradients())[name].copy()

        def loss_of_param(v, p=p):
            keep = p.copy()
            p[...] = v
            try:
                return loss_at(x)
            finally:
                p[...] = keep

        np.testing.assert_allclose(grad, numeric_grad(loss_of_param, p.copy(), eps=1e-5), rtol=tol, atol=tol,
                                   err_msg=name)


def test_custom_chain_matches_finite_differences():
    model = Sequential(_Scale(3), _Scale(3), _Scale(3))
    x = np.random.default_rng(0).standard_normal((4, 3))
    check_grads(model, x)


def test_layers_chain_matches_finite_differences():
    model = to_float64(Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)))
    x = np.random.default_rng(1).standard_normal((3, 5))
    check_grads(model, x)


def test_backward_feeds_each_child_its_forward_input():
    seen = []

    class Spy(_Scale):
        def backward(self, x, grad_y):
            seen.append(x.copy())
            return super().backward(x, grad_y)

    a, b = Spy(2), Spy(2)
    model = Sequential(a, b)
    x = np.array([[0.3, -0.7]])
    y1 = a.forward(x)
    model.forward(x)
    model.backward(x, np.ones((1, 2)))
    np.testing.assert_allclose(seen[0], y1)  # b runs first and gets a's output
    np.testing.assert_allclose(seen[1], x)


def test_matches_torch_with_copied_weights():
    rng = np.random.default_rng(2)
    ours = Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 3))
    ref = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4), torch.nn.Tanh(),
                              torch.nn.Linear(4, 3))
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = rng.standard_normal((5, 6)).astype(np.float32)
    g = rng.standard_normal((5, 3)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = ref(xt)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ours.forward(x), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.backward(x, g), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    grads = dict(ours.named_gradients())
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_children_named_by_position_or_name():
    model = Sequential([nn.Linear(2, 3), nn.ReLU(name="act"), nn.Linear(3, 1, name="head")])
    assert [k for k, _ in model.children()] == ["0", "act", "head"]
    assert [k for k, _ in model.named_parameters()] == ["0.weight", "0.bias", "head.weight", "head.bias"]
    assert model[2] is dict(model.children())["head"] and len(model) == 3
    assert model[1].path.endswith("Sequential.act")


def test_duplicate_names_and_reused_instances_are_refused():
    with pytest.raises(ValueError, match="two children named 'x'"):
        Sequential(nn.ReLU(name="x"), nn.Tanh(name="x"))
    relu = nn.ReLU()
    with pytest.raises(ValueError, match="only once"):
        Sequential(relu, relu)


def test_backward_before_forward_is_an_error():
    with pytest.raises(ValueError, match="before forward"):
        Sequential(_Scale(2)).backward(np.ones((1, 2)), np.ones((1, 2)))


def test_config_round_trip_rebuilds_the_same_network():
    model = Sequential(nn.Linear(4, 3, name="fc"), nn.LeakyReLU(0.2), Sequential(nn.Linear(3, 2), nn.Sigmoid()),
                       name="net")
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = nn.from_config(config)
    assert rebuilt.get_config() == model.get_config()
    assert isinstance(rebuilt[2], Sequential) and rebuilt.name == "net"
    rebuilt.load_state_dict(model.state_dict())
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.forward(x), model.forward(x))


def test_flat_vector_covers_nested_children():
    model = Sequential(nn.Linear(3, 2), Sequential(nn.Linear(2, 2)))
    weights, grads = model.parameters_flat()
    assert weights.size == model.num_parameters() == 3 * 2 + 2 + 2 * 2 + 2
    x = np.ones((1, 3), np.float32)
    model.forward(x)
    model.backward(x, np.ones((1, 2), np.float32))
    assert np.count_nonzero(grads) > 0
    np.testing.assert_array_equal(grads[-2:], dict(model.named_gradients())["1.0.bias"])
