"""Narrow: a contiguous slice of one axis (split one feature vector into model inputs)."""
import numpy as np

from bigdl_py.nn.layers._util import float_dtype
from bigdl_py.nn.module import Module, register


@register
class Narrow(Module):
    """y = x[..., start:start + length, ...] along `axis` (torch.narrow, BigDL Narrow).

    Spark ML hands a model ONE features vector; a graph model with several inputs
    (category indices for embeddings, scaled numerics for an MLP) cuts it with Narrow.
    Integer-valued slices pass through unchanged, so indices stay whole numbers.

    Args:
        axis: the axis to slice (not the batch axis 0; negative counts from the end).
        start: first index kept (>= 0).
        length: number of entries kept (>= 1).
    Shape:
        x (N, ..., D, ...) -> y (N, ..., length, ...) with start + length <= D.
    Example:
        x = Input((6,)); cats = Narrow(1, 0, 2)(x); nums = Narrow(1, 2, 4)(x)
    """

    def __init__(self, axis, start, length, name=None):
        super().__init__(name)
        for what, v, low in (("axis", axis, None), ("start", start, 0), ("length", length, 1)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or (low is not None and v < low):
                need = "an int" if low is None else f"an int >= {low}"
                raise ValueError(f"Narrow: expected {what} to be {need}, received {v!r}")
        if axis == 0:
            raise ValueError("Narrow: axis 0 is the batch axis; expected a non-zero axis, received 0")
        self.config = dict(axis=int(axis), start=int(start), length=int(length))

    def _index(self, x):
        """The slicing tuple for x, after checking the slice fits inside it."""
        if not isinstance(x, np.ndarray):
            raise ValueError(f"layer '{self.path}' (Narrow): expected a numpy array as input, "
                             f"received {type(x).__name__}")
        axis, start, length = self.config["axis"], self.config["start"], self.config["length"]
        a = axis % x.ndim if x.ndim >= 2 and -x.ndim <= axis < x.ndim else None
        if a is None or a == 0 or start + length > x.shape[a]:
            raise ValueError(f"layer '{self.path}' (Narrow): cannot take [{start}:{start + length}] along axis "
                             f"{axis} of input shape {x.shape} (need ndim >= 2 and size >= {start + length} "
                             f"on that axis)")
        return (slice(None),) * a + (slice(start, start + length),)

    def forward(self, x):
        # A copy: a view would keep the whole batch alive and is not C-contiguous for kernels.
        return np.ascontiguousarray(x[self._index(x)])

    def backward(self, x, grad_y):
        index = self._index(x)
        want = x[index].shape
        self.check_input(grad_y, want, "grad_y")
        if not self.input_grad_needed:
            return None
        grad_x = np.zeros(x.shape, dtype=float_dtype(grad_y))
        grad_x[index] = grad_y
        return grad_x
