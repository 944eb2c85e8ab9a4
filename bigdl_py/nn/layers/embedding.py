"""Embedding lookup table."""
import numpy as np

from bigdl_py.kernels import embedding as kemb
from bigdl_py.kernels._checks import check_positive_int
from bigdl_py.nn import init
from bigdl_py.nn.layers._util import fill, make_params, named_errors
from bigdl_py.nn.module import Module, register


@register
class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table picked by integer indices.

    Float arrays holding whole numbers are accepted (DataFrame columns arrive as
    floats). Indices get no gradient: backward returns None.

    Args:
        num_embeddings: rows in the table.
        embedding_dim: width of each row.
        padding_idx: a row kept at zero at initialisation whose gradient is always zero.
        weight_init: initialiser name or config; default N(0, 1) as torch.
    Shape:
        indices (N, *) -> y (N, *, embedding_dim).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, weight_init="normal", name=None):
        super().__init__(name)
        n = check_positive_int("num_embeddings", num_embeddings)
        d = check_positive_int("embedding_dim", embedding_dim)
        if padding_idx is not None and not (isinstance(padding_idx, (int, np.integer)) and -n <= padding_idx < n):
            raise ValueError(f"padding_idx: expected None or an int in [{-n}, {n}), received {padding_idx!r}")
        self.config = dict(num_embeddings=n, embedding_dim=d,
                           padding_idx=None if padding_idx is None else int(padding_idx),
                           weight_init=init.serialize(weight_init))
        make_params(self, {"weight": (n, d)})
        self.reset_parameters()

    def reset_parameters(self, rng=None):
        """Draw the table; the padding row is zero (as torch)."""
        fan_in, fan_out = init.fans(self.params["weight"].shape, "oi")
        fill(self, "weight", self.config["weight_init"], fan_in, fan_out, rng)
        if self.config["padding_idx"] is not None:
            self.params["weight"][self.config["padding_idx"]] = 0.0

    def _indices(self, x):
        self.check_input(x, (None,) * max(getattr(x, "ndim", 1), 1))
        if np.issubdtype(x.dtype, np.integer):
            return x.astype(np.int64, copy=False)
        whole = np.isfinite(x) & (x == np.round(x)) if np.issubdtype(x.dtype, np.floating) else None
        if whole is None or not whole.all():
            found = f"dtype {x.dtype}" if whole is None else f"value {float(x.reshape(-1)[np.argmin(whole)])}"
            raise ValueError(f"layer '{self.path}' (Embedding): expected integer indices (or floats holding "
                             f"whole numbers), received {found}")
        return x.astype(np.int64)

    @named_errors
    def forward(self, x):
        return kemb.embedding_forward(self._indices(x), self.params["weight"], self.config["padding_idx"])

    @named_errors
    def backward(self, x, grad_y):
        dw = kemb.embedding_backward(self._indices(x), np.ascontiguousarray(grad_y, self.params["weight"].dtype),
                                     self.config["num_embeddings"], self.config["padding_idx"])
        self.grads["weight"] += dw
        return None
