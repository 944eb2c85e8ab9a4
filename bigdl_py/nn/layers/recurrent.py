"""Single-layer LSTM and GRU over batch-first sequences (PyTorch weight layout)."""
import math

import numpy as np

from bigdl_py.kernels import rnn as krnn
from bigdl_py.kernels._checks import check_positive_int
from bigdl_py.nn import init
from bigdl_py.nn.layers._util import as_float, cached, make_params, named_errors
from bigdl_py.nn.module import Module, register


class _Recurrent(Module):
    gates = None
    saved_for_backward = ("_cache",)

    def __init__(self, input_size, hidden_size, return_sequences, name):
        super().__init__(name)
        i = check_positive_int("input_size", input_size)
        h = check_positive_int("hidden_size", hidden_size)
        self.config = dict(input_size=i, hidden_size=h, return_sequences=bool(return_sequences))
        g = self.gates * h
        make_params(self, {"w_ih": (g, i), "w_hh": (g, h), "b_ih": (g,), "b_hh": (g,)})
        self._cache = None
        self.reset_parameters()

    def reset_parameters(self, rng=None):
        """Every weight and bias U(+-1/sqrt(hidden_size)), as torch."""
        bound = 1.0 / math.sqrt(self.config["hidden_size"])
        for p in self.params.values():
            p[...] = init.Uniform(-bound, bound)(p.shape, *init.fans(self.params["w_ih"].shape, "oi"), rng)

    def _inputs(self, x):
        self.check_input(x, (None, None, self.config["input_size"]))
        x = as_float(x, self.params["w_ih"].dtype)
        h0 = np.zeros((x.shape[0], self.config["hidden_size"]), x.dtype)
        return x, h0

    def _output(self, out, h_t):
        return out if self.config["return_sequences"] else h_t

    def _grad_out(self, x, grad_y):
        """dL/dout (N, T, H) and dL/dh_T from the gradient of whatever forward returned."""
        n, t, h = x.shape[0], x.shape[1], self.config["hidden_size"]
        grad_y = as_float(grad_y, x.dtype)
        if self.config["return_sequences"]:
            self.check_input(grad_y, (n, t, h), "grad_y")
            return grad_y, None
        self.check_input(grad_y, (n, h), "grad_y")
        return np.zeros((n, t, h), x.dtype), grad_y

    def _accumulate(self, dw_ih, dw_hh, db_ih, db_hh):
        for key, d in zip(("w_ih", "w_hh", "b_ih", "b_hh"), (dw_ih, dw_hh, db_ih, db_hh)):
            self.grads[key] += d


@register
class LSTM(_Recurrent):
    """Long short-term memory, gate order i, f, g, o (torch.nn.LSTM, batch_first=True).

    The initial hidden and cell states are zero.

    Args:
        input_size, hidden_size: feature sizes I and H.
        return_sequences: return every step's hidden state, else only the last.
    Shape:
        x (N, T, I) -> y (N, T, H) or (N, H); w_ih (4H, I), w_hh (4H, H), b_ih, b_hh (4H,).
    """

    gates = 4

    def __init__(self, input_size, hidden_size, return_sequences=False, name=None):
        super().__init__(input_size, hidden_size, return_sequences, name)

    @named_errors
    def forward(self, x):
        x, h0 = self._inputs(x)
        p = self.params
        out, h_t, _, self._cache = krnn.lstm_forward(x, h0, h0.copy(), p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        return self._output(out, h_t)

    @named_errors
    def backward(self, x, grad_y):
        cache = cached(self, self._cache)
        x, _ = self._inputs(x)
        grad_out, grad_h = self._grad_out(x, grad_y)
        dx, _, _, *dparams = krnn.lstm_backward(cache, grad_out, grad_hT=grad_h)
        self._accumulate(*dparams)
        return dx


@register
class GRU(_Recurrent):
    """Gated recurrent unit, gate order r, z, n (torch.nn.GRU, batch_first=True).

    The initial hidden state is zero.

    Args:
        input_size, hidden_size: feature sizes I and H.
        return_sequences: return every step's hidden state, else only the last.
    Shape:
        x (N, T, I) -> y (N, T, H) or (N, H); w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,).
    """

    gates = 3

    def __init__(self, input_size, hidden_size, return_sequences=False, name=None):
        super().__init__(input_size, hidden_size, return_sequences, name)

    @named_errors
    def forward(self, x):
        x, h0 = self._inputs(x)
        p = self.params
        out, h_t, self._cache = krnn.gru_forward(x, h0, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        return self._output(out, h_t)

    @named_errors
    def backward(self, x, grad_y):
        cache = cached(self, self._cache)
        x, _ = self._inputs(x)
        grad_out, grad_h = self._grad_out(x, grad_y)
        dx, _, *dparams = krnn.gru_backward(cache, grad_out, grad_hT=grad_h)
        self._accumulate(*dparams)
        return dx
