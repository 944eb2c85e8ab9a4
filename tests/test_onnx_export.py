"""save_onnx: onnxruntime (CPU) runs the exported file and must give what `infer` gives in eval mode."""
import os

import numpy as np
import onnx
import onnxruntime
import pytest

from bigdl_py import nn
from bigdl_py.nn import save_onnx, zoo
from bigdl_py.nn.module import Module

TOLERANCE = 1e-4
BATCH_SIZES = (1, 3)


def with_random_batchnorm(model, seed=0):
    """Give every BatchNorm non-trivial statistics, scale and shift, so the export of each is exercised."""
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, nn.BatchNorm):
            c = m.config["num_features"]
            m.params["weight"][...] = rng.uniform(0.5, 1.5, c)
            m.params["bias"][...] = rng.normal(0, 0.2, c)
            m.buffers["running_mean"][...] = rng.normal(0, 0.2, c)
            m.buffers["running_var"][...] = rng.uniform(0.5, 1.5, c)
    return model


def lite0(fused):
    model = with_random_batchnorm(zoo.efficientnet_lite0(num_classes=10, seed=1))
    return nn.fuse_for_inference(model) if fused else model


def images(shape):
    return lambda rng, n: rng.standard_normal((n, *shape)).astype(np.float32)


def tokens(vocab, length):
    return lambda rng, n: rng.integers(0, vocab, (n, length)).astype(np.float32)


def branchy_graph():
    """Two convolution branches joined by Concat, a residual Add, both poolings, a softmax head."""
    x = nn.Input((12, 12, 3), name="image")
    a = nn.Conv2d(3, 4, 3, padding=1, activation="relu", name="a")(x)
    b = nn.Conv2d(3, 2, 1, dilation=1, name="b")(x)
    joined = nn.Concat(name="join")([a, b])
    y = nn.BatchNorm(6, activation="relu", name="bn")(joined)
    shortcut = nn.Conv2d(3, 6, 1, bias=False, name="projection")(x)
    y = nn.Add(activation="relu", name="residual")([y, shortcut])
    y = nn.Add(name="three_way")([y, nn.Tanh()(y), nn.LRN(size=3)(y)])
    y = nn.MaxPool2d(3, stride=2, padding=1, name="max")(y)
    y = nn.AvgPool2d(2, count_include_pad=False, name="avg")(nn.ZeroPad2d((0, 1, 1, 0))(y))
    y = nn.Flatten()(y)
    y = nn.Linear(6 * 3 * 3, 5)(y)
    return with_random_batchnorm(nn.Model(x, nn.SoftMax()(y), name="branchy"))


def two_input_graph():
    """Sequences (Embedding, GRU) and a feature vector (Narrow, Reshape) in; a 4-D map and log-probabilities out."""
    ids = nn.Input((5,), name="ids")
    features = nn.Input((20,), name="features")
    seq = nn.GRU(4, 6, return_sequences=True)(nn.Embedding(9, 4)(ids))
    seq = nn.Linear(6, 3)(nn.ELU(alpha=0.5)(seq))  # Linear on (N, T, F)
    seq = nn.Flatten()(seq)
    grid = nn.Reshape((2, 2, 4))(nn.Narrow(1, 2, 16)(features))
    fmap = nn.Conv2d(4, 3, 2, padding=1, groups=1, activation="relu6")(grid)
    pooled = nn.GlobalAvgPool2d()(fmap)
    head = nn.Concat(axis=1)([seq, nn.LeakyReLU(0.2)(pooled), nn.Sigmoid()(nn.Identity()(features))])
    logp = nn.LogSoftMax()(nn.Dropout(0.3)(nn.Linear(15 + 3 + 20, 4)(head)))
    return nn.Model([ids, features], [fmap, logp], name="two_inputs")


# name: (builder, per-sample input shape, input maker)
MODELS = {
    "lenet5": (lambda: zoo.lenet5(seed=1), (28, 28, 1), images((28, 28, 1))),
    "mlp": (lambda: zoo.mlp(dropout=0.2, activation="elu", seed=1), (64,), images((64,))),
    "resnet20": (lambda: with_random_batchnorm(zoo.resnet20(seed=1)), (32, 32, 3), images((32, 32, 3))),
    "resnet20_fused": (lambda: nn.fuse_for_inference(with_random_batchnorm(zoo.resnet20(seed=1))), (32, 32, 3),
                       images((32, 32, 3))),
    # 64x64 instead of 224x224 keeps the test fast (any size divisible by 32 works).
    "efficientnet_lite0": (lambda: lite0(fused=False), (64, 64, 3), images((64, 64, 3))),
    "efficientnet_lite0_fused": (lambda: lite0(fused=True), (64, 64, 3), images((64, 64, 3))),
    "lstm_classifier": (lambda: zoo.lstm_classifier(30, 5, 7, 3, seed=1), (None,), tokens(30, 6)),
    "branchy_graph": (branchy_graph, (12, 12, 3), images((12, 12, 3))),
}


