"""Module.freeze / unfreeze: which parameters, saved with the model, and the gradient work skipped."""
import numpy as np
import pytest
import torch

from bigdl_py.kernels import conv as kconv
from bigdl_py.kernels import linear as klinear
from bigdl_py.nn import Add, Conv2d, CrossEntropyLoss, Flatten, Input, Linear, Model, ReLU, Sequential, zoo
from bigdl_py.nn.io import load_model, save_model
from bigdl_py.nn.module import from_config


def frozen_names(model):
    return sorted(name for name, m in model.named_modules() if m.frozen)


def residual_graph():
    """x -> conv1 -> relu -> conv2 -> (+ relu output) -> head: a graph with named nodes."""
    x = Input((6,))
    a = ReLU(name="relu")(Linear(6, 6, name="conv1")(x))
    b = Linear(6, 6, name="conv2")(a)
    out = Linear(6, 3, name="head")(Add(name="add")([a, b]))
    model = Model(x, out)
    model.parameters_flat()
    return model


def test_freeze_by_name_marks_the_named_subtrees_and_unfreeze_undoes_it():
    model = Sequential(Linear(4, 5), ReLU(), Sequential(Linear(5, 5), Linear(5, 2), name="head"))
    assert model.freeze("0", "head.1") is model
    assert frozen_names(model) == ["0", "head.1"]
    model.unfreeze("head.1").freeze("head")
    assert frozen_names(model) == ["0", "head", "head.0", "head.1"]
    model.unfreeze()
    assert frozen_names(model) == []
    model.freeze()
    assert frozen_names(model) == sorted(name for name, _ in model.named_modules())
    model.unfreeze("head.0")
    assert model.has_trainable_parameters() and not model[0].has_trainable_parameters()


def test_freeze_on_a_layer_object_and_graph_nodes_by_name():
    model = residual_graph()
    model.freeze("conv1", "conv2")
    assert frozen_names(model) == ["conv1", "conv2"]
    model.unfreeze()
    dict(model.named_modules())["head"].freeze()
    assert frozen_names(model) == ["head"]


@pytest.mark.parametrize("bad", ["nope", "head.9", 3, None])
def test_an_unknown_name_is_refused_naming_it_and_changes_nothing(bad):
    model = Sequential(Linear(4, 5), Sequential(Linear(5, 2), name="head"))
    with pytest.raises(ValueError, match=r"freeze: expected names of sub-modules, received .*known: \['0', 'head'"):
        model.freeze("0", bad)
    assert frozen_names(model) == []


def test_frozen_ranges_are_the_frozen_parameters_in_the_flat_vector_merged():
    model = zoo.mlp([4, 5, 6, 3], seed=0)  # Linear 0, ReLU 1, Linear 2, ReLU 3, Linear 4
    model.parameters_flat()
    segments = {name: (lo, hi) for name, lo, hi in model.parameter_segments()}
    model.freeze("0", "2")
    assert model.frozen_ranges() == [[0, segments["2.bias"][1]]]
    model.unfreeze().freeze("2")
    assert model.frozen_ranges() == [[segments["2.weight"][0], segments["2.bias"][1]]]
    assert model.unfreeze().frozen_ranges() == []


def test_config_and_saved_models_keep_what_is_frozen(tmp_path):
    seq = Sequential(Linear(4, 5), ReLU(), Sequential(Linear(5, 5), Linear(5, 2), name="head")).freeze("0", "head.1")
    graph = residual_graph().freeze("conv2")
    for model in (seq, graph):
        assert frozen_names(from_config(model.get_config())) == frozen_names(model)
        save_model(model, str(tmp_path / type(model).__name__))
        loaded = load_model(str(tmp_path / type(model).__name__))
        assert frozen_names(loaded) == frozen_names(model)
        assert loaded.frozen_ranges() == model.frozen_ranges()
    # An unfrozen model's config is unchanged by the feature.
    assert "frozen" not in str(zoo.mlp([4, 3], seed=0).get_config())


def test_a_bad_frozen_value_in_a_config_is_refused_naming_the_layer():
    config = Linear(2, 2).get_config()
    config["frozen"] = "yes"
    with pytest.raises(ValueError, match="Linear: expected 'frozen' to be true or false, received 'yes'"):
        from_config(config)


class CountingBackward:
    """Counts a module's backward calls (to show that skipped work is not done)."""

    def __init__(self, module):
        self.calls = 0
        inner = module.backward

        def backward(x, g):
            self.calls += 1
            return inner(x, g)
        module.backward = backward


def backward_once(model, x, y):
    model.zero_grad()
    out = model.forward(x)
    return model.backward(x, CrossEntropyLoss().backward(out, y))


