"""fuse_for_inference: BatchNorms folded into Conv2d/Linear, ReLUs into their producer, outputs unchanged."""
import json

import numpy as np
import pytest
import torch

from bigdl_py import nn
from bigdl_py.nn import fuse_for_inference, zoo
from bigdl_py.nn.io import load_model, save_model
from tests.test_nn_graph import nchw, nhwc, torch_conv_weight
from tests.test_onnx_export import with_random_batchnorm

# Fused and original outputs agree to float32 round-off: the folded weights are rounded to
# float32 once and the sums run in another order (ResNet-20 measured ~3e-7 of the largest output).
TOLERANCE = 1e-5


def assert_same_outputs(fused, model, x):
    want = model.eval().infer(x)
    got = fused.infer(x)
    assert np.abs(want).max() > 0.1  # not all ~0
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max())


def count(model, cls):
    return sum(type(m) is cls for _, m in model.named_modules())


def snapshot(model):
    return json.dumps(model.get_config()), model.state_dict(), [m.training for _, m in model.named_modules()]


def assert_unchanged(model, before):
    config, state, modes = snapshot(model)
    assert config == before[0] and modes == before[2]
    assert state.keys() == before[1].keys() and all(np.array_equal(state[k], before[1][k]) for k in state)


def images(shape, n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def lenet5_bn():
    """LeNet-5 with a BatchNorm after every convolution and hidden Linear (and the ReLU in one of them)."""
    return with_random_batchnorm(nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False), nn.BatchNorm(16), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 120), nn.BatchNorm(120), nn.ReLU(),
        nn.Linear(120, 84), nn.BatchNorm(84, activation="relu"),
        nn.Linear(84, 10)), seed=1)


def test_resnet20_loses_every_batchnorm_and_keeps_its_outputs():
    model = with_random_batchnorm(zoo.resnet20(seed=0))
    before = snapshot(model)
    fused = fuse_for_inference(model)
    assert_unchanged(model, before)
    assert model.training and not fused.training
    assert count(model, nn.BatchNorm) == 21 and count(fused, nn.BatchNorm) == 0
    assert len(list(fused.named_modules())) == len(list(model.named_modules())) - 21
    convs = {k: m for k, m in fused.named_modules() if isinstance(m, nn.Conv2d)}
    # A block's first convolution takes its BatchNorm's ReLU; the second and the shortcut feed the Add.
    assert {k for k, m in convs.items() if m.config["activation"] == "relu"} == {
        k for k in convs if k == "stem_conv" or k.endswith("_1_conv")}
    assert all(m.config["bias"] for m in convs.values())
    assert [k for k, _ in fused.named_parameters() if not k.endswith("_conv.bias")] == [
        k for k, _ in model.named_parameters() if "_bn." not in k]
    assert_same_outputs(fused, model, images((32, 32, 3)))


def test_lenet5_with_batchnorms_fuses_into_five_layers_and_a_relu_per_hidden_linear():
    model = lenet5_bn()
    fused = fuse_for_inference(model)
    assert [type(m).__name__ for m in fused] == ["Conv2d", "MaxPool2d", "Conv2d", "MaxPool2d", "Flatten", "Linear",
                                                 "ReLU", "Linear", "ReLU", "Linear"]
    assert [fused[i].config["activation"] for i in (0, 2)] == ["relu", "relu6"]
    # Kept layers keep their position's name, so parameter names do not change.
    assert [k for k, _ in fused.named_parameters()] == [
        "0.weight", "0.bias", "4.weight", "4.bias", "9.weight", "9.bias", "12.weight", "12.bias", "14.weight",
        "14.bias"]
    assert_same_outputs(fused, model, images((28, 28, 1), n=8))


def branchy():
    """Every pattern and every reason not to fuse, in one graph."""
    x = nn.Input((10, 10, 3), name="image")
    a = nn.ReLU(name="a_relu")(nn.BatchNorm(4, name="a_bn")(nn.Conv2d(3, 4, 3, padding=1, name="a_conv")(x)))
    b_conv = nn.Conv2d(3, 4, 1, name="b_conv")(x)  # also read by the Add: its BatchNorm stays
    b = nn.BatchNorm(4, activation="relu", name="b_bn")(b_conv)
    c_bn = nn.BatchNorm(4, name="c_bn")(nn.Conv2d(4, 4, 3, padding=1, bias=False, name="c_conv")(a))
    c = nn.ReLU(name="c_relu")(c_bn)  # c_bn is also read by the Add: folded, but its ReLU stays a layer
    late = nn.BatchNorm(4, name="late_bn")(nn.Conv2d(4, 4, 1, activation="relu", name="late_conv")(c))
    inner = nn.Sequential(nn.Conv2d(4, 4, 1, name="conv"), nn.BatchNorm(4, name="bn"), name="inner")(late)
    y = nn.ReLU(name="add_relu")(nn.Add(name="add")([a, b, b_conv, c, c_bn, inner]))
    out = nn.Linear(4, 3, name="fc")(nn.GlobalAvgPool2d(name="pool")(y))
    return with_random_batchnorm(nn.Model(x, [out, b_conv], name="branchy"), seed=2)