def run_onnx(path, *inputs):
    """onnxruntime's outputs for the arrays given in the order of the graph's inputs."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_gives_our_outputs_at_two_batch_sizes(name, tmp_path):
    build, shape, make_input = MODELS[name]
    model = build().eval()
    path = tmp_path / f"{name}.onnx"
    save_onnx(model, str(path), shape)
    rng = np.random.default_rng(7)
    for n in BATCH_SIZES:
        x = make_input(rng, n)
        ours = model.infer(x)
        (theirs,) = run_onnx(path, x)
        assert theirs.shape == ours.shape
        assert np.abs(theirs - ours).max() <= TOLERANCE, f"{name}, batch {n}"
        assert np.abs(ours).max() > 10 * TOLERANCE  # the outputs are not all ~0


def test_lstm_returning_sequences_runs_any_sequence_length(tmp_path):
    model = nn.Sequential(nn.LSTM(3, 5, return_sequences=True), nn.Tanh())
    save_onnx(model, str(tmp_path / "lstm.onnx"), (None, 3))
    rng = np.random.default_rng(0)
    for n, t in ((2, 4), (3, 9)):
        x = rng.standard_normal((n, t, 3)).astype(np.float32)
        (theirs,) = run_onnx(tmp_path / "lstm.onnx", x)
        np.testing.assert_allclose(theirs, model.infer(x), atol=TOLERANCE, rtol=0)


def test_graph_with_two_inputs_and_two_outputs(tmp_path):
    model = two_input_graph().eval()
    path = tmp_path / "two.onnx"
    save_onnx(model, str(path))  # a graph Model's Input shapes stand in for input_shape
    rng = np.random.default_rng(1)
    for n in BATCH_SIZES:
        ids = rng.integers(0, 9, (n, 5)).astype(np.float32)
        features = rng.standard_normal((n, 20)).astype(np.float32)
        ours = model.infer([ids, features])
        theirs = run_onnx(path, ids, features)
        assert [t.shape for t in theirs] == [o.shape for o in ours]
        assert ours[0].ndim == 4  # a feature map leaves the graph channels-last, as ours
        for t, o in zip(theirs, ours):
            np.testing.assert_allclose(t, o, atol=TOLERANCE, rtol=0)


def test_file_passes_the_checker_with_a_dynamic_batch_axis(tmp_path):
    path = tmp_path / "lenet.onnx"
    save_onnx(zoo.lenet5(seed=0), str(path), (28, 28, 1))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    (graph_input,) = proto.graph.input
    (graph_output,) = proto.graph.output
    in_dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert in_dims == ["N", 28, 28, 1] and out_dims == ["N", 10]
    assert [o.version for o in proto.opset_import] == [17]
    assert not any(n.startswith(".") for n in os.listdir(tmp_path))  # no temp file left beside it


class Cube(Module):
    """A user-defined layer: no ONNX export."""

    def forward(self, x):
        return x ** 3


def test_unsupported_layer_is_named_and_nothing_is_written(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    model = nn.Sequential(nn.Linear(4, 4), Cube(name="cube"), nn.ReLU())
    with pytest.raises(ValueError, match=r"'Sequential.cube' \(Cube\)"):
        save_onnx(model, str(path), (4,))
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_even_lrn_window_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match=r"'lrn' \(LRN\): expected an odd size"):
        save_onnx(nn.LRN(size=4, name="lrn"), str(tmp_path / "x.onnx"), (3, 3, 8))
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("shape, message", [
    (None, "input_shape is required"),
    ((28, 0, 1), "expected input_shape"),
    ([(28, 28, 1), (3,)], "has 1 input"),
    ((28, 28, 3), r"does not take input shapes \[\(28, 28, 3\)\]: layer 'Sequential.0' \(Conv2d\)"),
])
def test_bad_input_shape_is_refused(shape, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        save_onnx(zoo.lenet5(seed=0), str(tmp_path / "x.onnx"), shape)
    assert not (tmp_path / "x.onnx").exists()


def test_an_int_input_shape_is_one_axis(tmp_path):
    model = zoo.mlp(sizes=(6, 4, 2), seed=0)
    save_onnx(model, str(tmp_path / "mlp.onnx"), 6)
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "mlp.onnx", x)[0], model.infer(x), atol=TOLERANCE, rtol=0)


def test_a_model_in_training_mode_exports_eval_mode_and_stays_as_it_was(tmp_path):
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm(4), nn.Dropout(0.5), nn.Linear(4, 2))
    before = model.state_dict()
    save_onnx(model, str(tmp_path / "m.onnx"), (5,))
    assert all(m.training for _, m in model.named_modules())
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in before.items())  # running stats untouched
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    (theirs,) = run_onnx(tmp_path / "m.onnx", x)
    np.testing.assert_allclose(theirs, model.eval().infer(x), atol=TOLERANCE, rtol=0)


def test_relu6_bounds_are_scalars_as_the_clip_operator_requires(tmp_path):
    save_onnx(nn.Sequential(nn.Conv2d(2, 3, 1, activation="relu6"), nn.ReLU6()), str(tmp_path / "m.onnx"), (4, 4, 2))
    proto = onnx.load(str(tmp_path / "m.onnx"))
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    bounds = [constants[name] for n in proto.graph.node if n.op_type == "Clip" for name in n.input[1:]]
    assert len(bounds) == 4 and all(b.shape == () for b in bounds)
