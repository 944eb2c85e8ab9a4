"""Import an ONNX file as a trainable graph Model of our layers.

The file is parsed with the `onnx` package (a protobuf message: nothing in it is
executed) and each node becomes one of our layers with the file's weights. Images are
channels-last in our models, so a 4-D input that feeds image operators (Conv,
pooling, BatchNormalization, Pad) becomes an Input of shape (H, W, C); a 4-D output
comes out channels-last too.

Layouts are tracked, not computed: each ONNX value maps to one of our graph nodes
whose array equals the ONNX array transposed by `perm` (or, for a flattened image, with
its columns in another order: `cols`). A Transpose node therefore only changes `perm`,
and the column order of a Flatten of an image is folded into the weights of the Gemm
or MatMul that reads it. Subgraphs that only compute a shape for Reshape
(Shape -> Gather -> Unsqueeze -> Concat, as torch.onnx writes `x.view(x.size(0), -1)`)
are not imported: the Reshape's output shape is read from ONNX shape inference.

Operators: Conv, Gemm, MatMul (+ Add of a bias), Add, Sum, Relu, Clip (ReLU and
ReLU6 bounds), Sigmoid, Tanh, LeakyRelu, Elu, Softmax, LogSoftmax, BatchNormalization,
MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape, Transpose, Concat, Pad,
Dropout, Identity, Constant, LRN, Slice (one axis, as Narrow), Cast + Gather (an
embedding table), LSTM and GRU (forward, zero initial state, read through a Squeeze). Opsets 13 to 20. Anything else fails with the operator, the node and
the opset.
"""
import numpy as np

from bigdl_py.nn.graph import Add, Concat, Input, Model
from bigdl_py.nn.onnx_constants import fold
from bigdl_py.nn.onnx_names import unique_name
from bigdl_py.nn.layers import (ELU, GRU, LRN, LSTM, AvgPool2d, BatchNorm, Conv2d, Dropout, Embedding, Flatten, GlobalAvgPool2d,
                                Identity, LeakyReLU, Linear, LogSoftMax, MaxPool2d, Narrow, ReLU, ReLU6, Reshape,
                                Sigmoid, SoftMax, Tanh, ZeroPad2d)

OPSETS = range(13, 21)
_NHWC = (0, 2, 3, 1)  # our image array is the ONNX (NCHW) array transposed by this
# Operators that take an image (NCHW in ONNX, channels-last in our layers) as their first input.
_IMAGE_OPS = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Pad", "LRN"}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX import needs the onnx package: pip install 'bigdl-py[onnx]'") from None
    return onnx


class _Value:
    """An ONNX value held by one of our graph nodes: ours = onnx.transpose(perm), or ours = onnx[:, cols]."""

    def __init__(self, node, rank, perm=None, cols=None):
        self.node, self.rank, self.cols = node, rank, cols
        self.perm = tuple(range(rank)) if perm is None else tuple(perm)

    @property
    def plain(self):
        return self.cols is None and self.perm == tuple(range(self.rank))

    def like(self, node):
        """The output of a layer that keeps this value's layout (element-wise layers)."""
        return _Value(node, self.rank, self.perm, self.cols)


class UnsupportedOnnx(ValueError):
    """An operator, attribute or layout that load_onnx cannot map onto our layers."""


