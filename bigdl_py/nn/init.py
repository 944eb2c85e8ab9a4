"""Weight initialisers, resolved by name (Keras style) and serialisable to JSON.

An initialiser is called as `init(shape, fan_in, fan_out, rng)` and returns a
float32 array. The layer computes the fans for its own weight layout (see `fans`),
so the same initialiser works for Conv2d's HWIO and Linear's (out, in) weights,
and a bias can be drawn with its weight's fans (PyTorch's default does that).

Example:
    >>> from bigdl_py.nn import init
    >>> init.manual_seed(0)
    >>> w = init.get("xavier_uniform")((8, 4), *init.fans((8, 4), "oi"))
"""
import math

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator used when a layer is built or reset without an explicit rng."""
    global _rng
    _rng = np.random.default_rng(seed)


def default_rng():
    """The module-level generator (reseeded by `manual_seed`)."""
    return _rng


def fans(shape, layout, groups=1):
    """(fan_in, fan_out) of a weight in one of our layouts.

    Args:
        shape: the weight's shape.
        layout: "oi" for (out, in) weights (Linear, recurrent, embedding) or "hwio"
            for (KH, KW, Cin/groups, Cout) convolution weights.
        groups: convolution groups; each output channel sees Cin/groups inputs and
            each input channel feeds Cout/groups outputs.
    """
    if layout == "oi":
        if len(shape) != 2:
            raise ValueError(f"shape: expected 2 dimensions (out, in) for layout 'oi', received {tuple(shape)}")
        return int(shape[1]), int(shape[0])
    if layout == "hwio":
        if len(shape) != 4:
            raise ValueError(f"shape: expected 4 dimensions (KH, KW, Cin/groups, Cout) for layout 'hwio', "
                             f"received {tuple(shape)}")
        kh, kw, cin_per_group, cout = shape
        return int(kh * kw * cin_per_group), int(kh * kw * cout // groups)
    raise ValueError(f"layout: expected 'oi' or 'hwio', received {layout!r}")


class Initializer:
    """Base class: `config` holds the constructor arguments (JSON values)."""

    name = None

    def __init__(self, **config):
        self.config = config

    def __call__(self, shape, fan_in, fan_out, rng=None):
        rng = _rng if rng is None else rng
        return np.asarray(self.sample(tuple(shape), fan_in, fan_out, rng), dtype=np.float32)

    def sample(self, shape, fan_in, fan_out, rng):
        raise NotImplementedError

    def get_config(self):
        return dict(self.config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


def _positive_fan(name, fan):
    if fan <= 0:
        raise ValueError(f"{name}: expected a positive fan, received {fan}")
    return fan


class Zeros(Initializer):
    name = "zeros"

    def sample(self, shape, fan_in, fan_out, rng):
        return np.zeros(shape)


class Ones(Initializer):
    name = "ones"

    def sample(self, shape, fan_in, fan_out, rng):
        return np.ones(shape)


class Constant(Initializer):
    name = "constant"

    def __init__(self, value=0.0):
        super().__init__(value=float(value))

    def sample(self, shape, fan_in, fan_out, rng):
        return np.full(shape, self.config["value"])


class Normal(Initializer):
    """N(mean, std^2); defaults as torch.nn.init.normal_."""

    name = "normal"

    def __init__(self, mean=0.0, std=1.0):
        super().__init__(mean=float(mean), std=float(std))

    def sample(self, shape, fan_in, fan_out, rng):
        return rng.normal(self.config["mean"], self.config["std"], shape)


class Uniform(Initializer):
    """U(low, high); defaults as torch.nn.init.uniform_."""

    name = "uniform"

    def __init__(self, low=0.0, high=1.0):
        super().__init__(low=float(low), high=float(high))

    def sample(self, shape, fan_in, fan_out, rng):
        return rng.uniform(self.config["low"], self.config["high"], shape)


class XavierUniform(Initializer):
    """U(+-gain * sqrt(6 / (fan_in + fan_out))) (Glorot & Bengio 2010)."""

    name = "xavier_uniform"

    def __init__(self, gain=1.0):
        super().__init__(gain=float(gain))

    def sample(self, shape, fan_in, fan_out, rng):
        bound = self.config["gain"] * math.sqrt(6.0 / _positive_fan("fan_in + fan_out", fan_in + fan_out))
        return rng.uniform(-bound, bound, shape)


class XavierNormal(Initializer):
    """N(0, gain^2 * 2 / (fan_in + fan_out))."""

    name = "xavier_normal"

    def __init__(self, gain=1.0):
        super().__init__(gain=float(gain))

    def sample(self, shape, fan_in, fan_out, rng):
        std = self.config["gain"] * math.sqrt(2.0 / _positive_fan("fan_in + fan_out", fan_in + fan_out))
        return rng.normal(0.0, std, shape)


def _kaiming_std(a, fan):
    # Gain of leaky_relu with slope a (a=0: ReLU), as torch.nn.init.calculate_gain.
    return math.sqrt(2.0 / (1.0 + a * a)) / math.sqrt(fan)


class _Kaiming(Initializer):
    def __init__(self, a=0.0, mode="fan_in"):
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"mode: expected 'fan_in' or 'fan_out', received {mode!r}")
        super().__init__(a=float(a), mode=mode)

    def _std(self, fan_in, fan_out):
        fan = fan_in if self.config["mode"] == "fan_in" else fan_out
        return _kaiming_std(self.config["a"], _positive_fan(self.config["mode"], fan))


class KaimingUniform(_Kaiming):
    """U(+-sqrt(3) * std), std = sqrt(2 / (1 + a^2) / fan) (He et al. 2015)."""

    name = "kaiming_uniform"

    def sample(self, shape, fan_in, fan_out, rng):
        bound = math.sqrt(3.0) * self._std(fan_in, fan_out)
        return rng.uniform(-bound, bound, shape)


class KaimingNormal(_Kaiming):
    """N(0, std^2), std = sqrt(2 / (1 + a^2) / fan)."""

    name = "kaiming_normal"

    def sample(self, shape, fan_in, fan_out, rng):
        return rng.normal(0.0, self._std(fan_in, fan_out), shape)


class TorchDefault(Initializer):
    """U(+-1/sqrt(fan_in)): PyTorch's default for Linear/Conv weights and biases.

    It equals kaiming_uniform with a=sqrt(5); for a bias, pass the weight's fan_in.
    """

    name = "torch_default"

    def sample(self, shape, fan_in, fan_out, rng):
        bound = 1.0 / math.sqrt(_positive_fan("fan_in", fan_in))
        return rng.uniform(-bound, bound, shape)


_CLASSES = {cls.name: cls for cls in (Zeros, Ones, Constant, Normal, Uniform, XavierUniform, XavierNormal,
                                      KaimingUniform, KaimingNormal, TorchDefault)}
_ALIASES = {"glorot_uniform": "xavier_uniform", "glorot_normal": "xavier_normal",
            "he_uniform": "kaiming_uniform", "he_normal": "kaiming_normal"}


def get(identifier):
    """Resolve an initialiser from a name, a {"name": ..., **args} dict, or an instance.

    Names: zeros, ones, constant, normal, uniform, xavier_uniform (glorot_uniform),
    xavier_normal (glorot_normal), kaiming_uniform (he_uniform), kaiming_normal
    (he_normal), torch_default.
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        name, args = identifier, {}
    elif isinstance(identifier, dict) and isinstance(identifier.get("name"), str):
        args = {k: v for k, v in identifier.items() if k != "name"}
        name = identifier["name"]
    else:
        raise ValueError(f"initializer: expected a name, a dict with 'name', or an Initializer, "
                         f"received {identifier!r}")
    name = _ALIASES.get(name, name)
    if name not in _CLASSES:
        known = ", ".join(sorted(set(_CLASSES) | set(_ALIASES)))
        raise ValueError(f"initializer: unknown name {identifier!r}; known names: {known}")
    try:
        return _CLASSES[name](**args)
    except TypeError as e:
        raise ValueError(f"initializer {name!r}: bad arguments {args!r} ({e})") from None


def serialize(initializer):
    """JSON form of an initialiser: its name, or {"name": ..., **args} when an argument is not the default."""
    init = get(initializer)
    return init.name if init.config == type(init)().config else dict(init.config, name=init.name)
