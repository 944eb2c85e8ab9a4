"""Optimizers as pure in-place updates on a slice of the flat parameter vector.

    state = opt.init_state(n)                       # dict of float32 arrays of length n
    opt.update(w, g, state, lr, step, segments)     # w, state updated in place

The update is elementwise (LARS: per segment), so running it on the whole vector or
on consecutive slices with the matching state slices gives the same numbers: that is
how a shard of the vector is updated on a Spark executor. The learning rate is not
state: the engine passes it every step, from a schedule. `step` counts from 1.
Every formula follows torch.optim (single-tensor path) operation by operation,
including where the weight decay enters; state keys use torch's names.
"""
import math

import numpy as np

from bigdl_py.kernels._checks import check_array
from bigdl_py.optim._config import Configurable, Registry
from bigdl_py.optim.clipping import global_norm_sq

OPTIMIZERS = Registry("optimizer")


def _at_least(label, value, low=0.0):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {label}: {value!r}") from None
    if not v >= low:  # also rejects nan
        raise ValueError(f"Invalid {label}: {value}")
    return v


def _betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: expected a pair (beta1, beta2), received {betas!r}")
    for i, b in enumerate(betas):
        if not 0.0 <= _at_least(f"beta parameter at index {i}", b) < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    return [float(betas[0]), float(betas[1])]


class Optimizer(Configurable):
    """Base class: argument checks around `_update`, state layout from `_state_keys`."""

    _registry = OPTIMIZERS

    def _state_keys(self):
        return []

    def _state_fill(self, key):
        return 0.0

    def init_state(self, n, dtype=np.float32):
        """Fresh state for a slice of n values: {name: array of length n} ({} if stateless)."""
        n = int(n)
        return {k: np.full(n, self._state_fill(k), dtype=dtype) for k in self._state_keys()}

    def update(self, w, g, state, lr, step, segments=None, offset=0):
        """One step on a slice, in place on `w` and `state`.

        Args:
            w: weights, 1-D float array (a slice of the flat vector).
            g: gradient of the same shape and dtype; not modified.
            state: dict from init_state(len(w)) (or the matching slices of a bigger one).
            lr: learning rate for this step, >= 0.
            step: 1 for the first update, then 2, 3, ...
            segments: int array [0, b1, ..., len(w)] of layer boundaries in this slice;
                only LARS uses it.
            offset: where the slice starts in the flat vector; only LARS's `exclude` uses it.
        """
        self._check(w, g, state, lr, step)
        self._update(w, g, state, float(lr), int(step), segments)

    def _check(self, w, g, state, lr, step):
        check_array("w", w, ndim=1)
        check_array("g", g, ndim=1)
        if g.shape != w.shape or g.dtype != w.dtype:
            raise ValueError(f"g: expected shape {w.shape} and dtype {w.dtype} (as w), "
                             f"received {g.shape} {g.dtype}")
        if sorted(state) != sorted(self._state_keys()):
            raise ValueError(f"state: expected keys {sorted(self._state_keys())} for {type(self).__name__}, "
                             f"received {sorted(state)}")
        for k, s in state.items():
            check_array(f"state[{k!r}]", s, ndim=1, dtype=w.dtype)
            if s.shape != w.shape:
                raise ValueError(f"state[{k!r}]: expected shape {w.shape} (as w), received {s.shape}")
        if not float(lr) >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"Invalid step: expected an integer >= 1 (steps count from 1), received {step!r}")

    def _update(self, w, g, state, lr, step, segments):
        raise NotImplementedError