class _Importer:
    def __init__(self, onnx, proto, source):
        self.onnx, self.source = onnx, source
        graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        if self.opset not in OPSETS:
            raise UnsupportedOnnx(f"load_onnx: {source}: opset {self.opset} of the default domain; expected one of "
                                  f"{OPSETS.start}..{OPSETS.stop - 1}")
        try:
            inferred = onnx.shape_inference.infer_shapes(proto).graph
        except onnx.shape_inference.InferenceError as e:
            raise ValueError(f"load_onnx: {source}: the graph is not consistent: {e}") from None
        self.shapes = {}
        for info in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
            if not info.type.tensor_type.HasField("shape"):
                continue  # rank unknown
            dims = info.type.tensor_type.shape.dim
            self.shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        self.consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.values = {}  # ONNX name -> _Value
        self.consumers = {}
        self.producer = {name: node for node in graph.node for name in node.output}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.fused = set()  # ids of nodes folded into an earlier layer (a MatMul's bias Add, an LSTM's Squeeze)
        self.layer_names = set()

    # ---- errors, names, inputs ---------------------------------------------------------
    def fail(self, node, why):
        raise UnsupportedOnnx(f"load_onnx: {self.source}: node '{node.name}' ({node.op_type}, opset {self.opset}): "
                              f"{why}")

    def layer_name(self, node, suffix=""):
        base = (node.name or node.op_type).strip("/").replace("/", "_").replace(".", "_") + suffix
        return unique_name(base, self.layer_names)

    def attrs(self, node, allowed):
        """{name: value} of the node's attributes; any attribute not in `allowed` fails."""
        out = {}
        for a in node.attribute:
            if a.name not in allowed:
                self.fail(node, f"attribute '{a.name}' is not supported (supported: {sorted(allowed)})")
            out[a.name] = self.onnx.helper.get_attribute_value(a)
        return out

    def const(self, node, i, what):
        if i >= len(node.input) or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.consts:
            self.fail(node, f"input {i} ({what}, '{name}') must be a constant (an initializer or Constant node)")
        return self.consts[name]

    def value(self, node, i=0):
        name = node.input[i]
        if name in self.consts:
            self.fail(node, f"input {i} ('{name}') is a constant; expected a computed value")
        return self.values[name]

    def shape(self, name):
        return self.shapes.get(name)

    def image(self, node, i=0):
        """Input i as a 4-D image held channels-last."""
        v = self.value(node, i)
        if v.rank != 4 or v.perm != _NHWC or v.cols is not None:
            self.fail(node, f"expected a 4-D NCHW image held channels-last; its layout here is perm {v.perm}"
                            f"{' with permuted columns' if v.cols is not None else ''}")
        return v


def _pair_pads(pads):
    """ONNX 2-D pads [top, left, bottom, right] as (symmetric (h, w), or None and the ZeroPad2d padding)."""
    top, left, bottom, right = pads if pads else (0, 0, 0, 0)
    if top == bottom and left == right:
        return (int(top), int(left)), None
    return (0, 0), (int(left), int(right), int(top), int(bottom))


def _no_auto_pad(imp, node, attrs):
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        imp.fail(node, f"auto_pad={attrs['auto_pad']!r} is not supported (only explicit pads)")


def _conv(imp, node):
    attrs = imp.attrs(node, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"})
    _no_auto_pad(imp, node, attrs)
    x = imp.image(node)
    w = imp.const(node, 1, "weight")
    bias = imp.const(node, 2, "bias")
    if w.ndim != 4:
        imp.fail(node, f"expected a 2-D convolution (4-D weight), received a weight of shape {w.shape}")
    groups = int(attrs.get("group", 1))
    padding, extra = _pair_pads(attrs.get("pads"))
    source = x.node
    if extra is not None:
        source = ZeroPad2d(extra, name=imp.layer_name(node, "_pad"))(source)
    layer = Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(attrs.get("strides", (1, 1))),
                   padding=padding, dilation=tuple(attrs.get("dilations", (1, 1))), groups=groups,
                   bias=bias is not None, name=imp.layer_name(node))
    layer.params["weight"][...] = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if bias is not None:
        layer.params["bias"][...] = bias
    return [_Value(layer(source), 4, _NHWC)]


def _pool(kind):
    def convert(imp, node):
        allowed = {"kernel_shape", "strides", "pads", "ceil_mode", "auto_pad", "dilations", "storage_order"}
        attrs = imp.attrs(node, allowed | ({"count_include_pad"} if kind is AvgPool2d else set()))
        _no_auto_pad(imp, node, attrs)
        if any(d != 1 for d in attrs.get("dilations", (1, 1))) or attrs.get("storage_order", 0):
            imp.fail(node, "dilations other than 1 and storage_order are not supported")
        if len(node.output) > 1 and node.output[1]:
            imp.fail(node, "the Indices output is not supported")
        padding, extra = _pair_pads(attrs.get("pads"))
        if extra is not None:
            imp.fail(node, f"asymmetric pads {list(attrs['pads'])} are not supported for pooling")
        x = imp.image(node)
        extra_args = {"count_include_pad": bool(attrs.get("count_include_pad", 0))} if kind is AvgPool2d else {}
        layer = kind(tuple(attrs["kernel_shape"]), stride=tuple(attrs.get("strides", (1, 1))), padding=padding,
                     ceil_mode=bool(attrs.get("ceil_mode", 0)), name=imp.layer_name(node), **extra_args)
        return [_Value(layer(x.node), 4, _NHWC)]
    return convert


