"""Inverted dropout with a seeded, reproducible mask.

The mask comes from np.random.default_rng(seed), so a task that Spark re-runs after
a failure draws exactly the same mask and training stays deterministic.
"""
import numpy as np
from numba import njit

from ._checks import check_array, check_probability, check_shape


@njit(cache=True)
def _mask_and_apply(x, u, p, keep_scale, y):
    # Turns the uniform draws u into the mask in place and writes y = x * mask.
    for i in range(x.size):
        m = keep_scale if u[i] >= p else 0.0
        u[i] = m
        y[i] = x[i] * m


def dropout_forward(x, p, seed):
    """Zero each element with probability p and scale the rest by 1 / (1 - p).

    Args:
        x: any shape, float32 (or float64).
        p: drop probability in [0, 1); p == 0 returns a copy of x and a mask of ones.
        seed: int >= 0 for np.random.default_rng; the same seed gives the same mask.
    Returns:
        (y, mask): y like x; mask float32 of 0 or 1 / (1 - p), shaped like x.
    """
    check_array("x", x)
    p = check_probability("p", p)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, received {seed!r}")
    if p == 0.0:
        return x.copy(), np.ones(x.shape, dtype=np.float32)
    mask = np.random.default_rng(int(seed)).random(x.shape, dtype=np.float32)
    y = np.empty_like(x)
    _mask_and_apply(x.reshape(-1), mask.reshape(-1), np.float32(p),
                    np.float32(1.0 / (1.0 - p)), y.reshape(-1))
    return y, mask


def dropout_backward(grad_y, mask):
    """dx = grad_y * mask, with the mask from dropout_forward."""
    check_array("grad_y", grad_y)
    check_array("mask", mask, dtype=np.float32)
    check_shape("mask", mask, grad_y.shape)
    return grad_y * mask.astype(grad_y.dtype, copy=False)
