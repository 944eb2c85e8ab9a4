"""Batch normalisation and local response normalisation, channels last."""
import numpy as np

from bigdl_py.kernels import norm as knorm
from bigdl_py.kernels._checks import check_positive_int
from bigdl_py.nn.layers._util import as_float, cached, float_dtype, fused_activation, named_errors
from bigdl_py.nn.module import Module, register


@register
class BatchNorm(Module):
    """Batch normalisation over every axis but the last (channels).

    Training uses the batch statistics and updates the running ones
    (r = (1 - momentum) * r + momentum * batch_stat, unbiased variance, as torch);
    eval mode normalises with the running statistics.

    Args:
        num_features: channels C.
        eps: added to the variance.
        momentum: weight of the batch statistic in the running update.
        activation: None or "relu", applied inside the normalisation kernel (one pass
            over the output less, and one over the gradient).
    Shape:
        x (N, C) or (N, H, W, C) -> y like x; weight, bias, running_mean, running_var (C,).
    """

    saved_for_backward = ("_saved",)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, activation=None, name=None):
        super().__init__(name)
        c = check_positive_int("num_features", num_features)
        if not eps > 0:
            raise ValueError(f"eps: expected a number > 0, received {eps!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum: expected a number in [0, 1], received {momentum!r}")
        self.config = dict(num_features=c, eps=float(eps), momentum=float(momentum),
                           activation=fused_activation(activation))
        self.params = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}
        self.grads = {k: np.zeros(c, np.float32) for k in self.params}
        self.buffers = {"running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
        self._saved = None

    def reset_parameters(self, rng=None):
        """Scale 1, shift 0, running mean 0 and variance 1 (as torch)."""
        self.params["weight"].fill(1.0)
        self.params["bias"].fill(0.0)
        self.buffers["running_mean"].fill(0.0)
        self.buffers["running_var"].fill(1.0)

    def _check(self, x, what="input"):
        c = self.config["num_features"]
        ndim = x.ndim if isinstance(x, np.ndarray) and x.ndim == 4 else 2
        self.check_input(x, (None,) * (ndim - 1) + (c,), what)
        return as_float(x, self.params["weight"].dtype)

    @named_errors
    def forward(self, x):
        x = self._check(x)
        p, b, c = self.params, self.buffers, self.config
        relu = c["activation"] == "relu"
        if self.training:
            y, mean, invstd = knorm.batchnorm_forward_train(x, p["weight"], p["bias"], b["running_mean"],
                                                            b["running_var"], c["momentum"], c["eps"], relu=relu)
        else:
            y = knorm.batchnorm_forward_eval(x, p["weight"], p["bias"], b["running_mean"], b["running_var"],
                                             c["eps"], relu=relu)
            # The statistics are constants in eval mode: keep the ones this forward used.
            mean = b["running_mean"].astype(x.dtype)
            invstd = (1.0 / np.sqrt(b["running_var"].astype(np.float64) + c["eps"])).astype(x.dtype)
        self._saved = (mean, invstd, self.training, y if relu else None)
        return y

    @named_errors
    def backward(self, x, grad_y):
        mean, invstd, training, y = cached(self, self._saved)
        x = self._check(x)
        grad_y = self._check(grad_y, "grad_y")
        dx, dgamma, dbeta = knorm.batchnorm_backward(x, self.params["weight"], grad_y, mean, invstd,
                                                     training=training, y=y)
        self.grads["weight"] += dgamma
        self.grads["bias"] += dbeta
        return dx


@register
class LRN(Module):
    """Cross-channel local response normalisation (AlexNet; torch LocalResponseNorm).

    y = x * (k + alpha / size * sum of x^2 over `size` neighbouring channels)^-beta.

    Args:
        size: channels in the window; alpha, beta, k: as in the formula.
    Shape:
        x (N, H, W, C) -> y like x.
    """

    saved_for_backward = ("_saved",)

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, name=None):
        super().__init__(name)
        self.config = dict(size=check_positive_int("size", size), alpha=float(alpha), beta=float(beta),
                           k=float(k))
        self._saved = None

    @named_errors
    def forward(self, x):
        self.check_input(x, (None, None, None, None))
        y, scale = knorm.lrn_forward(as_float(x), **self.config)
        self._saved = (y, scale)
        return y

    @named_errors
    def backward(self, x, grad_y):
        y, scale = cached(self, self._saved)
        self.check_input(grad_y, y.shape, "grad_y")
        dtype = float_dtype(x)
        return knorm.lrn_backward(as_float(x, dtype), y, scale, as_float(grad_y, dtype), **self.config)