def _global_avg_pool(imp, node):
    imp.attrs(node, set())
    x = imp.image(node)
    channels = (imp.shape(node.input[0]) or (None, None))[1]
    if channels is None:
        imp.fail(node, "the channel count of the input is unknown")
    pooled = GlobalAvgPool2d(name=imp.layer_name(node))(x.node)
    # Ours is (N, C); ONNX keeps (N, C, 1, 1), which channels-last is (N, 1, 1, C).
    return [_Value(Reshape((1, 1, channels), name=imp.layer_name(node, "_nc11"))(pooled), 4, _NHWC)]


def _flat_columns(imp, node, v, onnx_shape):
    """ONNX column index of each of our columns after flattening value v (None when they agree)."""
    if v.perm[0] != 0 or v.cols is not None:
        imp.fail(node, f"cannot flatten a value whose batch axis moved (layout perm {v.perm})")
    if v.plain:
        return None
    if onnx_shape is None or any(d is None for d in onnx_shape[1:]):
        imp.fail(node, "flattening an image needs its static shape (shape inference gave none)")
    index = np.arange(int(np.prod(onnx_shape[1:]))).reshape(onnx_shape[1:])
    cols = index.transpose([p - 1 for p in v.perm[1:]]).reshape(-1)
    return None if np.array_equal(cols, np.arange(cols.size)) else cols


def _flatten_value(imp, node, name_suffix=""):
    v = imp.value(node)
    cols = _flat_columns(imp, node, v, imp.shape(node.input[0]))
    if v.rank == 2:
        return [v]
    out = Flatten(name=imp.layer_name(node, name_suffix))(v.node)
    return [_Value(out, 2, cols=cols)]


def _flatten(imp, node):
    attrs = imp.attrs(node, {"axis"})
    if attrs.get("axis", 1) != 1:
        imp.fail(node, f"axis={attrs['axis']} is not supported (only 1: keep the batch axis)")
    return _flatten_value(imp, node)


def _reshape(imp, node):
    attrs = imp.attrs(node, {"allowzero"})
    if attrs.get("allowzero", 0):
        imp.fail(node, "allowzero=1 is not supported")
    v = imp.value(node)
    target = imp.consts.get(node.input[1])
    out_shape = imp.shape(node.output[0])
    shape_of_target = imp.shape(node.input[1])  # a 1-D tensor: its length is the output rank
    rank = len(target) if target is not None else (len(out_shape) if out_shape is not None else
                                                    shape_of_target[0] if shape_of_target else None)
    if rank == 2 and v.rank > 2:  # x.view(N, -1): a flatten
        return _flatten_value(imp, node)
    if not v.plain:
        imp.fail(node, f"cannot reshape a value held in another layout (perm {v.perm}) into rank {rank}")
    in_shape = imp.shape(node.input[0])
    if target is None:
        if out_shape is None or any(d is None for d in out_shape[1:]):
            imp.fail(node, "the target shape is computed and shape inference could not fix it")
        per_sample = list(out_shape[1:])
    else:
        per_sample = [int(in_shape[i + 1]) if d == 0 and in_shape else int(d) for i, d in enumerate(target[1:])]
        if target[0] not in (0, -1) and (in_shape is None or target[0] != in_shape[0]):
            imp.fail(node, f"the target shape {list(target)} changes the batch axis")
    out = Reshape(per_sample, name=imp.layer_name(node))(v.node)
    return [_Value(out, 1 + len(per_sample))]


