"""Constant folding of ONNX nodes whose inputs are all constants, with numpy.

torch.onnx writes small computations on constants into the graph, e.g. the pads of
`F.pad(x, [l, r, t, b])` as ConstantOfShape -> Concat -> Reshape -> Slice -> Transpose ->
Reshape -> Cast. load_onnx folds them into one constant before mapping the graph onto
layers, so Pad sees its pads as a constant like any other.
"""
import numpy as np


def _attrs(onnx, node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _reshape(data, shape, allowzero=0):
    shape = [data.shape[i] if d == 0 and not allowzero else int(d) for i, d in enumerate(shape)]
    return data.reshape(shape)


def _unsqueeze(data, axes):
    rank = data.ndim + len(axes)
    for axis in sorted(int(a) % rank for a in axes):
        data = np.expand_dims(data, axis)
    return data


def _slice(data, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis)] = slice(int(start), int(end), int(step))  # Python clamps as ONNX does
    return data[tuple(index)]


def _constant_of_shape(onnx, shape, value=None):
    fill = np.zeros(1, np.float32) if value is None else onnx.numpy_helper.to_array(value)
    return np.full([int(d) for d in shape], fill.reshape(-1)[0], dtype=fill.dtype)


def fold(onnx, node, inputs):
    """The outputs of `node` computed from its constant `inputs` (None for an absent optional one),
    or None when its operator is not one folded here."""
    a = _attrs(onnx, node)
    op = node.op_type
    if op == "Identity":
        return [inputs[0]]
    if op == "Cast":
        return [inputs[0].astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op == "Reshape":
        return [_reshape(inputs[0], inputs[1], a.get("allowzero", 0))]
    if op == "Transpose":
        return [inputs[0].transpose(a.get("perm"))]
    if op == "Unsqueeze":
        return [_unsqueeze(inputs[0], inputs[1])]
    if op == "Squeeze":
        axes = None if len(inputs) < 2 or inputs[1] is None else tuple(int(x) for x in inputs[1])
        return [np.squeeze(inputs[0], axis=axes)]
    if op == "Concat":
        return [np.concatenate(inputs, axis=a["axis"])]
    if op == "Gather":
        return [np.take(inputs[0], inputs[1], axis=a.get("axis", 0))]
    if op == "Slice":
        return [_slice(*inputs)]
    if op == "ConstantOfShape":
        return [_constant_of_shape(onnx, inputs[0], a.get("value"))]
    if op == "Shape":
        return [np.array(inputs[0].shape, np.int64)]
    if op in ("Add", "Sub", "Mul"):
        return [{"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](inputs[0], inputs[1])]
    return None
