"""Shape-checked tensor utilities: concat/split, NCHW <-> NHWC, sum, scale, add.

Results are always fresh C-contiguous arrays, so they can feed any kernel.
"""
import numpy as np

from ._checks import check_array, check_same_dtype, check_shape


def _axis(name, axis, ndim):
    """axis normalised to [0, ndim)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"{name}: expected an int in [{-ndim}, {ndim}), received {axis!r}")
    return int(axis) % ndim


def concat(arrays, axis):
    """Join arrays along axis; all other sizes and the dtype must agree.

    Args:
        arrays: non-empty list of float32 (or float64) arrays of one rank.
        axis: int, negative counts from the end.
    """
    if not isinstance(arrays, (list, tuple)) or not arrays:
        raise ValueError(f"arrays: expected a non-empty list of arrays, received {arrays!r}")
    for i, a in enumerate(arrays):
        check_array(f"arrays[{i}]", a, contiguous=False)
    first = arrays[0]
    ax = _axis("axis", axis, first.ndim)
    want = tuple(None if d == ax else s for d, s in enumerate(first.shape))
    for i, a in enumerate(arrays[1:], start=1):
        check_shape(f"arrays[{i}]", a, want)
    check_same_dtype(**{f"arrays[{i}]": a for i, a in enumerate(arrays)})
    return np.concatenate(arrays, axis=ax)


def split(x, sizes, axis):
    """Cut x along axis into consecutive pieces of the given sizes (summing to x.shape[axis]).

    Returns:
        list of C-contiguous arrays.
    """
    check_array("x", x, contiguous=False)
    ax = _axis("axis", axis, x.ndim)
    if (not isinstance(sizes, (list, tuple)) or not sizes
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0
                       for s in sizes)):
        raise ValueError(f"sizes: expected a non-empty list of ints >= 0, received {sizes!r}")
    if sum(sizes) != x.shape[ax]:
        raise ValueError(
            f"sizes: expected sizes summing to {x.shape[ax]} (x.shape[{axis}]), received {list(sizes)} "
            f"summing to {sum(sizes)}"
        )
    cuts = np.cumsum(sizes)[:-1]
    return [np.ascontiguousarray(part) for part in np.split(x, cuts, axis=ax)]


def nchw_to_nhwc(x):
    """(N, C, H, W) -> (N, H, W, C), contiguous; any dtype (e.g. uint8 images)."""
    check_array("x", x, ndim=4, dtype=None, contiguous=False)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nhwc_to_nchw(x):
    """(N, H, W, C) -> (N, C, H, W), contiguous; any dtype."""
    check_array("x", x, ndim=4, dtype=None, contiguous=False)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def reduce_sum(x, axis=None):
    """Sum over axis (None: all; int or tuple of ints), accumulated in float64.

    Returns an array of x's dtype (0-d when axis is None).
    """
    check_array("x", x, contiguous=False)
    if axis is not None:
        axes = axis if isinstance(axis, tuple) else (axis,)
        axes = tuple(_axis("axis", a, x.ndim) for a in axes)
        if len(set(axes)) != len(axes):
            raise ValueError(f"axis: expected distinct axes, received {axis!r}")
        axis = axes
    return np.array(np.sum(x, axis=axis, dtype=np.float64), dtype=x.dtype, order="C")


def scale(x, alpha):
    """alpha * x as a new array of x's dtype."""
    check_array("x", x, contiguous=False)
    if (isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating))
            or not np.isfinite(alpha)):
        raise ValueError(f"alpha: expected a finite number, received {alpha!r}")
    return np.multiply(x, x.dtype.type(alpha), order="C")


def add(a, b):
    """a + b for arrays of the same shape and dtype (no broadcasting)."""
    check_array("a", a, contiguous=False)
    check_array("b", b, contiguous=False)
    check_shape("b", b, a.shape)
    check_same_dtype(a=a, b=b)
    return np.add(a, b, order="C")
