"""Export a model to an ONNX file that computes what `model.infer` computes in eval mode.

The graph is built with the `onnx` package's helpers (onnx.helper, numpy_helper) and
checked with `onnx.checker` before the file is written atomically. Inputs and outputs
keep our layouts: images are channels-last (N, H, W, C) at the graph's edges, while
inside the graph 4-D activations run channels-first (NCHW), the layout of ONNX's Conv,
pooling and BatchNormalization; a Transpose is inserted only where a layer needs the
other layout (at the input, before Flatten, Linear or Reshape of an image, at the output).
The batch axis is dynamic ("N"); so is every axis of `input_shape` given as None.

Opset 17 (IR version 8): every operator emitted here has its current definition there
(Clip's bounds and Squeeze's axes are inputs since 13, LSTM and GRU were last changed in
14, BatchNormalization in 15), and it is the newest opset that runtimes from 2022 on
read (onnxruntime >= 1.12); the installed onnxruntime 1.31 runs opsets up to 23. A later
opset would only shut out older runtimes: the later versions of these operators add
element types (bfloat16, float8, 4-bit) or optional inputs and attributes we do not use.
"""
import numpy as np

from bigdl_py.atomic import atomic_write_bytes
from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.graph import Add, Concat, Model
from bigdl_py.nn.layers import (ELU, GRU, LRN, LSTM, AvgPool2d, BatchNorm, Conv2d, Dropout, Embedding, Flatten,
                                GlobalAvgPool2d, Identity, LeakyReLU, Linear, LogSoftMax, MaxPool2d, Narrow, ReLU,
                                ReLU6, Reshape, Sigmoid, SoftMax, Tanh, ZeroPad2d)
from bigdl_py.nn.module import Module
from bigdl_py.nn.onnx_names import unique_name

OPSET = 17
# The IR version released with opset 17 (onnx 1.12); onnx's newest would lock out older runtimes.
IR_VERSION = 8
_TO_NCHW = (0, 3, 1, 2)
_TO_NHWC = (0, 2, 3, 1)


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'bigdl-py[onnx]'") from None
    return onnx


class _Tensor:
    """One value of the graph being built: its ONNX name, rank, and whether a 4-D value is NCHW."""

    def __init__(self, name, rank, nchw=False):
        self.name, self.rank, self.nchw = name, rank, nchw