@OPTIMIZERS.register
class LARS(Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017) on top of momentum SGD.

    Per segment (layer): local_lr = trust_coefficient * ||w|| / (||g|| + wd * ||w|| + eps),
    or 1 when ||w|| or ||g|| is 0; then d = local_lr * (g + wd * w) goes through
    torch-style momentum SGD: buf = momentum * buf + (1 - dampening) * d, w -= lr * buf.
    With trust_coefficient=0 the ratio is off and this is exactly torch.optim.SGD.

    `exclude`: [start, stop) ranges of the flat vector whose segments skip the trust
    ratio and the weight decay (plain momentum SGD at the global lr): You et al.'s
    practice for biases and BatchNorm's scale and shift, which `lars_exclude(model)`
    lists. A BatchNorm shift starts at 0, where the ratio would pin its steps to its
    own tiny norm for the rest of training.

    A segment split over two shards needs the norms of the whole segment: sum
    `segment_norms_sq` over the shards, turn them into `trust_ratios` and pass those
    to `update(..., trust_ratios=...)`.
    """

    def __init__(self, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0,
                 trust_coefficient=0.001, eps=1e-8, exclude=()):
        momentum = _at_least("momentum value", momentum)
        dampening = _at_least("dampening value", dampening)
        weight_decay = _at_least("weight_decay value", weight_decay)
        trust_coefficient = _at_least("trust_coefficient value", trust_coefficient)
        eps = _at_least("epsilon value", eps)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        # The math reads _hp; SGD serialises only its own subset of it as config.
        self._hp = dict(momentum=momentum, dampening=dampening, nesterov=bool(nesterov),
                        weight_decay=weight_decay, trust_coefficient=trust_coefficient, eps=eps,
                        exclude=_ranges(exclude))
        self.config = dict(self._hp)

    def _state_keys(self):
        return ["momentum_buffer"] if self._hp["momentum"] != 0 else []

    def segment_norms_sq(self, w, g, segments=None):
        """(sum w^2, sum g^2) per segment, float64 arrays: partials to add across shards."""
        bounds = _segments(segments, len(w))
        w_sq = np.array([global_norm_sq(w[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        g_sq = np.array([global_norm_sq(g[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        return w_sq, g_sq

    def trust_ratios(self, w_sq, g_sq):
        """local_lr per segment from whole-segment squared norms (1 where a norm is 0)."""
        c = self._hp
        w_norm, g_norm = np.sqrt(np.asarray(w_sq, np.float64)), np.sqrt(np.asarray(g_sq, np.float64))
        ratio = np.ones_like(w_norm)
        ok = (w_norm > 0) & (g_norm > 0)
        ratio[ok] = c["trust_coefficient"] * w_norm[ok] / (g_norm[ok] + c["weight_decay"] * w_norm[ok] + c["eps"])
        return ratio

    def update(self, w, g, state, lr, step, segments=None, offset=0, trust_ratios=None):
        """Optimizer.update; `trust_ratios` (one per segment) replaces the slice's own norms."""
        self._check(w, g, state, lr, step)
        self._update(w, g, state, float(lr), int(step), segments, offset, trust_ratios)

    def _update(self, w, g, state, lr, step, segments, offset=0, ratios=None):
        c = self._hp
        d = g + c["weight_decay"] * w if c["weight_decay"] != 0 else g
        if c["trust_coefficient"] != 0 or c["exclude"]:
            bounds = _segments(segments, len(w))
            if ratios is None:
                ratios = (self.trust_ratios(*self.segment_norms_sq(w, g, bounds)) if c["trust_coefficient"] != 0
                          else np.ones(len(bounds) - 1))
            elif len(ratios) != len(bounds) - 1:
                raise ValueError(f"trust_ratios: expected {len(bounds) - 1} values (one per segment), "
                                 f"received {len(ratios)}")
            d = d.copy() if d is g else d
            for a, b, r in zip(bounds[:-1], bounds[1:], ratios):
                if any(lo <= offset + a < hi for lo, hi in c["exclude"]):
                    d[a:b] = g[a:b]
                else:
                    d[a:b] *= r
        if c["momentum"] != 0:
            buf = state["momentum_buffer"]
            if step == 1:
                buf[:] = d  # torch starts the buffer at the first gradient, undamped
            else:
                buf *= c["momentum"]
                buf += d if c["dampening"] == 0 else (1.0 - c["dampening"]) * d
            d = d + c["momentum"] * buf if c["nesterov"] else buf
        w -= lr * d


