"""Small helpers shared by the layers: dtype handling, forward caches, error naming."""
import functools

import numpy as np

from bigdl_py.nn import init


def float_dtype(x):
    """float32 and float64 arrays keep their dtype (float64 runs are how backwards are
    checked against finite differences); anything else, e.g. integer pixels, computes
    in float32."""
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)


def as_float(x, dtype=None):
    """x as a C-contiguous float array of `dtype` (default: float_dtype(x))."""
    return np.ascontiguousarray(x, dtype=float_dtype(x) if dtype is None else dtype)


FUSED_ACTIVATIONS = (None, "relu")


def fused_activation(activation):
    """A layer's `activation=` argument checked: None, or "relu" applied in the layer's own pass."""
    if activation not in FUSED_ACTIVATIONS:
        raise ValueError(f"activation: expected None or 'relu', received {activation!r}")
    return activation


def cached(module, value):
    """A value saved by forward, or a ValueError naming the layer if forward has not run."""
    if value is None:
        raise ValueError(f"layer '{module.path}' ({type(module).__name__}): backward called before forward")
    return value


def named_errors(method):
    """Prefix ValueErrors raised by kernels inside forward/backward with the layer path."""
    @functools.wraps(method)
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except ValueError as e:
            if str(e).startswith("layer '"):
                raise
            raise ValueError(f"layer '{self.path}' ({type(self).__name__}): {e}") from e
    return wrapper


def make_params(module, shapes):
    """Create float32 parameters of the given shapes and zero gradients beside them."""
    for key, shape in shapes.items():
        module.params[key] = np.zeros(shape, dtype=np.float32)
        module.grads[key] = np.zeros(shape, dtype=np.float32)


def fill(module, key, initializer, fan_in, fan_out, rng):
    """Draw parameter `key` in place, so views into a flat vector stay bound."""
    target = module.params[key]
    target[...] = init.get(initializer)(target.shape, fan_in, fan_out, rng)


def json_pair(v):
    """An int or (h, w) pair argument as a JSON value (tuples become lists)."""
    return [int(p) for p in v] if isinstance(v, (tuple, list)) else v
