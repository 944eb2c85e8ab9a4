"""Loss functions (criterions): `forward(output, target) -> float`, `backward(output, target) -> grad`.

Criterions are not Modules: they hold no parameters. `reduction="mean"` averages
over samples (elements for the element-wise losses), `"sum"` adds them up; the
distributed engine uses "sum" per partition and divides by the global batch size
once. Computation runs in the output's dtype, so float64 outputs give float64
gradients for finite-difference checks.
"""
import numpy as np

_CRITERIONS = {}


def _register(*aliases):
    def deco(cls):
        for key in (cls.__name__,) + aliases:
            _CRITERIONS[key] = cls
        return cls
    return deco


def get_criterion(name, **kwargs):
    """Build a criterion by class name or alias, e.g. get_criterion("cross_entropy", reduction="sum")."""
    if name not in _CRITERIONS:
        raise ValueError(f"unknown criterion {name!r}; known: {', '.join(sorted(_CRITERIONS))}")
    return _CRITERIONS[name](**kwargs)


def criterion_from_config(config):
    """Rebuild a criterion from its get_config() dictionary."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"expected a criterion config with 'class_name', received {config!r:.200}")
    return get_criterion(config["class_name"], **dict(config.get("config", {})))


def _float_array(name, a):
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
        what = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name}: expected a float32 or float64 numpy array, received {what}")
    return a


def _optional_vector(name, v):
    if v is None:
        return None
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name}: expected a 1-D sequence of finite non-negative numbers, received {v!r:.200}")
    return arr


class Criterion:
    """Base class: holds `reduction` and the config; subclasses define `_loss_and_grad`."""

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{type(self).__name__}: expected reduction 'mean' or 'sum', received {reduction!r}")
        self.reduction = reduction
        self.config = {"reduction": reduction}

    def forward(self, output, target):
        """The loss as a Python float."""
        return self._loss_and_grad(output, target, need_grad=False)[0]

    def backward(self, output, target):
        """d loss / d output, same shape and dtype as output."""
        return self._loss_and_grad(output, target, need_grad=True)[1]

    def forward_backward(self, output, target):
        """(loss, d loss / d output) in one pass: what a training step needs."""
        cls = type(self)
        if cls.forward is not Criterion.forward or cls.backward is not Criterion.backward:
            return self.forward(output, target), self.backward(output, target)  # a subclass's own passes
        return self._loss_and_grad(output, target, need_grad=True)

    def __call__(self, output, target):
        return self.forward(output, target)

    def _loss_and_grad(self, output, target, need_grad):
        raise NotImplementedError(f"{type(self).__name__}._loss_and_grad")

    def get_config(self):
        return {"class_name": type(self).__name__, "config": dict(self.config)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


# ---- classification from class scores ---------------------------------------------
class _ClassCriterion(Criterion):
    """Shared by CrossEntropyLoss and ClassNLLCriterion: class axis last, integer targets."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = _optional_vector(f"{type(self).__name__}: weight", weight)
        self.config["weight"] = None if self.weight is None else self.weight.tolist()

    def _labels(self, output, target):
        name = type(self).__name__
        _float_array(f"{name}: output", output)
        if output.ndim < 2:
            raise ValueError(f"{name}: expected output of shape (N, ..., C) with classes on the last axis, "
                             f"received {output.shape}")
        c = output.shape[-1]
        if self.weight is not None and self.weight.size != c:
            raise ValueError(f"{name}: weight has {self.weight.size} entries but output has {c} classes")
        t = np.asarray(target)
        if t.shape == output.shape[:-1] + (1,):  # a (N, 1) label column
            t = t.reshape(output.shape[:-1])
        if t.shape != output.shape[:-1]:
            raise ValueError(f"{name}: expected target of shape {output.shape[:-1]} (class indices), "
                             f"received {t.shape}")
        if np.issubdtype(t.dtype, np.floating):
            if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
                bad = t[~np.isfinite(t) | (t != np.round(t))]
                raise ValueError(f"{name}: targets must be class indices (whole numbers); received value "
                                 f"{bad.flat[0]!r} ({bad.size} of {t.size} targets are not whole numbers)")
        elif not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"{name}: expected integer class indices as target, received dtype {t.dtype}")
        labels = t.astype(np.int64)
        bad = (labels < 0) | (labels >= c)
        if bad.any():
            values = np.unique(labels[bad])
            raise ValueError(f"{name}: target label {values[0]} is out of range for {c} classes "
                             f"(valid labels 0..{c - 1}); {int(bad.sum())} of {labels.size} targets are bad "
                             f"(bad values: {values[:10].tolist()})")
        return labels.reshape(-1)

    def _reduce(self, per_sample, labels, dtype):
        """Weighted loss and the per-sample factor that scales its gradient."""
        w = np.ones(labels.size) if self.weight is None else self.weight[labels]
        total = float(np.dot(w, per_sample))
        if self.reduction == "sum":
            return total, w.astype(dtype)
        denom = w.sum()  # torch: a weighted mean divides by the sum of the weights
        return total / denom if denom else float("nan"), (w / denom if denom else w * np.nan).astype(dtype)


