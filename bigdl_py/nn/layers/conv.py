"""2-D convolution over channels-last (NHWC) activations."""
from bigdl_py.kernels import activation as kact
from bigdl_py.kernels import conv as kconv
from bigdl_py.kernels._checks import check_pair, check_positive_int
from bigdl_py.nn import init
from bigdl_py.nn.layers._util import as_float, cached, fill, json_pair, make_params, named_errors
from bigdl_py.nn.module import Module, register


# Fused activation -> (the kernel's relu_cap, the backward that maps grad_y to before it).
_FUSED = {None: (None, None), "relu": (None, kact.relu_backward), "relu6": (6.0, kact.relu6_backward)}


@register
class Conv2d(Module):
    """2-D convolution, optionally followed by a fused ReLU or ReLU6.

    Args:
        in_channels, out_channels: channel counts, both divisible by `groups`.
        kernel_size, stride, padding, dilation: int or (h, w) pair; zero padding.
        groups: channel groups (groups == in_channels is a depthwise convolution).
        bias: learn an additive bias.
        activation: None, "relu" or "relu6" (applied inside the convolution kernel, which
            saves a pass over the output).
        weight_init, bias_init: initialiser names or configs (see `bigdl_py.nn.init`);
            the default is PyTorch's U(+-1/sqrt(fan_in)) for both.
    Shape:
        x (N, H, W, in_channels) -> y (N, OH, OW, out_channels); weight
        (KH, KW, in_channels/groups, out_channels) (HWIO), bias (out_channels,).
    """

    saved_for_backward = ("_y",)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, activation=None, weight_init="torch_default", bias_init="torch_default", name=None):
        super().__init__(name)
        cin = check_positive_int("in_channels", in_channels)
        cout = check_positive_int("out_channels", out_channels)
        groups = check_positive_int("groups", groups)
        if cin % groups or cout % groups:
            raise ValueError(f"groups: expected a divisor of in_channels={cin} and out_channels={cout}, "
                             f"received {groups}")
        kh, kw = check_pair("kernel_size", kernel_size, 1)
        check_pair("stride", stride, 1)
        check_pair("padding", padding, 0)
        check_pair("dilation", dilation, 1)
        if activation not in _FUSED:
            raise ValueError(f"activation: expected one of {list(_FUSED)}, received {activation!r}")
        self.config = dict(in_channels=cin, out_channels=cout, kernel_size=json_pair(kernel_size),
                           stride=json_pair(stride), padding=json_pair(padding), dilation=json_pair(dilation),
                           groups=groups, bias=bool(bias), activation=activation,
                           weight_init=init.serialize(weight_init), bias_init=init.serialize(bias_init))
        make_params(self, {"weight": (kh, kw, cin // groups, cout), **({"bias": (cout,)} if bias else {})})
        self._y = None
        self.reset_parameters()

    def reset_parameters(self, rng=None):
        """Draw weight and bias with the configured initialisers (fans of the HWIO weight)."""
        fan_in, fan_out = init.fans(self.params["weight"].shape, "hwio", self.config["groups"])
        fill(self, "weight", self.config["weight_init"], fan_in, fan_out, rng)
        if self.config["bias"]:
            fill(self, "bias", self.config["bias_init"], fan_in, fan_out, rng)

    def _geometry(self):
        c = self.config
        return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=c["groups"])

    @named_errors
    def forward(self, x):
        self.check_input(x, (None, None, None, self.config["in_channels"]))
        w = self.params["weight"]
        activation = self.config["activation"]
        relu = activation is not None
        y = kconv.conv2d_forward(as_float(x, w.dtype), w, self.params.get("bias"), relu=relu,
                                 relu_cap=_FUSED[activation][0], **self._geometry())
        self._y = y if relu else None
        return y

    @named_errors
    def backward(self, x, grad_y):
        w = self.params["weight"]
        grad_y = as_float(grad_y, w.dtype)
        if self.config["activation"] is not None:
            y = cached(self, self._y)
            self.check_input(grad_y, y.shape, "grad_y")
            # The kernel wants the gradient before the fused activation; 0 < y (< 6) where
            # the pre-activation was, so y stands in for it.
            grad_y = _FUSED[self.config["activation"]][1](y, None, grad_y)
        dx, dw, db = kconv.conv2d_backward(as_float(x, w.dtype), w, grad_y, has_bias=self.config["bias"],
                                           need_dx=self.input_grad_needed, need_dw=not self.frozen,
                                           **self._geometry())
        if dw is not None:
            self.grads["weight"] += dw
        if db is not None:
            self.grads["bias"] += db
        return dx
