"""Layers that only change the per-sample shape (no copies for contiguous inputs)."""
import numpy as np

from bigdl_py.nn.module import Module, register


@register
class Identity(Module):
    """y = x.

    Shape:
        x any shape -> y = x.
    """

    def forward(self, x):
        self.check_input(x, (None,) * getattr(x, "ndim", 0))
        return x

    def backward(self, x, grad_y):
        return grad_y


@register
class Flatten(Module):
    """Collapse every axis but the batch axis (NHWC order: h, w, c from slowest to fastest).

    Shape:
        x (N, *) -> y (N, prod(*)).
    """

    def forward(self, x):
        self.check_input(x, (None,) * max(getattr(x, "ndim", 0), 2))
        return x.reshape(x.shape[0], -1)

    def backward(self, x, grad_y):
        self.check_input(grad_y, (x.shape[0], int(np.prod(x.shape[1:]))), "grad_y")
        return grad_y.reshape(x.shape)


@register
class Reshape(Module):
    """Reshape each sample; one entry of `shape` may be -1 (inferred).

    Args:
        shape: the per-sample output shape, e.g. (28, 28, 1) for a flat MNIST row.
    Shape:
        x (N, *) -> y (N, *shape).
    """

    def __init__(self, shape, name=None):
        super().__init__(name)
        shape = [shape] if isinstance(shape, (int, np.integer)) else list(shape)
        bad = [s for s in shape if not isinstance(s, (int, np.integer)) or (s < 1 and s != -1)]
        if bad or shape.count(-1) > 1:
            raise ValueError(f"shape: expected positive ints with at most one -1, received {shape!r}")
        self.config = dict(shape=[int(s) for s in shape])

    def _target(self, x):
        self.check_input(x, (None,) * max(getattr(x, "ndim", 0), 1))
        shape = self.config["shape"]
        size = int(np.prod(x.shape[1:]))
        known = int(np.prod([s for s in shape if s != -1]))
        if not (size % known == 0 if -1 in shape else size == known):
            need = f"a multiple of {known}" if -1 in shape else known
            raise ValueError(f"layer '{self.path}' (Reshape): cannot reshape samples of shape {x.shape[1:]} "
                             f"({size} values) to {tuple(shape)} ({need} values)")
        return (x.shape[0],) + tuple(size // known if s == -1 else s for s in shape)

    def forward(self, x):
        return x.reshape(self._target(x))

    def backward(self, x, grad_y):
        self.check_input(grad_y, self._target(x), "grad_y")
        return grad_y.reshape(x.shape)


@register
class ZeroPad2d(Module):
    """Zero padding of the spatial axes, possibly asymmetric (torch.nn.ZeroPad2d).

    EfficientNet-Lite's TensorFlow "SAME" stride-2 convolutions pad one pixel more
    at the bottom/right than at the top/left; a symmetric conv padding cannot do that.

    Args:
        padding: int, or (left, right, top, bottom) as in torch.
    Shape:
        x (N, H, W, C) -> y (N, H + top + bottom, W + left + right, C).
    """

    def __init__(self, padding, name=None):
        super().__init__(name)
        pads = [padding] * 4 if isinstance(padding, (int, np.integer)) else list(padding)
        if len(pads) != 4 or not all(isinstance(p, (int, np.integer)) and p >= 0 for p in pads):
            raise ValueError(f"padding: expected an int or (left, right, top, bottom) of ints >= 0, "
                             f"received {padding!r}")
        self.config = {"padding": [int(p) for p in pads]}

    def forward(self, x):
        self.check_input(x, (None, None, None, None))
        left, right, top, bottom = self.config["padding"]
        n, h, w, c = x.shape
        # zeros + one slice copy: several times faster than np.pad on large activations
        y = np.zeros((n, h + top + bottom, w + left + right, c), x.dtype)
        y[:, top:top + h, left:left + w] = x
        return y

    def backward(self, x, grad_y):
        left, right, top, bottom = self.config["padding"]
        n, h, w, c = x.shape
        self.check_input(grad_y, (n, h + top + bottom, w + left + right, c), "grad_y")
        return np.ascontiguousarray(grad_y[:, top:top + h, left:left + w, :])