def test_layers_below_the_lowest_trainable_one_are_not_run_backward():
    model = zoo.mlp([6, 8, 8, 3], seed=0)  # Linear 0, ReLU 1, Linear 2, ReLU 3, Linear 4
    model.parameters_flat()
    model.freeze("0", "2").set_input_grad_needed(False)
    counters = [CountingBackward(m) for m in model]
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    assert backward_once(model, x, np.arange(5) % 3) is None
    assert [c.calls for c in counters] == [0, 0, 0, 0, 1]  # the ReLU under the head too
    assert [m.input_grad_needed for m in model] == [False, False, False, False, False]
    grads = dict(model.named_gradients())
    assert all(not grads[k].any() for k in ("0.weight", "0.bias", "2.weight", "2.bias"))
    assert grads["4.weight"].any()


def test_a_frozen_layer_between_trainable_ones_passes_the_gradient_and_keeps_a_zero_one():
    model = zoo.mlp([6, 8, 8, 3], seed=0)
    model.parameters_flat()
    model.freeze("2").set_input_grad_needed(False)
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    y = np.arange(5) % 3
    backward_once(model, x, y)
    grads = {k: g.copy() for k, g in model.named_gradients()}
    # Oracle: torch with requires_grad=False on the same layer.
    net = torch.nn.Sequential(*[torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 3)])
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.from_numpy(dict(model.named_parameters())[name].copy()))
    for p in net[2].parameters():
        p.requires_grad_(False)
    torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y), reduction="mean").backward()
    for name, p in net.named_parameters():
        if p.requires_grad:
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-5, atol=1e-6)
        else:
            assert p.grad is None and not grads[name].any()


def conv_stack():
    """conv a -> relu -> conv b (fused relu) -> flatten -> linear c -> relu -> linear d, on 5x5x3 images."""
    model = Sequential(Conv2d(3, 4, 3, padding=1, name="a"), ReLU(), Conv2d(4, 4, 3, padding=1, activation="relu",
                                                                           name="b"),
                       Flatten(), Linear(100, 6, name="c"), ReLU(), Linear(6, 3, name="d"))
    model.parameters_flat()
    return model


@pytest.mark.parametrize("frozen", [("b",), ("c",), ("b", "c")])
def test_frozen_conv_and_linear_between_trainable_ones_compute_no_weight_gradient(frozen, monkeypatch):
    x = np.random.default_rng(4).standard_normal((4, 5, 5, 3)).astype(np.float32)
    y = np.arange(4) % 3
    free, model = conv_stack(), conv_stack()
    model.load_state_dict(free.state_dict())
    model.freeze(*frozen)
    dx_free = backward_once(free, x, y)
    need_dw = []  # the flag each kernel call gets, in backward order (d, c, b, a)
    for kernel, name in ((kconv, "conv2d_backward"), (klinear, "linear_backward")):
        original = getattr(kernel, name)
        monkeypatch.setattr(kernel, name, lambda *a, _f=original, **k: need_dw.append(k["need_dw"]) or _f(*a, **k))
    dx = backward_once(model, x, y)
    assert need_dw == [layer not in frozen for layer in "dcba"]
    np.testing.assert_array_equal(dx, dx_free)  # the same input gradient through the frozen layers
    free_grads, grads = dict(free.named_gradients()), dict(model.named_gradients())
    for name, g in grads.items():
        if name.split(".")[0] in frozen:
            assert not g.any() and free_grads[name].any()
        else:
            np.testing.assert_array_equal(g, free_grads[name])


def test_graph_skips_frozen_nodes_below_the_lowest_trainable_one():
    model = residual_graph().freeze("conv1", "conv2")
    model.set_input_grad_needed(False)
    modules = dict(model.named_modules())
    counters = {k: CountingBackward(modules[k]) for k in ("conv1", "relu", "conv2", "add", "head")}
    x = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    assert backward_once(model, x, np.arange(4) % 3) is None
    assert {k: c.calls for k, c in counters.items()} == {"conv1": 0, "relu": 0, "conv2": 0, "add": 0, "head": 1}
    assert not modules["add"].input_grad_needed
    grads = dict(model.named_gradients())
    assert not any(grads[k].any() for k in grads if not k.startswith("head")) and grads["head.weight"].any()


def test_freezing_leaves_the_trainable_gradients_of_a_graph_unchanged():
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    y = np.arange(4) % 3
    free, frozen = residual_graph(), residual_graph()
    frozen.load_state_dict(free.state_dict())
    frozen.freeze("conv2")
    dx_free, dx_frozen = backward_once(free, x, y), backward_once(frozen, x, y)
    np.testing.assert_array_equal(dx_free, dx_frozen)  # the input gradient is still wanted here
    free_grads, frozen_grads = dict(free.named_gradients()), dict(frozen.named_gradients())
    for name in free_grads:
        if name.startswith("conv2"):
            assert not frozen_grads[name].any() and free_grads[name].any()
        else:
            np.testing.assert_array_equal(frozen_grads[name], free_grads[name])
