"""What per-sample input a model declares, read from its graph Input or its first layer.

`input_spec(model)` -> InputSpec or None (the model does not say). `shape` is a
per-sample shape whose entries are ints or None (any size), optionally led by
`...` (any number of leading axes, as Linear takes); `width` is the number of
values per sample when the model fixes it without fixing the shape (Flatten or
Reshape first). `where` names the declaring layer for error messages.
"""
from collections import namedtuple

import numpy as np

from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.graph import Model
from bigdl_py.nn.layers import (GRU, LSTM, Activation, BatchNorm, Conv2d, Dropout, Flatten, Identity, Linear,
                                Reshape)


class InputSpec(namedtuple("InputSpec", "shape width where")):
    def describe(self):
        if self.shape is None:
            return f"{self.width} values per row ({self.where})"
        dims = ", ".join("..." if d is Ellipsis else "?" if d is None else str(d) for d in self.shape)
        return f"per-row shape ({dims}{',' if len(self.shape) == 1 else ''}) ({self.where})"

    def _dims(self):
        """The fixed trailing axes and whether any leading axes may come before them."""
        open_start = self.shape[:1] == (Ellipsis,)
        return (self.shape[1:] if open_start else self.shape), open_start

    def flat_width(self):
        """Values per row of flat features this model takes, or None when it does not fix them."""
        if self.width is not None:
            return self.width
        dims, open_start = self._dims()
        if None in dims or (open_start and len(dims) != 1):
            return None
        return int(np.prod(dims))

    def fits(self, shape):
        """True when samples of per-sample `shape` are what the model takes."""
        shape = tuple(shape)
        if self.width is not None and int(np.prod(shape)) != self.width:
            return False
        if self.shape is None:
            return True
        dims, open_start = self._dims()
        if len(shape) < len(dims) or (not open_start and len(shape) != len(dims)):
            return False
        tail = shape[len(shape) - len(dims):]
        return all(d is None or d == s for d, s in zip(dims, tail))


_SHAPE_PRESERVING = (Activation, Dropout, Identity)


def input_spec(model):
    """The model's declared per-sample input as an InputSpec, or None when it does not say."""
    def where(attr):
        return f"{attr} of {type(model).__name__} '{model.path}'"

    if isinstance(model, Linear):
        return InputSpec((..., model.config["in_features"]), None, where("in_features"))
    if isinstance(model, BatchNorm):
        return InputSpec((..., model.config["num_features"]), None, where("num_features"))
    if isinstance(model, Conv2d):
        return InputSpec((None, None, model.config["in_channels"]), None, where("in_channels"))
    if isinstance(model, (LSTM, GRU)):
        return InputSpec((None, model.config["input_size"]), None, where("input_size"))
    if isinstance(model, Reshape) and -1 not in model.config["shape"]:
        return InputSpec(None, int(np.prod(model.config["shape"])), where("shape"))
    if isinstance(model, Model):
        return _graph_spec(model)
    if isinstance(model, Sequential):
        return _sequential_spec(list(model))
    return None


def _graph_spec(model):
    nodes = model._input_nodes
    if len(nodes) != 1:
        return None
    return InputSpec(nodes[0].shape, None, f"Input {model._input_names[0]!r} of Model '{model.path}'")


def _sequential_spec(children):
    for i, child in enumerate(children):
        if isinstance(child, _SHAPE_PRESERVING):
            continue
        if isinstance(child, Flatten):
            after = _sequential_spec(children[i + 1:])
            width = after and after.flat_width()
            return None if width is None else InputSpec(None, width, after.where + ", after Flatten")
        return input_spec(child)
    return None