@OPTIMIZERS.register
class SGD(LARS):
    """torch.optim.SGD: LARS with the trust ratio switched off."""

    def __init__(self, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(momentum=momentum, dampening=dampening, nesterov=nesterov,
                         weight_decay=weight_decay, trust_coefficient=0.0)
        self.config = {k: self._hp[k] for k in ("momentum", "dampening", "nesterov", "weight_decay")}


def _ranges(exclude):
    """`exclude` as a list of [start, stop) integer pairs (a JSON-friendly config value)."""
    try:
        ranges = [[int(a), int(b)] for a, b in exclude]
    except (TypeError, ValueError):
        raise ValueError(f"exclude: expected [start, stop) pairs of the flat vector, received {exclude!r}") from None
    if any(not 0 <= a < b for a, b in ranges):
        raise ValueError(f"exclude: expected 0 <= start < stop in every pair, received {exclude!r}")
    return ranges


def lars_exclude(model):
    """[start, stop) of every parameter with at most one dimension (biases, BatchNorm's
    scale and shift): the segments LARS's usual practice leaves out of the trust ratio."""
    shapes = dict(model.named_parameters())
    return [[lo, hi] for name, lo, hi in model.parameter_segments() if shapes[name].ndim <= 1]


def _segments(segments, n):
    if segments is None:
        return np.array([0, n])
    bounds = np.asarray(segments)
    if (bounds.ndim != 1 or len(bounds) < 2 or not np.issubdtype(bounds.dtype, np.integer)
            or bounds[0] != 0 or bounds[-1] != n or np.any(np.diff(bounds) < 0)):
        raise ValueError(f"segments: expected non-decreasing integers from 0 to {n}, received {segments!r}")
    return bounds


@OPTIMIZERS.register
class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient), optional AMSGrad."""

    _decoupled = False

    def __init__(self, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        self.config = dict(betas=_betas(betas), eps=_at_least("epsilon value", eps),
                           weight_decay=_at_least("weight_decay value", weight_decay), amsgrad=bool(amsgrad))

    def _state_keys(self):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if self.config["amsgrad"] else [])

    def _update(self, w, g, state, lr, step, segments):
        c = self.config
        beta1, beta2 = c["betas"]
        if c["weight_decay"] != 0:
            if self._decoupled:
                w *= 1.0 - lr * c["weight_decay"]
            else:
                g = g + c["weight_decay"] * w
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1.0 - beta1) * (g - m)  # torch's lerp_
        v *= beta2
        v += (1.0 - beta2) * g * g
        if c["amsgrad"]:
            v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        step_size = lr / (1.0 - beta1 ** step)
        denom = np.sqrt(v)
        denom /= math.sqrt(1.0 - beta2 ** step)
        denom += c["eps"]
        delta = -step_size * m
        delta /= denom
        w += delta


@OPTIMIZERS.register
class AdamW(Adam):
    """torch.optim.AdamW: weight decay applied to the weights, w *= 1 - lr * wd."""

    _decoupled = True

    def __init__(self, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False):
        super().__init__(betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


@OPTIMIZERS.register
class Adagrad(Optimizer):
    """torch.optim.Adagrad: lr / (1 + (step - 1) * lr_decay), accumulated squares."""

    def __init__(self, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        self.config = dict(lr_decay=_at_least("lr_decay value", lr_decay),
                           weight_decay=_at_least("weight_decay value", weight_decay),
                           initial_accumulator_value=_at_least("initial_accumulator_value value",
                                                               initial_accumulator_value),
                           eps=_at_least("epsilon value", eps))

    def _state_keys(self):
        return ["sum"]

    def _state_fill(self, key):
        return self.config["initial_accumulator_value"]

    def _update(self, w, g, state, lr, step, segments):
        c = self.config
        if c["weight_decay"] != 0:
            g = g + c["weight_decay"] * w
        clr = lr / (1.0 + (step - 1) * c["lr_decay"])
        s = state["sum"]
        s += g * g
        std = np.sqrt(s)
        std += c["eps"]
        delta = -clr * g
        delta /= std
        w += delta


@OPTIMIZERS.register
class RMSprop(Optimizer):
    """torch.optim.RMSprop, optionally centered and with momentum."""

    def __init__(self, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        self.config = dict(alpha=_at_least("alpha value", alpha), eps=_at_least("epsilon value", eps),
                           weight_decay=_at_least("weight_decay value", weight_decay),
                           momentum=_at_least("momentum value", momentum), centered=bool(centered))

    def _state_keys(self):
        c = self.config
        return (["square_avg"] + (["momentum_buffer"] if c["momentum"] > 0 else [])
                + (["grad_avg"] if c["centered"] else []))

    def _update(self, w, g, state, lr, step, segments):
        c = self.config
        alpha = c["alpha"]
        if c["weight_decay"] != 0:
            g = g + c["weight_decay"] * w
        sq = state["square_avg"]
        sq *= alpha
        sq += (1.0 - alpha) * g * g
        if c["centered"]:
            ga = state["grad_avg"]
            ga += (1.0 - alpha) * (g - ga)  # torch's lerp_
            avg = np.sqrt(sq - ga * ga)
        else:
            avg = np.sqrt(sq)
        avg += c["eps"]
        if c["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= c["momentum"]
            buf += g / avg
            w -= lr * buf
        else:
            delta = -lr * g
            delta /= avg
            w += delta


def optimizers_get(identifier, **kwargs):
    """Resolve "sgd" / "adam" / ... (plus keyword arguments), a config dict or an instance."""
    return OPTIMIZERS.get(identifier, **kwargs)
