"""Engines switch off the data-input gradient: same parameter gradients, less work."""
import numpy as np
import pytest

from bigdl_py.nn import CrossEntropyLoss, Input, Linear, Model, ReLU, zoo


def param_grads_and_input_grad(model, x, y, needed):
    model.set_input_grad_needed(needed)
    model.zero_grad()
    crit = CrossEntropyLoss()
    out = model.forward(x)
    dx = model.backward(x, crit.backward(out, y))
    return {k: g.copy() for k, g in model.named_gradients()}, dx


@pytest.mark.parametrize("make, shape", [(lambda: zoo.lenet5(seed=0), (5, 28, 28, 1)),
                                         (lambda: zoo.mlp([6, 8, 3], seed=0), (5, 6))], ids=["lenet5", "mlp"])
def test_sequential_skips_input_gradient_and_keeps_parameter_gradients(make, shape):
    model = make()
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    y = np.arange(5) % 3
    with_dx, dx = param_grads_and_input_grad(model, x, y, True)
    without, none = param_grads_and_input_grad(model, x, y, False)
    assert dx.shape == x.shape and none is None
    for k in with_dx:
        np.testing.assert_array_equal(with_dx[k], without[k])
    # Only the layer reading the data skips its input gradient.
    flags = [m.input_grad_needed for _, m in model.named_modules()]
    assert flags[0] is False and flags[1] is False and all(flags[2:])


def test_graph_layers_reading_inputs_skip_their_input_gradient():
    inp = Input((4,))
    first = Linear(4, 5)
    out = Linear(5, 3)(ReLU()(first(inp)))
    model = Model(inp, out)
    x = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    with_dx, dx = param_grads_and_input_grad(model, x, np.array([0, 1, 2]), True)
    without, none = param_grads_and_input_grad(model, x, np.array([0, 1, 2]), False)
    assert dx.shape == (3, 4) and none is None and first.input_grad_needed is False
    for k in with_dx:
        np.testing.assert_array_equal(with_dx[k], without[k])


def test_input_gradients_start_at_the_lowest_trainable_layer():
    model = zoo.mlp([6, 8, 8, 3], seed=0).freeze("0")  # Linear 0, ReLU 1, Linear 2, ReLU 3, Linear 4
    model.set_input_grad_needed(False)
    assert [m.input_grad_needed for m in model] == [False, False, False, True, True]
    model.unfreeze()
    model.set_input_grad_needed(False)
    assert [m.input_grad_needed for m in model] == [False, True, True, True, True]
    model.set_input_grad_needed(True)
    assert all(m.input_grad_needed for m in model)
