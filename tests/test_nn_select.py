"""Narrow: forward equals numpy slicing and torch.narrow, backward equals finite differences
and torch's autograd, config round trip, and errors naming the layer."""
import json

import numpy as np
import pytest
import torch

from bigdl_py import nn
from bigdl_py.nn.module import from_config
from bigdl_py.testing import numeric_grad, projection

CASES = [((4, 7), 1, 2, 3), ((3, 5, 6), -1, 0, 6), ((2, 4, 3, 5), 2, 1, 2), ((3, 6), -1, 5, 1)]


@pytest.mark.parametrize("shape, axis, start, length", CASES)
def test_forward_matches_numpy_and_torch(shape, axis, start, length):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = nn.Narrow(axis, start, length).forward(x)
    expected = np.take(x, np.arange(start, start + length), axis=axis)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(y, torch.from_numpy(x).narrow(axis, start, length).numpy())
    assert y.flags.c_contiguous


@pytest.mark.parametrize("shape, axis, start, length", CASES)
def test_backward_matches_finite_differences_and_torch(shape, axis, start, length):
    layer = nn.Narrow(axis, start, length)
    x = np.random.default_rng(1).standard_normal(shape)
    r = projection(layer.forward(x).shape)
    grad = layer.backward(x, r)
    np.testing.assert_allclose(grad, numeric_grad(lambda v: float((layer.forward(v) * r).sum()), x), atol=1e-8)
    xt = torch.from_numpy(x).requires_grad_()
    (xt.narrow(axis, start, length) * torch.from_numpy(r)).sum().backward()
    np.testing.assert_array_equal(grad, xt.grad.numpy())


def test_whole_number_indices_survive_for_an_embedding():
    x = np.array([[2.0, 0.5, 1.0], [0.0, -1.5, 3.0]], np.float32)
    idx = nn.Narrow(1, 0, 1).forward(x)
    table = nn.Embedding(4, 2)
    np.testing.assert_array_equal(table.forward(idx)[:, 0], table.params["weight"][[2, 0]])


def test_graph_splits_one_vector_into_embedding_and_dense_paths():
    """Embedding rows and the dense path both see the right columns; the input gets
    a gradient only through the dense columns (indices take none)."""
    x_in = nn.Input((4,))
    emb = nn.Flatten()(nn.Embedding(3, 2, name="emb")(nn.Narrow(1, 0, 1)(x_in)))
    dense = nn.Narrow(1, 1, 3)(x_in)
    model = nn.Model(x_in, nn.Linear(5, 1, name="out")(nn.Concat()([emb, dense])))
    x = np.array([[2, 0.1, 0.2, 0.3], [1, -1, 0, 1]], np.float64)
    y = model.forward(x)
    table = model._children["emb"].params["weight"]
    lin = model._children["out"]
    feats = np.concatenate([table[[2, 1]], x[:, 1:]], axis=1)
    np.testing.assert_allclose(y, feats @ lin.params["weight"].T + lin.params["bias"], rtol=1e-6)
    grad = model.backward(x, np.ones((2, 1)))
    np.testing.assert_allclose(grad[:, 1:], np.tile(lin.params["weight"][:, 2:], (2, 1)), rtol=1e-6)
    assert np.all(grad[:, 0] == 0)


def test_config_round_trip_and_no_input_grad_when_not_needed():
    layer = nn.Narrow(-1, 1, 2, name="cut")
    clone = from_config(json.loads(json.dumps(layer.get_config())))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))
    assert clone.name == "cut"
    layer.set_input_grad_needed(False)
    assert layer.backward(x, np.ones((3, 2), np.float32)) is None


@pytest.mark.parametrize("args, message", [((0, 0, 1), "batch axis"), ((1, -1, 1), "start"),
                                           ((1, 0, 0), "length"), ((1.5, 0, 1), "axis")])
def test_bad_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        nn.Narrow(*args)


def test_slice_past_the_end_names_layer_and_shapes():
    layer = nn.Narrow(1, 3, 2, name="nums")
    with pytest.raises(ValueError, match=r"layer 'nums' \(Narrow\).*\[3:5\].*\(4, 4\)"):
        layer.forward(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="grad_y"):
        nn.Narrow(1, 0, 2).backward(np.zeros((4, 4)), np.zeros((4, 3)))
