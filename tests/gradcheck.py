"""Finite-difference oracle shared by every backward test."""
import numpy as np


def numeric_grad(f, x, eps=1e-3):
    """d f(x) / dx by central differences; f maps a float64 array to a scalar."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        hi = f(x)
        flat[i] = keep - eps
        lo = f(x)
        flat[i] = keep
        gflat[i] = (hi - lo) / (2 * eps)
    return grad


def projection(shape, seed=0):
    """A fixed random weight r so that sum(r * y) turns an output y into a scalar loss."""
    return np.random.default_rng(seed).standard_normal(shape)
