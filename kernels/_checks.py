"""Argument validation shared by all kernels.

Runs in plain Python before any numba code, so a bad call fails with a ValueError
that names the argument, what was expected and what was received.
"""
import numpy as np

# float32 is what models run in; float64 is accepted so that every backward can be
# checked against float64 finite differences through the very same kernel.
FLOATS = (np.float32, np.float64)


def check_array(name, a, ndim=None, dtype=FLOATS, contiguous=True):
    """Return `a` unchanged after checking type, dtype, rank and contiguity.

    `dtype` is one dtype or a tuple of accepted dtypes (default: float32/float64).
    """
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, received {type(a).__name__}")
    accepted = dtype if isinstance(dtype, tuple) else (dtype,)
    if dtype is not None and a.dtype not in [np.dtype(d) for d in accepted]:
        want = " or ".join(str(np.dtype(d)) for d in accepted)
        raise ValueError(f"{name}: expected dtype {want}, received {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, received shape {a.shape}")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, received strides {a.strides}")
    return a


def check_shape(name, a, shape):
    """Check `a.shape` against `shape`, where None in `shape` matches any size."""
    ok = a.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, a.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {want}, received {a.shape}")
    return a


def check_pair(name, v, minimum):
    """Normalise an int or a pair of ints to a tuple, each >= minimum."""
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or not all(isinstance(p, (int, np.integer)) for p in pair):
        raise ValueError(f"{name}: expected an int or a pair of ints, received {v!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name}: expected values >= {minimum}, received {v!r}")
    return int(pair[0]), int(pair[1])


def check_positive_int(name, v, minimum=1):
    if not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, received {v!r}")
    return int(v)


def check_probability(name, p):
    if not (0.0 <= float(p) < 1.0):
        raise ValueError(f"{name}: expected a probability in [0, 1), received {p!r}")
    return float(p)


def check_same_dtype(**arrays):
    """All given arrays (None skipped) share one dtype."""
    named = [(k, v) for k, v in arrays.items() if v is not None]
    first_name, first = named[0]
    for k, v in named[1:]:
        if v.dtype != first.dtype:
            raise ValueError(f"{k}: expected dtype {first.dtype} (as {first_name}), received {v.dtype}")
