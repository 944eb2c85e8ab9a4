"""Activation layers: one generic class over the kernels in `kernels.activation`.

Each subclass names its kernel and its parameters; forward keeps y because most
backwards (tanh, sigmoid, softmax, ...) are cheapest from the output.
"""
from bigdl_py.kernels import activation as kact
from bigdl_py.nn.layers._util import as_float, cached, float_dtype, named_errors
from bigdl_py.nn.module import Module, register


class Activation(Module):
    """Base class: `kernel` is the name of a function in kernels.activation with a
    matching `<kernel>_backward(x, y, grad_y, **params)`; `self.config` holds the params.

    Shape:
        x any shape (softmax-like kernels: classes on the last axis) -> y like x.
    """

    saved_for_backward = ("_y",)

    kernel = None

    def __init__(self, name=None, **params):
        super().__init__(name)
        self.config = {k: float(v) for k, v in params.items()}
        self._y = None

    @named_errors
    def forward(self, x):
        self.check_input(x, (None,) * getattr(x, "ndim", 1))
        self._y = getattr(kact, self.kernel)(as_float(x), **self.config)
        return self._y

    @named_errors
    def backward(self, x, grad_y):
        y = cached(self, self._y)
        self.check_input(grad_y, y.shape, "grad_y")
        dtype = float_dtype(x)
        return getattr(kact, self.kernel + "_backward")(as_float(x, dtype), y, as_float(grad_y, dtype),
                                                        **self.config)


@register
class ReLU(Activation):
    """max(x, 0)."""

    kernel = "relu"


@register
class ReLU6(Activation):
    """min(max(x, 0), 6)."""

    kernel = "relu6"


@register
class LeakyReLU(Activation):
    """x for x > 0, negative_slope * x otherwise."""

    kernel = "leaky_relu"

    def __init__(self, negative_slope=0.01, name=None):
        super().__init__(name, negative_slope=negative_slope)


@register
class ELU(Activation):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    kernel = "elu"

    def __init__(self, alpha=1.0, name=None):
        super().__init__(name, alpha=alpha)


@register
class Tanh(Activation):
    """tanh(x)."""

    kernel = "tanh"


@register
class Sigmoid(Activation):
    """1 / (1 + exp(-x))."""

    kernel = "sigmoid"


@register
class SoftMax(Activation):
    """exp(x) / sum(exp(x)) over the last axis."""

    kernel = "softmax"


@register
class LogSoftMax(Activation):
    """log(softmax(x)) over the last axis, computed stably."""

    kernel = "log_softmax"