class _Builder:
    """Collects nodes and initializers; hands out unique value names."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes, self.initializers = [], []
        self._names = set()
        self._transposed = {}  # (value name, to NCHW?) -> the transposed value

    def unique(self, base):
        return unique_name(base, self._names)

    def const(self, base, array):
        name = self.unique(base)
        # np.array keeps a 0-d scalar 0-d (Clip's bounds must be scalars); ascontiguousarray would make it 1-d.
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op, inputs, base, outputs=1, **attrs):
        """Add one node; returns the name of its output (or the list of `outputs` names)."""
        names = [self.unique(base if outputs == 1 else f"{base}_{op}_{i}") for i in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), names, name=self.unique(f"{base}/{op}"),
                                                     **attrs))
        return names[0] if outputs == 1 else names

    def layout(self, t, nchw, base):
        """t as NCHW (nchw=True) or as our channels-last layout; only 4-D values differ."""
        if t.rank != 4 or t.nchw == nchw:
            return t
        key = (t.name, nchw)
        if key not in self._transposed:
            name = self.node("Transpose", [t.name], f"{base}_{'nchw' if nchw else 'nhwc'}",
                             perm=list(_TO_NCHW if nchw else _TO_NHWC))
            self._transposed[key] = _Tensor(name, 4, nchw)
        return self._transposed[key]


def _pair(v):
    return [int(v), int(v)] if isinstance(v, (int, np.integer)) else [int(p) for p in v]


def _activation(b, t, activation, base):
    """A fused activation (None, "relu" or "relu6") as its own node."""
    if activation is None:
        return t
    if activation == "relu":
        return _Tensor(b.node("Relu", [t.name], base), t.rank, t.nchw)
    lo, hi = b.const(f"{base}_min", np.float32(0.0)), b.const(f"{base}_max", np.float32(6.0))
    return _Tensor(b.node("Clip", [t.name, lo, hi], base), t.rank, t.nchw)


def _conv(b, m, x, base):
    c = m.config
    x = b.layout(x, True, base)
    inputs = [x.name, b.const(f"{base}.weight", m.params["weight"].transpose(3, 2, 0, 1))]  # HWIO -> OIHW
    if c["bias"]:
        inputs.append(b.const(f"{base}.bias", m.params["bias"]))
    ph, pw = _pair(c["padding"])
    y = b.node("Conv", inputs, base, kernel_shape=_pair(c["kernel_size"]), strides=_pair(c["stride"]),
               pads=[ph, pw, ph, pw], dilations=_pair(c["dilation"]), group=c["groups"])
    return _activation(b, _Tensor(y, 4, True), c["activation"], f"{base}_act")


def _pool(op, **extra):
    def convert(b, m, x, base):
        c = m.config
        x = b.layout(x, True, base)
        kernel = _pair(c["kernel_size"])
        ph, pw = _pair(c["padding"])
        y = b.node(op, [x.name], base, kernel_shape=kernel, pads=[ph, pw, ph, pw],
                   strides=kernel if c["stride"] is None else _pair(c["stride"]), ceil_mode=int(c["ceil_mode"]),
                   **{k: int(c[v]) for k, v in extra.items()})
        return _Tensor(y, 4, True)
    return convert


def _global_avg_pool(b, m, x, base):
    x = b.layout(x, True, base)
    pooled = b.node("GlobalAveragePool", [x.name], f"{base}_nc11")
    return _Tensor(b.node("Flatten", [pooled], base, axis=1), 2)


def _flatten(b, m, x, base):
    x = b.layout(x, False, base)  # our Flatten orders values h, w, c
    return _Tensor(b.node("Flatten", [x.name], base, axis=1), 2)


def _linear(b, m, x, base):
    x = b.layout(x, False, base)
    w, bias = m.params["weight"], m.params.get("bias")
    if x.rank == 2:
        inputs = [x.name, b.const(f"{base}.weight", w)] + ([b.const(f"{base}.bias", bias)] if bias is not None else [])
        return _Tensor(b.node("Gemm", inputs, base, transB=1), 2)
    y = b.node("MatMul", [x.name, b.const(f"{base}.weight_t", w.T)], f"{base}_matmul" if bias is not None else base)
    if bias is not None:
        y = b.node("Add", [y, b.const(f"{base}.bias", bias)], base)
    return _Tensor(y, x.rank)


def _batchnorm(b, m, x, base):
    x = b.layout(x, True, base)
    p, s = m.params, m.buffers
    inputs = [x.name] + [b.const(f"{base}.{k}", v) for k, v in
                         (("weight", p["weight"]), ("bias", p["bias"]), ("running_mean", s["running_mean"]),
                          ("running_var", s["running_var"]))]
    y = b.node("BatchNormalization", inputs, base, epsilon=m.config["eps"])
    return _activation(b, _Tensor(y, x.rank, x.nchw), m.config["activation"], f"{base}_act")


def _elementwise(op, **attrs):
    def convert(b, m, x, base):
        values = {k: float(m.config[v]) for k, v in attrs.items()}
        return _Tensor(b.node(op, [x.name], base, **values), x.rank, x.nchw)
    return convert


def _relu6(b, m, x, base):
    return _activation(b, x, "relu6", base)


def _softmax(op):
    def convert(b, m, x, base):
        axis = 1 if x.rank == 4 and x.nchw else -1  # our classes axis is the last one
        return _Tensor(b.node(op, [x.name], base, axis=axis), x.rank, x.nchw)
    return convert


def _identity(b, m, x, base):
    return x


def _zero_pad(b, m, x, base):
    left, right, top, bottom = m.config["padding"]
    x = b.layout(x, True, base)
    pads = b.const(f"{base}_pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
    return _Tensor(b.node("Pad", [x.name, pads], base, mode="constant"), 4, True)


def _reshape(b, m, x, base):
    x = b.layout(x, False, base)
    shape = b.const(f"{base}_shape", np.array([0] + m.config["shape"], np.int64))  # 0 keeps the batch size
    return _Tensor(b.node("Reshape", [x.name, shape], base), 1 + len(m.config["shape"]))


def _narrow(b, m, x, base):
    x = b.layout(x, False, base)
    c = m.config
    starts, ends, axes = (b.const(f"{base}_{k}", np.array([v], np.int64)) for k, v in
                          (("starts", c["start"]), ("ends", c["start"] + c["length"]), ("axes", c["axis"])))
    return _Tensor(b.node("Slice", [x.name, starts, ends, axes], base), x.rank)


def _embedding(b, m, x, base):
    # Our Embedding takes integer indices or floats holding whole numbers.
    indices = b.node("Cast", [x.name], f"{base}_indices", to=b.onnx.TensorProto.INT64)
    return _Tensor(b.node("Gather", [b.const(f"{base}.weight", m.params["weight"]), indices], base, axis=0),
                   x.rank + 1)


def _lrn(b, m, x, base):
    c = m.config
    if c["size"] % 2 == 0:
        # ONNX centres an even window one channel later than torch and our kernel do.
        raise ValueError(f"save_onnx: layer '{m.path}' (LRN): expected an odd size (ONNX LRN places an even "
                         f"window differently), received size={c['size']}")
    x = b.layout(x, True, base)
    y = b.node("LRN", [x.name], base, size=c["size"], alpha=c["alpha"], beta=c["beta"], bias=c["k"])
    return _Tensor(y, 4, True)


# torch's gate blocks (rows of w_ih, w_hh, b_ih, b_hh) in ONNX's order.
_LSTM_GATES = (0, 3, 1, 2)  # torch i, f, g, o -> ONNX i, o, f, c
_GRU_GATES = (1, 0, 2)  # torch r, z, n -> ONNX z, r, h


def _recurrent(op, gates, **attrs):
    def convert(b, m, x, base):
        h = m.config["hidden_size"]
        p = m.params

        def onnx_order(a):
            return np.concatenate([a[g * h:(g + 1) * h] for g in gates])[None]

        seq_first = b.node("Transpose", [x.name], f"{base}_tni", perm=[1, 0, 2])  # ONNX's default layout
        weights = [b.const(f"{base}.W", onnx_order(p["w_ih"])), b.const(f"{base}.R", onnx_order(p["w_hh"])),
                   b.const(f"{base}.B", np.concatenate([onnx_order(p["b_ih"]), onnx_order(p["b_hh"])], axis=1))]
        y, y_h = b.node(op, [seq_first] + weights, base, outputs=2, hidden_size=h, **attrs)
        if not m.config["return_sequences"]:
            return _Tensor(b.node("Squeeze", [y_h, b.const(f"{base}_axis0", np.array([0], np.int64))], base), 2)
        y = b.node("Squeeze", [y, b.const(f"{base}_axis1", np.array([1], np.int64))], f"{base}_tnh")
        return _Tensor(b.node("Transpose", [y], base, perm=[1, 0, 2]), 3)
    return convert


def _add(b, m, xs, base):
    nchw = xs[0].nchw
    names = [b.layout(x, nchw, base).name for x in xs]
    y = b.node("Add" if len(names) == 2 else "Sum", names, base)
    return _activation(b, _Tensor(y, xs[0].rank, nchw), m.config["activation"], f"{base}_act")


def _concat(b, m, xs, base):
    nchw, rank = xs[0].nchw, xs[0].rank
    names = [b.layout(x, nchw, base).name for x in xs]
    axis = m.config["axis"] % rank
    if rank == 4 and nchw:
        axis = _TO_NCHW.index(axis)
    return _Tensor(b.node("Concat", names, base, axis=axis), rank, nchw)


# Exact classes: a subclass may compute something else, so it needs its own entry.
_CONVERTERS = {
    Conv2d: _conv, MaxPool2d: _pool("MaxPool"), AvgPool2d: _pool("AveragePool", count_include_pad="count_include_pad"),
    GlobalAvgPool2d: _global_avg_pool, Flatten: _flatten, Linear: _linear, BatchNorm: _batchnorm,
    ReLU: _elementwise("Relu"), ReLU6: _relu6, Tanh: _elementwise("Tanh"), Sigmoid: _elementwise("Sigmoid"),
    ELU: _elementwise("Elu", alpha="alpha"), LeakyReLU: _elementwise("LeakyRelu", alpha="negative_slope"),
    SoftMax: _softmax("Softmax"), LogSoftMax: _softmax("LogSoftmax"), Dropout: _identity, Identity: _identity,
    ZeroPad2d: _zero_pad, Reshape: _reshape, Narrow: _narrow, Embedding: _embedding, LRN: _lrn,
    LSTM: _recurrent("LSTM", _LSTM_GATES), GRU: _recurrent("GRU", _GRU_GATES, linear_before_reset=1),
    Add: _add, Concat: _concat,
}


def unsupported_layers(model):
    """[(path, class name)] of the layers in `model` that save_onnx cannot export."""
    return [(m.path, type(m).__name__) for _, m in model.named_modules()
            if type(m) not in _CONVERTERS and type(m) not in (Sequential, Model)]


def _emit(b, module, x):
    """Add `module` applied to x (a _Tensor, or a list for a multi-input layer) to the graph."""
    if type(module) is Sequential:
        for _, child in module.children():
            x = _emit(b, child, x)
        return x
    if type(module) is Model:
        return _emit_model(b, module, x)
    return _CONVERTERS[type(module)](b, module, x, module.path)


def _emit_model(b, model, x):
    config = model.get_config()["config"]
    xs = [x] if config["single_input"] else list(x)
    values = {spec["name"]: v for spec, v in zip(config["inputs"], xs)}
    children = dict(model.children())
    for spec in config["layers"]:
        args = [values[k] for k in spec["inbound"]]
        values[spec["name"]] = _emit(b, children[spec["name"]], args if spec["multi"] else args[0])
    outs = [values[k] for k in config["outputs"]]
    return outs[0] if config["single_output"] else outs


def _entry_model(model):
    """The graph Model that receives the inputs (model itself, or a Sequential's first), or None."""
    while type(model) is Sequential and len(model):
        model = model[0]
    return model if type(model) is Model else None


def _input_specs(model, input_shape):
    """[(name, per-sample shape)] of the model's inputs."""
    entry = _entry_model(model)
    names = [spec["name"] for spec in entry.get_config()["config"]["inputs"]] if entry else ["input"]
    if input_shape is None:
        if entry is None:
            raise ValueError(f"save_onnx: input_shape is required for a {type(model).__name__} "
                             f"(only a graph Model knows its input shapes)")
        return [(spec["name"], tuple(spec["shape"])) for spec in entry.get_config()["config"]["inputs"]]
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    several = isinstance(input_shape, list) and input_shape and all(isinstance(s, (list, tuple)) for s in input_shape)
    shapes = [tuple(s) for s in input_shape] if several else [input_shape]
    for s in shapes:
        if not isinstance(s, (list, tuple)) or not s or not all(d is None or (isinstance(d, (int, np.integer)) and d > 0) for d in s):
            raise ValueError(f"save_onnx: expected input_shape to be a per-sample shape of positive ints or None "
                             f"(batch axis excluded), or a list of them for several inputs; received {input_shape!r}")
    if len(names) != len(shapes):
        raise ValueError(f"save_onnx: model '{model.path}' has {len(names)} input(s) {names}, "
                         f"received {len(shapes)} input shapes")
    return [(name, tuple(shape)) for name, shape in zip(names, shapes)]


def _check_fits(model, specs):
    """Run one zero sample through `model.infer` in eval mode, so a wrong input_shape fails with our layer's
    error (naming it and the shape it expected); skipped when an axis is dynamic. Modes are restored."""
    if any(d is None for _, shape in specs for d in shape):
        return
    modes = [(m, m.training) for _, m in model.named_modules()]
    xs = [np.zeros((1,) + shape, np.float32) for _, shape in specs]
    try:
        model.eval().infer(xs[0] if len(xs) == 1 else xs)
    except ValueError as e:
        raise ValueError(f"save_onnx: the model does not take input shapes {[s for _, s in specs]}: {e}") from None
    finally:
        for m, training in modes:
            m.training = training


def to_onnx(model, input_shape=None):
    """The ONNX ModelProto of `model` (checked with onnx.checker), as save_onnx writes it.

    Raises:
        ValueError naming every layer (path and class) that has no ONNX export.
    """
    onnx = _onnx()
    if not isinstance(model, Module):
        raise ValueError(f"save_onnx: expected a Module, received {type(model).__name__}")
    missing = unsupported_layers(model)
    if missing:
        listed = ", ".join(f"'{path}' ({cls})" for path, cls in missing)
        raise ValueError(f"save_onnx: no ONNX export for layer(s) {listed}; supported layers: "
                         f"{sorted(c.__name__ for c in _CONVERTERS)} in Sequential and Model containers")
    specs = _input_specs(model, input_shape)
    _check_fits(model, specs)
    b = _Builder(onnx)
    float32 = onnx.TensorProto.FLOAT
    graph_inputs, xs = [], []
    for name, shape in specs:
        b.unique(name)
        dims = ["N"] + [d if d is not None else f"{name}_dim{i + 1}" for i, d in enumerate(shape)]
        graph_inputs.append(onnx.helper.make_tensor_value_info(name, float32, dims))
        xs.append(_Tensor(name, 1 + len(shape)))
    ys = _emit(b, model, xs[0] if len(xs) == 1 else xs)
    ys = ys if isinstance(ys, list) else [ys]
    graph_outputs = []
    for i, y in enumerate(ys):
        y = b.layout(y, False, "output")
        name = b.node("Identity", [y.name], "output" if len(ys) == 1 else f"output_{i}")
        graph_outputs.append(onnx.helper.make_tensor_value_info(name, float32, ["N"] + [None] * (y.rank - 1)))
    graph = onnx.helper.make_graph(b.nodes, model.name or type(model).__name__, graph_inputs, graph_outputs,
                                   initializer=b.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="bigdl_py", ir_version=IR_VERSION)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)  # fills in the output shapes
    except onnx.shape_inference.InferenceError as e:
        raise ValueError(f"save_onnx: the model does not take input shapes {[s for _, s in specs]} "
                         f"(nodes are named after layer paths): {e}") from None
    onnx.checker.check_model(proto, full_check=True)
    return proto


def save_onnx(model, path, input_shape=None):
    """Write `model` as an ONNX file computing `model.infer` in eval mode (Dropout off, BatchNorm's running stats).

    Args:
        model: a Sequential or graph Model (nested freely) of the layers listed in
            `_CONVERTERS`: every zoo model and graph models of those layers.
        path: the .onnx file to write (replaced atomically).
        input_shape: the per-sample shape of the input, batch axis excluded, e.g.
            (28, 28, 1) for channels-last images (None for a dynamic axis such as a
            sequence length); a list of shapes for a model with several inputs. A graph
            Model may leave it out to use its Input shapes.
    Example:
        save_onnx(zoo.lenet5(), "lenet.onnx", (28, 28, 1))
        onnxruntime.InferenceSession("lenet.onnx").run(None, {"input": x})
    Raises:
        ValueError naming each unsupported layer (path and class); nothing is written then.
    """
    proto = to_onnx(model, input_shape)
    atomic_write_bytes(path, proto.SerializeToString())