def _transpose(imp, node):
    attrs = imp.attrs(node, {"perm"})
    v = imp.value(node)
    if v.cols is not None:
        imp.fail(node, "cannot transpose a flattened image")
    p = list(attrs["perm"]) if "perm" in attrs else list(range(v.rank))[::-1]  # default: reverse the axes
    inverse = np.argsort(p)
    return [_Value(v.node, v.rank, perm=[int(inverse[a]) for a in v.perm])]


def _linear(imp, node, x, weight, bias):
    """A Linear layer (weight (out, in) in ONNX's column order) on value x; folds x's column order in."""
    if x.rank < 2 or x.perm[0] != 0 or (x.cols is None and not x.plain):
        imp.fail(node, f"expected features on the last axis; the input's layout here is perm {x.perm}")
    if x.cols is not None:
        weight = weight[:, x.cols]
    layer = Linear(weight.shape[1], weight.shape[0], bias=bias is not None, name=imp.layer_name(node))
    layer.params["weight"][...] = weight
    if bias is not None:
        layer.params["bias"][...] = np.broadcast_to(bias, (weight.shape[0],))
    return [_Value(layer(x.node), x.rank)]


def _gemm(imp, node):
    attrs = imp.attrs(node, {"alpha", "beta", "transA", "transB"})
    if attrs.get("transA", 0):
        imp.fail(node, "transA=1 is not supported")
    w = imp.const(node, 1, "B")
    w = (w if attrs.get("transB", 0) else w.T) * attrs.get("alpha", 1.0)
    c = imp.const(node, 2, "C")
    if c is not None:
        if c.size not in (1, w.shape[0]):
            imp.fail(node, f"C of shape {c.shape} is not a bias of {w.shape[0]} outputs")
        c = c.reshape(-1) * attrs.get("beta", 1.0)
    return _linear(imp, node, imp.value(node), w, c)


