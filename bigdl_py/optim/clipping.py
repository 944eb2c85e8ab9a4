"""Gradient clipping on (slices of) the flat gradient vector, in place.

A sharded engine clips by the global norm in two steps: every shard computes
`global_norm_sq(g_slice)`, the partial sums are added, and every shard then calls
`scale(g_slice, clip_coefficient(sqrt(total), max_norm))`. Locally,
`clip_by_global_norm(g, max_norm)` does both on the whole vector.
"""
import math

import numpy as np

from bigdl_py.kernels._checks import check_array

_CHUNK = 1 << 16  # float64 copies of this many values stay in cache


def global_norm_sq(g):
    """Sum of squares of `g`, accumulated in float64.

    float64 makes the sum of per-shard partials agree with the whole-vector sum to
    far below float32 round-off, whatever the shard boundaries.
    """
    flat = check_array("g", g).reshape(-1)
    total = 0.0
    for start in range(0, flat.size, _CHUNK):
        c = flat[start:start + _CHUNK].astype(np.float64)
        total += float(c @ c)
    return total


def clip_coefficient(total_norm, max_norm):
    """Factor that brings a gradient of norm `total_norm` down to `max_norm` (at most 1).

    Same formula as torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6).
    A non-finite norm raises: training on inf/nan gradients is never silent.
    """
    if not max_norm > 0:
        raise ValueError(f"Invalid max_norm: {max_norm}")
    if not math.isfinite(total_norm):
        raise ValueError(f"total_norm: expected a finite gradient norm, received {total_norm}")
    return min(1.0, max_norm / (total_norm + 1e-6))


def scale(g, coef):
    """g *= coef in place (skipped when coef == 1)."""
    check_array("g", g)
    if coef != 1.0:
        g *= coef
    return g


def clip_by_global_norm(g, max_norm):
    """Scale `g` in place so that its L2 norm is at most `max_norm`; return the norm before.

    Args:
        g: gradient array (usually the flat vector), float32 or float64.
        max_norm: positive float.
    """
    norm = math.sqrt(global_norm_sq(g))
    scale(g, clip_coefficient(norm, max_norm))
    return norm


def clip_by_value(g, min_value, max_value):
    """Clamp every entry of `g` into [min_value, max_value] in place; return g."""
    check_array("g", g)
    if not min_value <= max_value:
        raise ValueError(f"Invalid clip range: expected min_value <= max_value, received "
                         f"min_value={min_value}, max_value={max_value}")
    np.clip(g, min_value, max_value, out=g)
    return g