@_register("CrossEntropy", "cross_entropy")
class CrossEntropyLoss(_ClassCriterion):
    """Softmax cross-entropy from logits (torch.nn.CrossEntropyLoss).

    Args:
        weight: optional per-class weights (C,); the mean divides by the sum of the
            weights of the targets, as in torch.
        reduction: "mean" or "sum".
    Shape: output (N, C) or (N, ..., C) logits; target (N,) or (N, ...) class
        indices as an int or whole-valued float array.
    """

    def _loss_and_grad(self, output, target, need_grad):
        labels = self._labels(output, target)
        z = output.reshape(-1, output.shape[-1])
        shifted = z - z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(labels.size)
        per_sample = np.log(s[:, 0]) - shifted[rows, labels]
        loss, scale = self._reduce(per_sample, labels, output.dtype)
        if not need_grad:
            return loss, None
        grad = e / s
        grad[rows, labels] -= 1
        grad *= scale[:, None]
        return loss, grad.reshape(output.shape)


@_register("NLLLoss", "nll")
class ClassNLLCriterion(_ClassCriterion):
    """Negative log-likelihood from log-probabilities (torch.nn.NLLLoss, BigDL ClassNLLCriterion).

    Args:
        weight: optional per-class weights (C,); weighted mean as in torch.
        reduction: "mean" or "sum".
    Shape: output (N, C) or (N, ..., C) log-probabilities (e.g. from LogSoftMax);
        target (N,) or (N, ...) class indices.
    """

    def _loss_and_grad(self, output, target, need_grad):
        labels = self._labels(output, target)
        z = output.reshape(-1, output.shape[-1])
        rows = np.arange(labels.size)
        loss, scale = self._reduce(-z[rows, labels].astype(np.float64), labels, output.dtype)
        if not need_grad:
            return loss, None
        grad = np.zeros_like(z)
        grad[rows, labels] = -scale
        return loss, grad.reshape(output.shape)


NLLLoss = ClassNLLCriterion


# ---- element-wise losses ----------------------------------------------------------
class _ElementwiseCriterion(Criterion):
    """Element-wise loss l(output, target) reduced by mean over all elements or sum."""

    def _pair(self, output, target):
        name = type(self).__name__
        _float_array(f"{name}: output", output)
        t = np.asarray(target)
        if t.shape != output.shape:
            raise ValueError(f"{name}: expected target of the output's shape {output.shape}, received {t.shape}")
        if not (np.issubdtype(t.dtype, np.floating) or np.issubdtype(t.dtype, np.integer) or t.dtype == bool):
            raise ValueError(f"{name}: expected a numeric target, received dtype {t.dtype}")
        return t.astype(output.dtype, copy=False)

    def _finish(self, loss_elems, grad_elems, output, need_grad):
        n = output.size
        loss = float(loss_elems.sum(dtype=np.float64))
        if self.reduction == "mean":
            loss = loss / n if n else float("nan")
        if not need_grad:
            return loss, None
        if self.reduction == "mean":
            grad_elems = grad_elems / output.dtype.type(n) if n else grad_elems
        return loss, grad_elems.astype(output.dtype, copy=False)


@_register("MSE", "mse")
class MSELoss(_ElementwiseCriterion):
    """Mean squared error (torch.nn.MSELoss). Shape: output and target of one shape."""

    def _loss_and_grad(self, output, target, need_grad):
        d = output - self._pair(output, target)
        return self._finish(d * d, 2 * d if need_grad else None, output, need_grad)