def _bias_add(imp, node):
    """The Add that adds a constant bias to this MatMul's output, if there is exactly that one consumer."""
    readers = imp.consumers.get(node.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "Add" or len(readers[0].input) != 2:
        return None
    add = readers[0]
    other = [n for n in add.input if n != node.output[0]]
    if len(other) != 1 or other[0] not in imp.consts:
        return None
    return add, imp.consts[other[0]]


def _matmul(imp, node):
    imp.attrs(node, set())
    w = imp.const(node, 1, "B")
    if w.ndim != 2:
        imp.fail(node, f"expected a 2-D constant B, received shape {w.shape}")
    fused = _bias_add(imp, node)
    bias = None
    if fused is not None and fused[1].size in (1, w.shape[1]):
        add, bias = fused
        imp.fused.add(id(add))
        out = _linear(imp, node, imp.value(node), w.T, bias.reshape(-1))
        imp.values[add.output[0]] = out[0]
        return out
    return _linear(imp, node, imp.value(node), w.T, None)


def _add(imp, node):
    imp.attrs(node, set())
    if any(name in imp.consts for name in node.input):
        imp.fail(node, "adding a constant is supported only as the bias of a MatMul")
    xs = [imp.value(node, i) for i in range(len(node.input))]
    if len(xs) == 1:
        return [xs[0]]
    if any(x.perm != xs[0].perm or not np.array_equal(x.cols, xs[0].cols) for x in xs[1:]):
        imp.fail(node, "the inputs are held in different layouts")
    shapes = {imp.shape(n) for n in node.input}
    if len(shapes) != 1 or None in shapes:
        imp.fail(node, f"broadcasting is not supported: input shapes {sorted(map(str, shapes))}")
    return [xs[0].like(Add(name=imp.layer_name(node))([x.node for x in xs]))]


def _elementwise(kind, **params):
    def convert(imp, node):
        attrs = imp.attrs(node, set(params))
        x = imp.value(node)
        kwargs = {ours: attrs.get(theirs, default) for theirs, (ours, default) in params.items()}
        return [x.like(kind(name=imp.layer_name(node), **kwargs)(x.node))]
    return convert


def _clip(imp, node):
    imp.attrs(node, set())
    lo, hi = imp.const(node, 1, "min"), imp.const(node, 2, "max")
    if any(bound is not None and bound.size != 1 for bound in (lo, hi)):
        imp.fail(node, "min and max must be scalars")
    lo = None if lo is None else float(lo.reshape(-1)[0])
    hi = None if hi is None or np.isinf(hi).all() else float(hi.reshape(-1)[0])
    kinds = {(0.0, None): ReLU, (0.0, 6.0): ReLU6}
    if (lo, hi) not in kinds:
        imp.fail(node, f"bounds ({lo}, {hi}) are not supported (only (0, none): ReLU and (0, 6): ReLU6)")
    x = imp.value(node)
    return [x.like(kinds[(lo, hi)](name=imp.layer_name(node))(x.node))]


def _softmax(kind):
    def convert(imp, node):
        attrs = imp.attrs(node, {"axis"})
        x = imp.value(node)
        axis = attrs.get("axis", -1) % x.rank
        if x.perm[-1] != axis or (x.cols is not None and axis != 1):
            imp.fail(node, f"axis={attrs.get('axis', -1)} is not the last axis of our layout (perm {x.perm})")
        return [x.like(kind(name=imp.layer_name(node))(x.node))]
    return convert


def _batchnorm(imp, node):
    attrs = imp.attrs(node, {"epsilon", "momentum", "training_mode"})
    if attrs.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
        imp.fail(node, "training_mode=1 and the running-statistics outputs are not supported")
    scale, bias, mean, var = (imp.const(node, i, what) for i, what in
                              ((1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")))
    x = imp.value(node)
    if not ((x.rank == 4 and x.perm == _NHWC) or (x.rank == 2 and x.plain)):
        imp.fail(node, f"expected an image or a plain (N, C) input, its layout here is perm {x.perm}")
    # ONNX keeps momentum * running + (1 - momentum) * batch; ours weighs the batch statistic.
    layer = BatchNorm(scale.size, eps=attrs.get("epsilon", 1e-5), momentum=1.0 - attrs.get("momentum", 0.9),
                      name=imp.layer_name(node))
    for target, array in ((layer.params["weight"], scale), (layer.params["bias"], bias),
                          (layer.buffers["running_mean"], mean), (layer.buffers["running_var"], var)):
        target[...] = array
    return [x.like(layer(x.node))]


def _identity(imp, node):
    """The output is the input: no layer."""
    imp.attrs(node, set())
    return [imp.value(node)]


def _dropout(imp, node):
    """A Dropout layer (identity in eval mode, active when the imported model is fine-tuned)."""
    imp.attrs(node, {"seed"})
    if len(node.output) > 1 and node.output[1]:
        imp.fail(node, "the mask output is not supported")
    ratio = imp.const(node, 1, "ratio")
    x = imp.value(node)
    layer = Dropout(0.5 if ratio is None else float(ratio), name=imp.layer_name(node))
    return [x.like(layer(x.node))]


def _concat(imp, node):
    attrs = imp.attrs(node, {"axis"})
    xs = [imp.value(node, i) for i in range(len(node.input))]
    if any(x.perm != xs[0].perm or x.cols is not None for x in xs):
        imp.fail(node, "the inputs are held in different layouts")
    axis = xs[0].perm.index(attrs["axis"] % xs[0].rank)
    if axis == 0:
        imp.fail(node, "joining along the batch axis is not supported")
    return [xs[0].like(Concat(axis=axis, name=imp.layer_name(node))([x.node for x in xs]))]


def _pad(imp, node):
    attrs = imp.attrs(node, {"mode"})
    if attrs.get("mode", b"constant") not in (b"constant", "constant"):
        imp.fail(node, f"mode={attrs['mode']!r} is not supported (only constant zero padding)")
    pads = imp.const(node, 1, "pads")
    value = imp.const(node, 2, "constant_value")
    if len(node.input) > 3 and node.input[3]:
        imp.fail(node, "the axes input is not supported")
    if value is not None and float(value) != 0.0:
        imp.fail(node, f"constant_value={float(value)} is not supported (only 0)")
    x = imp.image(node)
    n0, c0, top, left, n1, c1, bottom, right = (int(p) for p in pads)
    if n0 or c0 or n1 or c1:
        imp.fail(node, f"pads {list(pads)} pad the batch or channel axis (only height and width)")
    layer = ZeroPad2d((left, right, top, bottom), name=imp.layer_name(node))
    return [_Value(layer(x.node), 4, _NHWC)]


def _lrn(imp, node):
    attrs = imp.attrs(node, {"size", "alpha", "beta", "bias"})
    if attrs["size"] % 2 == 0:
        imp.fail(node, f"an even size={attrs['size']} places its window differently from ours")
    x = imp.image(node)
    layer = LRN(attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0),
                name=imp.layer_name(node))
    return [_Value(layer(x.node), 4, _NHWC)]


def _slice(imp, node):
    imp.attrs(node, set())
    starts, ends, axes, steps = (imp.const(node, i, w) for i, w in ((1, "starts"), (2, "ends"), (3, "axes"),
                                                                   (4, "steps")))
    x = imp.value(node)
    shape = imp.shape(node.input[0])
    if len(starts) != 1 or (steps is not None and int(steps[0]) != 1) or x.cols is not None:
        imp.fail(node, "only a slice of one axis with step 1 is supported")
    onnx_axis = int(axes[0]) % x.rank if axes is not None else 0
    size = shape[onnx_axis] if shape else None
    start, end = int(starts[0]), int(ends[0])
    if size is None or start < 0 or end < 0:
        imp.fail(node, "the sliced axis needs a static size and non-negative bounds")
    end = min(end, size)
    layer = Narrow(x.perm.index(onnx_axis), start, end - start, name=imp.layer_name(node))
    return [x.like(layer(x.node))]


def _cast(imp, node):
    """A Cast to integers that only feeds embedding lookups: our Embedding takes whole-number floats itself."""
    imp.attrs(node, {"to", "saturate"})
    if not all(n.op_type == "Gather" and n.input[1] == node.output[0] for n in imp.consumers.get(node.output[0], [])):
        imp.fail(node, "a Cast is supported only as the indices of an embedding Gather")
    return [imp.value(node)]


def _gather(imp, node):
    attrs = imp.attrs(node, {"axis"})
    table = imp.const(node, 0, "data")
    if attrs.get("axis", 0) != 0 or table.ndim != 2:
        imp.fail(node, "only row lookups in a 2-D constant table (an embedding) are supported")
    x = imp.value(node, 1)
    if not x.plain:
        imp.fail(node, "the indices are held in another layout")
    layer = Embedding(table.shape[0], table.shape[1], name=imp.layer_name(node))
    layer.params["weight"][...] = table
    return [_Value(layer(x.node), x.rank + 1)]


# For each torch gate (our layers' row blocks), the ONNX row block that holds it.
_TORCH_FROM_ONNX_GATES = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2)}  # LSTM: i f g o <- i o f c; GRU: r z n <- z r h


def _squeeze_reader(imp, name, axis):
    """The one node that reads value `name` and drops its size-1 `axis` (a Squeeze, or a Gather of index 0
    as torch.onnx writes `h_n[0]`), or None."""
    readers = imp.consumers.get(name, [])
    if len(readers) != 1 or len(readers[0].input) != 2 or readers[0].input[0] != name:
        return None
    reader, second = readers[0], imp.consts.get(readers[0].input[1])
    if second is None:
        return None
    if reader.op_type == "Squeeze":
        return reader if [int(a) for a in second.reshape(-1)] == [axis] else None
    if reader.op_type == "Gather":
        gather_axis = next((a.i for a in reader.attribute if a.name == "axis"), 0)
        return reader if gather_axis == axis and second.shape == () and int(second) == 0 else None
    return None


def _is_zeros(imp, name):
    """Whether value `name` is absent or all zeros (a constant, or a ConstantOfShape of 0 as torch.onnx writes)."""
    if not name:
        return True
    if name in imp.consts:
        return not imp.consts[name].any()
    node = imp.producer.get(name)
    if node is None or node.op_type != "ConstantOfShape":
        return False
    value = [imp.onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "value"]
    return not value or not imp.onnx.numpy_helper.to_array(value[0]).any()


def _recurrent(kind):
    def convert(imp, node):
        op = node.op_type
        attrs = imp.attrs(node, {"hidden_size", "direction", "layout", "linear_before_reset"})
        if attrs.get("direction", b"forward") not in (b"forward", "forward") or attrs.get("layout", 0):
            imp.fail(node, "only a forward, seq-first (layout=0) layer is supported")
        if op == "GRU" and attrs.get("linear_before_reset", 0) != 1:
            imp.fail(node, "linear_before_reset=0 is not supported (ours applies the reset gate as torch does)")
        extra = list(node.input[4:]) + [""] * 4
        if extra[0] or extra[3] or not all(_is_zeros(imp, name) for name in extra[1:3]):
            imp.fail(node, "sequence_lens, peepholes and non-zero initial states are not supported (ours start at 0)")
        x = imp.value(node)
        if x.rank != 3 or x.perm != (1, 0, 2) or x.cols is not None:
            imp.fail(node, f"expected the seq-first transpose of a batch-first sequence; its layout here is perm {x.perm}")
        w, r, b = (imp.const(node, i, what) for i, what in ((1, "W"), (2, "R"), (3, "B")))
        h = int(attrs["hidden_size"])
        gates = len(_TORCH_FROM_ONNX_GATES[op])

        def torch_order(a):  # (gates * H, ...) rows in ONNX's order -> torch's
            return a.reshape(gates, h, *a.shape[1:])[list(_TORCH_FROM_ONNX_GATES[op])].reshape(a.shape)

        y, y_h = (list(node.output) + ["", ""])[:2]
        used = [name for name in node.output if name and imp.consumers.get(name)]
        sequence = _squeeze_reader(imp, y, 1) if y else None
        last = _squeeze_reader(imp, y_h, 0) if y_h else None
        if used not in ([y], [y_h]) or (sequence if used == [y] else last) is None:
            imp.fail(node, "expected exactly one of Y (squeezed on axis 1) or Y_h (squeezed on axis 0) to be read, "
                           "by one Squeeze or Gather")
        layer = kind(w.shape[2], h, return_sequences=used == [y], name=imp.layer_name(node))
        layer.params["w_ih"][...] = torch_order(w[0])
        layer.params["w_hh"][...] = torch_order(r[0])
        bias = b[0] if b is not None else np.zeros(2 * gates * h, np.float32)
        layer.params["b_ih"][...] = torch_order(bias[:gates * h])
        layer.params["b_hh"][...] = torch_order(bias[gates * h:])
        out = layer(x.node)
        squeeze = sequence if used == [y] else last
        imp.fused.add(id(squeeze))
        # Y squeezed is (T, N, H) in ONNX and ours is batch-first; Y_h squeezed is (N, H) in both.
        imp.values[squeeze.output[0]] = _Value(out, 3, (1, 0, 2)) if used == [y] else _Value(out, 2)
        return []
    return convert


_CONVERTERS = {
    "Conv": _conv, "MaxPool": _pool(MaxPool2d), "AveragePool": _pool(AvgPool2d), "GlobalAveragePool": _global_avg_pool,
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose, "Gemm": _gemm, "MatMul": _matmul,
    "Add": _add, "Sum": _add, "Relu": _elementwise(ReLU), "Sigmoid": _elementwise(Sigmoid),
    "Tanh": _elementwise(Tanh), "LeakyRelu": _elementwise(LeakyReLU, alpha=("negative_slope", 0.01)),
    "Elu": _elementwise(ELU, alpha=("alpha", 1.0)), "Clip": _clip, "Softmax": _softmax(SoftMax),
    "LogSoftmax": _softmax(LogSoftMax), "BatchNormalization": _batchnorm, "Dropout": _dropout, "Identity": _identity,
    "Concat": _concat, "Pad": _pad, "LRN": _lrn, "Slice": _slice, "Cast": _cast, "Gather": _gather,
    "LSTM": _recurrent(LSTM), "GRU": _recurrent(GRU),
}


def _needed_nodes(graph, consts):
    """The nodes the graph outputs depend on, without those that only compute a Reshape's shape input."""
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack = set(), [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        inputs = node.input
        if node.op_type == "Reshape" and node.input[1] not in consts:
            inputs = node.input[:1]  # the output shape comes from shape inference
        elif node.op_type in ("LSTM", "GRU"):
            inputs = node.input[:4]  # initial states must be zeros: the converter checks them
        stack.extend(inputs)
    return needed


def _constant(onnx, node):
    (attr,) = node.attribute
    value = onnx.helper.get_attribute_value(attr)
    return onnx.numpy_helper.to_array(value) if attr.name == "value" else np.asarray(value)


def model_from_onnx(proto, source="<model>"):
    """A graph Model of our layers computing the ONNX ModelProto `proto` (see load_onnx)."""
    onnx = _onnx()
    imp = _Importer(onnx, proto, source)
    graph = proto.graph
    folded = set()
    for node in graph.node:  # ONNX nodes come in topological order
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Constant":
            imp.consts[node.output[0]] = _constant(onnx, node)
        elif node.input and all(not name or name in imp.consts for name in node.input):
            outputs = fold(onnx, node, [imp.consts[name] if name else None for name in node.input])
            if outputs is not None:
                imp.consts.update(zip(node.output, outputs))
        else:
            continue
        folded.add(id(node))
    readers = {name: [n.op_type for n in nodes] for name, nodes in imp.consumers.items()}
    inputs = []
    for info in graph.input:
        if info.name in imp.consts:
            continue
        shape = imp.shape(info.name)
        if not shape:
            raise ValueError(f"load_onnx: {source}: input '{info.name}' has no shape with a batch axis")
        image = len(shape) == 4 and any(op in _IMAGE_OPS for op in readers.get(info.name, []))
        per_sample = (shape[2], shape[3], shape[1]) if image else shape[1:]
        node = Input(per_sample, name=info.name)
        inputs.append(node)
        imp.values[info.name] = _Value(node, len(shape), _NHWC if image else None)
    needed = _needed_nodes(graph, imp.consts)
    for node in graph.node:
        if id(node) not in needed or id(node) in imp.fused or id(node) in folded:
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in _CONVERTERS:
            imp.fail(node, f"operator {node.domain + '.' if node.domain else ''}{node.op_type} is not supported "
                           f"(supported: {sorted(_CONVERTERS)})")
        for name, value in zip(node.output, _CONVERTERS[node.op_type](imp, node)):
            imp.values[name] = value
    outputs = []
    for info in graph.output:
        v = imp.values[info.name]
        if not (v.plain or (v.rank == 4 and v.perm == _NHWC and v.cols is None)):
            raise UnsupportedOnnx(f"load_onnx: {source}: output '{info.name}' is held in layout perm {v.perm}"
                                  f"{' with permuted columns' if v.cols is not None else ''}; expected it as in the "
                                  f"file (or channels-last for an image)")
        node = v.node
        if node.is_input:  # a graph that passes an input through: give the output a layer of its own
            node = Identity(name=f"{info.name}_identity")(node)
        outputs.append(node)
    return Model(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
                 name=graph.name or None)


def load_onnx(path):
    """A trainable graph Model of our layers with the weights of the ONNX file at `path`.

    The file is parsed, never executed. Images (4-D inputs read by image operators) are
    channels-last (N, H, W, C), as in every bigdl_py model; other inputs keep their
    shape. The model is in training mode like any new model: call `.eval()` to predict.
    Raises:
        ValueError naming the node, its operator and the opset for anything unsupported.
    Example:
        model = load_onnx("lenet.onnx").eval()
        logits = model.infer(images_nhwc)
    """
    onnx = _onnx()
    try:
        proto = onnx.load(str(path))
    except (OSError, ValueError) as e:
        raise ValueError(f"load_onnx: {path}: cannot read an ONNX model ({type(e).__name__}: {e})") from None
    except Exception as e:  # protobuf's DecodeError for a file that is not an ONNX model
        if type(e).__name__ != "DecodeError":
            raise
        raise ValueError(f"load_onnx: {path}: not an ONNX model ({e})") from None
    return model_from_onnx(proto, source=str(path))
