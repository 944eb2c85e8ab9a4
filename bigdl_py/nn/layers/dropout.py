"""Inverted dropout with masks that are a pure function of (forward seed, layer path, call)."""
import zlib

import numpy as np

from bigdl_py.kernels import dropout as kdrop
from bigdl_py.kernels._checks import check_probability
from bigdl_py.nn.layers._util import as_float, cached, float_dtype, named_errors
from bigdl_py.nn.module import Module, register


@register
class Dropout(Module):
    """Zero each element with probability p in training and scale the rest by 1/(1-p).

    The mask seed mixes the model's forward seed (`set_forward_seed`, set by the
    engine per iteration and partition), a stable hash of this layer's path (so two
    dropout layers draw different masks) and a count of forwards since the seed was
    last set (so a layer called twice per iteration differs too). Re-running an
    iteration after setting the same seed redraws the same masks. Identity in eval mode.

    Args:
        p: drop probability in [0, 1).
    Shape:
        x any shape -> y like x.
    """

    saved_for_backward = ("_mask",)

    def __init__(self, p=0.5, name=None):
        super().__init__(name)
        self.config = dict(p=check_probability("p", p))
        self._mask = None

    # Module.set_forward_seed assigns _forward_seed on every module of a tree; a
    # property catches that assignment to restart the per-seed forward counter.
    @property
    def _forward_seed(self):
        return self._seed

    @_forward_seed.setter
    def _forward_seed(self, seed):
        self._seed = int(seed)
        self._calls = 0

    def _mask_seed(self):
        words = [self._seed % 2**64, zlib.crc32(self.path.encode()), self._calls]
        self._calls += 1
        return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> 1)

    @named_errors
    def forward(self, x):
        self.check_input(x, (None,) * getattr(x, "ndim", 1))
        if not self.training:
            self._mask = None
            return x
        y, self._mask = kdrop.dropout_forward(as_float(x), self.config["p"], self._mask_seed())
        return y

    @named_errors
    def backward(self, x, grad_y):
        if not self.training:
            return grad_y
        mask = cached(self, self._mask)
        self.check_input(grad_y, mask.shape, "grad_y")
        return kdrop.dropout_backward(as_float(grad_y, float_dtype(x)), mask)