@_register("L1", "l1")
class L1Loss(_ElementwiseCriterion):
    """Mean absolute error (torch.nn.L1Loss). Shape: output and target of one shape."""

    def _loss_and_grad(self, output, target, need_grad):
        d = output - self._pair(output, target)
        return self._finish(np.abs(d), np.sign(d) if need_grad else None, output, need_grad)


@_register("SmoothL1", "smooth_l1")
class SmoothL1Loss(_ElementwiseCriterion):
    """Huber-like loss (torch.nn.SmoothL1Loss): 0.5 d^2 / beta if |d| < beta else |d| - beta / 2.

    Args:
        beta: the switch point (>= 0; 0 gives L1).
        reduction: "mean" or "sum".
    """

    def __init__(self, beta=1.0, reduction="mean"):
        super().__init__(reduction)
        if not float(beta) >= 0:
            raise ValueError(f"SmoothL1Loss: expected beta >= 0, received {beta!r}")
        self.beta = float(beta)
        self.config["beta"] = self.beta

    def _loss_and_grad(self, output, target, need_grad):
        d = output - self._pair(output, target)
        a = np.abs(d)
        small = a < self.beta
        beta = self.beta or 1.0  # beta == 0 never takes the quadratic branch
        loss = np.where(small, 0.5 * d * d / beta, a - 0.5 * self.beta)
        grad = np.where(small, d / beta, np.sign(d)) if need_grad else None
        return self._finish(loss, grad, output, need_grad)


@_register("BCEWithLogits", "bce_with_logits")
class BCEWithLogitsLoss(_ElementwiseCriterion):
    """Binary cross-entropy on logits (torch.nn.BCEWithLogitsLoss), numerically stable.

    loss = weight * (pos_weight * y * softplus(-x) + (1 - y) * softplus(x))

    Args:
        weight: optional per-class weights (C,) broadcast over the last axis.
        pos_weight: optional weights (C,) of the positive term, e.g. n_neg / n_pos
            per class for imbalanced data (risk scoring).
        reduction: "mean" (over all elements) or "sum".
    Shape: output logits and target probabilities in [0, 1] of one shape (N, ..., C).
    """

    def __init__(self, weight=None, pos_weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = _optional_vector("BCEWithLogitsLoss: weight", weight)
        self.pos_weight = _optional_vector("BCEWithLogitsLoss: pos_weight", pos_weight)
        self.config["weight"] = None if self.weight is None else self.weight.tolist()
        self.config["pos_weight"] = None if self.pos_weight is None else self.pos_weight.tolist()

    def _loss_and_grad(self, output, target, need_grad):
        y = self._pair(output, target)
        if y.size and (np.nanmin(y) < 0 or np.nanmax(y) > 1 or np.isnan(y).any()):
            bad = (y < 0) | (y > 1) | np.isnan(y)
            raise ValueError(f"BCEWithLogitsLoss: targets must be probabilities in [0, 1]; received value "
                             f"{y[bad].flat[0]!r} ({int(bad.sum())} of {y.size} targets are bad)")
        for what, v in (("weight", self.weight), ("pos_weight", self.pos_weight)):
            if v is not None and v.size not in (1, output.shape[-1] if output.ndim else 1):
                raise ValueError(f"BCEWithLogitsLoss: {what} has {v.size} entries but output's last axis "
                                 f"has {output.shape[-1]}")
        dt = output.dtype
        x = output
        pw = dt.type(1) if self.pos_weight is None else self.pos_weight.astype(dt)
        w = dt.type(1) if self.weight is None else self.weight.astype(dt)
        sp_pos = np.logaddexp(dt.type(0), x)  # softplus(x) = -log(1 - sigmoid(x))
        sp_neg = sp_pos - x  # softplus(-x) = -log(sigmoid(x))
        loss = w * (pw * y * sp_neg + (1 - y) * sp_pos)
        grad = None
        if need_grad:
            sig = np.exp(x - sp_pos)  # sigmoid(x) without overflow
            grad = w * (pw * y * (sig - 1) + (1 - y) * sig)
        return self._finish(loss, grad, output, need_grad)
