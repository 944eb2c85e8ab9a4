"""Max, average and global average pooling over channels-last (NHWC) activations."""
from bigdl_py.kernels import pool as kpool
from bigdl_py.kernels._checks import check_pair
from bigdl_py.nn.layers._util import as_float, cached, float_dtype, json_pair, named_errors
from bigdl_py.nn.module import Module, register

_NHWC = (None, None, None, None)


class _Pool2d(Module):
    def __init__(self, kernel_size, stride, padding, ceil_mode, name, **extra):
        super().__init__(name)
        check_pair("kernel_size", kernel_size, 1)
        if stride is not None:
            check_pair("stride", stride, 1)
        check_pair("padding", padding, 0)
        self.config = dict(kernel_size=json_pair(kernel_size), stride=json_pair(stride),
                           padding=json_pair(padding), ceil_mode=bool(ceil_mode), **extra)

    def _window(self):
        c = self.config
        return dict(kernel=c["kernel_size"], stride=c["stride"], padding=c["padding"], ceil_mode=c["ceil_mode"])


@register
class MaxPool2d(_Pool2d):
    """Max pooling; padding counts as -inf (as torch).

    Args:
        kernel_size, stride, padding: int or (h, w) pair; stride defaults to kernel_size.
        ceil_mode: round the output size up.
    Shape:
        x (N, H, W, C) -> y (N, OH, OW, C).
    """

    saved_for_backward = ("_argmax",)

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, name=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, name)
        self._argmax = None

    @named_errors
    def forward(self, x):
        self.check_input(x, _NHWC)
        y, self._argmax = kpool.maxpool2d_forward(as_float(x), **self._window())
        return y

    @named_errors
    def backward(self, x, grad_y):
        argmax = cached(self, self._argmax)
        self.check_input(grad_y, argmax.shape, "grad_y")
        return kpool.maxpool2d_backward(as_float(grad_y, float_dtype(x)), argmax, x.shape)


@register
class AvgPool2d(_Pool2d):
    """Average pooling with torch's divisor rules.

    Args:
        kernel_size, stride, padding: int or (h, w) pair; stride defaults to kernel_size.
        ceil_mode: round the output size up.
        count_include_pad: divide by the full window including zero padding (True)
            or by the number of input elements it covers (False).
    Shape:
        x (N, H, W, C) -> y (N, OH, OW, C).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, name=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, name, count_include_pad=bool(count_include_pad))

    @named_errors
    def forward(self, x):
        self.check_input(x, _NHWC)
        return kpool.avgpool2d_forward(as_float(x), count_include_pad=self.config["count_include_pad"],
                                       **self._window())

    @named_errors
    def backward(self, x, grad_y):
        self.check_input(x, _NHWC)
        return kpool.avgpool2d_backward(as_float(grad_y, float_dtype(x)), x.shape,
                                        count_include_pad=self.config["count_include_pad"], **self._window())


@register
class GlobalAvgPool2d(Module):
    """Mean over the spatial axes.

    Shape:
        x (N, H, W, C) -> y (N, C).
    """

    @named_errors
    def forward(self, x):
        self.check_input(x, _NHWC)
        return kpool.global_avgpool_forward(as_float(x))

    @named_errors
    def backward(self, x, grad_y):
        self.check_input(x, _NHWC)
        return kpool.global_avgpool_backward(as_float(grad_y, float_dtype(x)), x.shape)
