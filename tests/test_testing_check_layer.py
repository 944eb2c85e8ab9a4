"""bigdl_py.testing.check_layer itself: a correct layer passes, and each flaw a layer can have fails
the check meant for it with an AssertionError naming the layer, the check and the worst element.

The registered layers' own cases are in test_nn_layers.py.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from bigdl_py import nn
from bigdl_py.nn import Module, register
from bigdl_py.testing import check_layer, index_input, numeric_grad, off_zero_input
from tests.test_readme import readme_layer_class

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@register
class FlawedScale(Module):
    """y = x * w, one weight per feature (README's Scale), with one deliberate flaw chosen by `flaw`."""

    def __init__(self, features, flaw=None, name=None):
        super().__init__(name)
        self.flaw = flaw
        # "unsaved_setting": the flaw changes forward but is left out of the config, so a loaded copy lacks it.
        self.config = dict(features=features, flaw=None if flaw == "unsaved_setting" else flaw)
        dtype = np.float64 if flaw == "float64_weights" else np.float32
        self.params["w"] = np.linspace(0.5, 1.5, features).astype(dtype)
        self.grads["w"] = np.zeros(features, dtype)
        self.kept_w = self.params["w"]  # "kept_weights": reads this array, which parameters_flat() leaves behind

    def forward(self, x):
        self.check_input(x, (None, self.config["features"]))
        if x.dtype.kind == "i" and self.flaw == "rejects_integers_unnamed":
            raise ValueError("expected floats")
        if x.dtype.kind == "i" and self.flaw == "rejects_integers_named":
            raise ValueError(f"layer '{self.path}' (FlawedScale): expected a float input, received {x.dtype}")
        y = x * (self.kept_w if self.flaw == "kept_weights" else self.params["w"])
        if self.flaw == "always_float32":
            y = y.astype(np.float32)
        if self.flaw == "batch_mean":
            y = y - y.mean(axis=0)
        if self.flaw == "unsaved_setting":
            y = y + 1.0
        return y

    def infer(self, x):
        y = self.forward(x)
        return y * 2 if self.flaw == "infer_differs" else y

    def backward(self, x, grad_y):
        grad_w = (x * grad_y).sum(axis=0) * (1.1 if self.flaw == "wrong_param_grad" else 1.0)
        if self.flaw == "overwrites_grads":
            self.grads["w"][...] = grad_w
        elif self.flaw == "rebinds_grads":  # a new array: the flat gradient vector never sees it
            self.grads["w"] = self.grads["w"] + grad_w
        else:
            self.grads["w"] += grad_w
        grad_x = grad_y * self.params["w"]
        if self.flaw == "wrong_input_grad":
            grad_x[1, 2] += 0.5
        return grad_x


def test_a_correct_user_layer_passes():
    check_layer(FlawedScale(4), (3, 4), expected_output_shape=(3, 4))


def test_the_readme_layer_passes():
    scale = readme_layer_class()(4)
    scale.params["w"][:] = [0.5, -1.0, 2.0, 3.0]
    check_layer(scale, (3, 4), expected_output_shape=(3, 4))


@pytest.mark.parametrize("flaw, message", [
    ("wrong_input_grad", r"backward: input gradient\[1, 2\] = .*expected .*worst of 1 elements"),
    ("wrong_param_grad", r"backward: gradient of w\[\d\] = .*worst of 4 elements"),
    ("overwrites_grads", r"backward accumulates: gradient of w after two backward calls\[\d\]"),
    ("float64_weights", r"forward: float32 input gave a float64 output 0, expected float32"),
    ("infer_differs", r"infer: output\[\d, \d\] = "),
    ("batch_mean", r"batch of 1: output\[0, \d\] = "),
    ("unsaved_setting", r"save/load: output\[\d, \d\] = .*worst of 12 elements"),
    ("kept_weights", r"backward: gradient of w\[\d\] = .*expected 0\.0 .*; the output does not change "
                     r"with w: does the layer read a copy of it kept aside\?"),
    ("always_float32", r"backward: with float64 inputs and weights, output 0 is float32"),
    ("rebinds_grads", r"flat parameters: flat gradient vector\[\d\] = 0\.0, expected "),
    ("rejects_integers_unnamed", r"integer input: raised a ValueError that does not name the layer: expected floats"),
])
def test_each_flaw_fails_its_check_naming_the_layer(flaw, message):
    layer = FlawedScale(4, flaw=flaw, name="scaler")
    with pytest.raises(AssertionError, match=r"^check_layer\(FlawedScale 'scaler'\): " + message):
        check_layer(layer, (3, 4))


def test_integer_input_refused_with_a_value_error_naming_the_layer_passes():
    check_layer(FlawedScale(4, flaw="rejects_integers_named"), (3, 4))


def test_a_layer_that_cannot_be_saved_fails_the_save_load_check():
    class Unregistered(nn.Identity):
        pass
    with pytest.raises(AssertionError, match=r"Unregistered 'Unregistered'\): save/load: ValueError: .*registers "
                                             r"no layer class 'Unregistered'; decorate the class with @register"):
        check_layer(Unregistered(), (2, 3))


@register
class PermutedScale(FlawedScale):
    """FlawedScale followed by a feature permutation held in an integer buffer (used as an index)."""

    def __init__(self, features, flaw=None, name=None):
        super().__init__(features, flaw, name)
        self.buffers["order"] = np.arange(features)[::-1].copy()

    def forward(self, x):
        return super().forward(x)[:, self.buffers["order"]]

    def backward(self, x, grad_y):
        grad = np.empty_like(grad_y)
        grad[:, self.buffers["order"]] = grad_y
        return super().backward(x, grad)


def test_integer_buffers_keep_their_type_in_the_float64_copy():
    layer = PermutedScale(3)
    check_layer(layer, (2, 3))
    assert layer.buffers["order"].dtype == np.int64


def test_a_wrong_expected_output_shape_fails_the_forward_check():
    with pytest.raises(AssertionError, match=r"check_layer\(Linear 'Linear'\): forward: output shape \(2, 3\), "
                                             r"expected \(2, 4\)"):
        check_layer(nn.Linear(5, 3), (2, 5), expected_output_shape=(2, 4))


def test_layer_state_gradients_and_modes_are_restored():
    bn = nn.BatchNorm(3, momentum=0.5)
    bn.grads["weight"][:] = [1.0, 2.0, 3.0]
    drop = nn.Dropout(0.5).eval()
    model = nn.Sequential(bn, drop)
    before = model.state_dict()
    check_layer(model, (4, 3))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    np.testing.assert_array_equal(bn.grads["weight"], [1.0, 2.0, 3.0])
    assert bn.training and not drop.training


def test_a_failed_check_still_restores_the_layer():
    layer = FlawedScale(4, flaw="batch_mean")
    layer.grads["w"][:] = 7.0
    with pytest.raises(AssertionError):
        check_layer(layer, (3, 4))
    np.testing.assert_array_equal(layer.grads["w"], 7.0)
    assert layer.training


def test_given_inputs_several_inputs_and_several_outputs():
    x = nn.Input((3,))
    model = nn.Model(x, [nn.Linear(3, 2)(x), nn.Tanh()(x)])
    check_layer(model, (4, 3), expected_output_shape=[(4, 2), (4, 3)])
    pair = [np.ones((2, 3), np.float32), np.arange(6, dtype=np.float32).reshape(2, 3)]
    check_layer(nn.Concat(), inputs=pair, expected_output_shape=(2, 6))
    check_layer(nn.Embedding(5, 2), inputs=np.array([[0, 4], [3, 3]]), expected_output_shape=(2, 2, 2))


def test_input_makers_shape_the_input():
    seen = []

    def maker(shape, rng):
        seen.append(shape)
        return off_zero_input(shape, rng)
    check_layer(nn.ReLU(), (2, 3), input_maker=maker)
    assert seen == [(2, 3)]
    assert index_input(3)((50,), np.random.default_rng(0)).max() == 2
    with pytest.raises(ValueError, match="index_input: expected high to be an int >= 1, received 0"):
        index_input(0)


@pytest.mark.parametrize("args, kwargs, message", [
    (("relu", (2, 3)), {}, "expected a bigdl_py.nn.Module as layer, received str"),
    ((nn.ReLU(),), {}, "exactly one of input_shape and inputs"),
    ((nn.ReLU(), (2, 3)), {"inputs": np.zeros((2, 3))}, "exactly one of input_shape and inputs"),
    ((nn.ReLU(), (2, 0)), {}, r"ReLU 'ReLU'\): expected input_shape to be a tuple of positive ints"),
    ((nn.ReLU(),), {"inputs": [[1.0]]}, "expected inputs to be a numpy array or a list of them"),
    ((nn.ReLU(),), {"inputs": np.array(["a"])}, "expected float or integer inputs"),
    ((nn.ReLU(), (2, 3)), {"input_maker": "normal"}, "expected input_maker to be callable"),
])
def test_bad_arguments_are_named(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_layer(*args, **kwargs)


def test_numeric_grad_matches_an_analytic_gradient():
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    np.testing.assert_allclose(numeric_grad(lambda v: float(np.sum(np.sin(v) * v)), x, eps=1e-5),
                               np.cos(x) * x + np.sin(x), rtol=1e-6)


def test_the_module_imports_without_pytest():
    code = "import sys; sys.modules['pytest'] = None; import bigdl_py.testing as t; print(t.check_layer.__name__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "check_layer"
