"""Fully connected layer."""
import numpy as np

from bigdl_py.kernels import linear as klinear
from bigdl_py.kernels._checks import check_positive_int
from bigdl_py.nn import init
from bigdl_py.nn.layers._util import as_float, fill, make_params, named_errors
from bigdl_py.nn.module import Module, register


@register
class Linear(Module):
    """y = x @ weight.T + bias over the last axis.

    Args:
        in_features, out_features: sizes of the last axis of x and y.
        bias: learn an additive bias.
        weight_init, bias_init: initialiser names or configs (see `bigdl_py.nn.init`);
            the default is PyTorch's U(+-1/sqrt(in_features)) for both.
    Shape:
        x (N, *, in_features) -> y (N, *, out_features); weight (out_features,
        in_features), bias (out_features,).
    """

    def __init__(self, in_features, out_features, bias=True, weight_init="torch_default",
                 bias_init="torch_default", name=None):
        super().__init__(name)
        fin = check_positive_int("in_features", in_features)
        fout = check_positive_int("out_features", out_features)
        self.config = dict(in_features=fin, out_features=fout, bias=bool(bias),
                           weight_init=init.serialize(weight_init), bias_init=init.serialize(bias_init))
        make_params(self, {"weight": (fout, fin), **({"bias": (fout,)} if bias else {})})
        self.reset_parameters()

    def reset_parameters(self, rng=None):
        """Draw weight and bias with the configured initialisers (fans of the (out, in) weight)."""
        fan_in, fan_out = init.fans(self.params["weight"].shape, "oi")
        fill(self, "weight", self.config["weight_init"], fan_in, fan_out, rng)
        if self.config["bias"]:
            fill(self, "bias", self.config["bias_init"], fan_in, fan_out, rng)

    def _rows(self, x, width, what):
        # Leading axes are batch-like: (N, T, F) sequences run as N*T rows.
        ndim = x.ndim if isinstance(x, np.ndarray) and x.ndim >= 2 else 2
        self.check_input(x, (None,) * (ndim - 1) + (width,), what)
        return as_float(x, self.params["weight"].dtype).reshape(-1, width)

    @named_errors
    def forward(self, x):
        y = klinear.linear_forward(self._rows(x, self.config["in_features"], "input"), self.params["weight"],
                                   self.params.get("bias"))
        return y.reshape(x.shape[:-1] + (self.config["out_features"],))

    @named_errors
    def backward(self, x, grad_y):
        x2 = self._rows(x, self.config["in_features"], "input")
        g2 = self._rows(grad_y, self.config["out_features"], "grad_y")
        dx, dw, db = klinear.linear_backward(x2, self.params["weight"], g2, has_bias=self.config["bias"],
                                             need_dx=self.input_grad_needed, need_dw=not self.frozen)
        if dw is not None:
            self.grads["weight"] += dw
        if db is not None:
            self.grads["bias"] += db
        return None if dx is None else dx.reshape(x.shape)