def test_branchy_graph_fuses_only_where_the_producer_feeds_nothing_else():
    model = branchy()
    before = snapshot(model)
    fused = fuse_for_inference(model)
    assert_unchanged(model, before)
    layers = dict(fused.named_modules())
    assert not {"a_bn", "a_relu", "c_bn", "add_relu", "inner.bn"} & set(layers)
    assert layers["a_conv"].config["activation"] == "relu" and layers["add"].config["activation"] == "relu"
    assert layers["b_conv"].config["activation"] is None and "b_bn" in layers  # a model output as well
    assert layers["c_conv"].config["activation"] is None and "c_relu" in layers
    assert "late_bn" in layers  # after the convolution's own ReLU: no linear fold exists
    assert layers["inner.conv"].config["bias"]
    x = images((10, 10, 3))
    for got, want in zip(fused.infer(x), model.eval().infer(x)):
        np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max())


def test_a_convolution_read_twice_keeps_its_batchnorm():
    x = nn.Input((6, 6, 2))
    conv = nn.Conv2d(2, 3, 3, padding=1)(x)
    model = with_random_batchnorm(nn.Model(x, nn.Add()([nn.BatchNorm(3)(conv), conv])))
    fused = fuse_for_inference(model)
    assert count(fused, nn.BatchNorm) == 1
    assert_same_outputs(fused, model, images((6, 6, 2)))


def test_fused_model_saves_and_loads_with_the_same_outputs(tmp_path):
    fused = fuse_for_inference(lenet5_bn())
    save_model(fused, str(tmp_path / "m"))
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.get_config() == fused.get_config()
    x = images((28, 28, 1))
    np.testing.assert_array_equal(loaded.eval().infer(x), fused.infer(x))


def test_a_model_without_patterns_comes_back_equal():
    model = zoo.mlp(seed=0)
    fused = fuse_for_inference(model)
    assert fused is not model and [type(m) for m in fused] == [type(m) for m in model]
    x = images((64,))
    np.testing.assert_array_equal(fused.infer(x), model.eval().infer(x))


def torch_batchnorm(bn):
    """A torch BatchNorm in eval mode with non-trivial scale, shift and statistics."""
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    return bn.eval()


def bn_state(prefix, bn):
    return {f"{prefix}.{k}": v.detach().numpy() for k, v in bn.state_dict().items() if k != "num_batches_tracked"}


def test_conv_batchnorm_relu_fold_matches_torch_fuse_conv_bn_eval():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(3, 5, 3, padding=1).eval(), torch_batchnorm(torch.nn.BatchNorm2d(5, eps=1e-3))
    ours = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm(5, eps=1e-3), nn.ReLU())
    ours.load_state_dict({"0.weight": torch_conv_weight(conv.weight), "0.bias": conv.bias.detach().numpy(),
                          **bn_state("1", bn)})
    want = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
    fused = fuse_for_inference(ours)
    (layer,) = list(fused)
    assert layer.config["activation"] == "relu"
    np.testing.assert_allclose(layer.params["weight"], torch_conv_weight(want.weight), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.params["bias"], want.bias.detach().numpy(), rtol=1e-6, atol=1e-7)
    x = images((7, 7, 3))
    with torch.no_grad():
        ref = nhwc(torch.relu(bn(conv(nchw(x)))))
    np.testing.assert_allclose(fused.infer(x), ref, rtol=TOLERANCE, atol=TOLERANCE * np.abs(ref).max())


def test_linear_batchnorm_fold_matches_torch_fuse_linear_bn_eval():
    torch.manual_seed(1)
    linear, bn = torch.nn.Linear(6, 4).eval(), torch_batchnorm(torch.nn.BatchNorm1d(4))
    want = torch.nn.utils.fusion.fuse_linear_bn_eval(linear, bn)
    ours = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm(4))
    ours.load_state_dict({"0.weight": linear.weight.detach().numpy(), "0.bias": linear.bias.detach().numpy(),
                          **bn_state("1", bn)})
    (layer,) = list(fuse_for_inference(ours))
    np.testing.assert_allclose(layer.params["weight"], want.weight.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.params["bias"], want.bias.detach().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", ["relu", None])
def test_only_a_matching_activation_slot_takes_the_relu(activation):
    # A Conv2d with its own ReLU cannot take a ReLU6 (nor a BatchNorm, which is not linear after it).
    model = nn.Sequential(nn.Conv2d(2, 3, 1, activation=activation), nn.ReLU6(), nn.BatchNorm(3), nn.ReLU6())
    fused = fuse_for_inference(with_random_batchnorm(model))
    names = [type(m).__name__ for m in fused]
    assert names == (["Conv2d", "ReLU6", "BatchNorm", "ReLU6"] if activation else ["Conv2d", "BatchNorm", "ReLU6"])
    assert_same_outputs(fused, model, images((4, 4, 2)))


def test_an_onnx_import_that_kept_its_batchnorms_fuses_into_convolutions_and_adds():
    import onnx

    from bigdl_py.nn.onnx_import import model_from_onnx
    from tests.test_onnx_import import small_resnet, torch_to_onnx, with_random_statistics

    torch.manual_seed(0)
    x = images((32, 32, 3))
    data = torch_to_onnx(with_random_statistics(small_resnet()), nchw(x[:1]), fold_constants=False)
    model = model_from_onnx(onnx.load_from_string(data))
    assert count(model, nn.BatchNorm) == 6 and count(model, nn.ReLU) == 5
    fused = fuse_for_inference(model)
    assert count(fused, nn.BatchNorm) == 0 and count(fused, nn.ReLU) == 0
    assert [m.config["activation"] for _, m in fused.named_modules() if isinstance(m, nn.Add)] == ["relu"] * 2
    assert_same_outputs(fused, model, x)
