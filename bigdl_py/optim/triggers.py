"""Triggers: `trigger(state) -> bool` decides when to stop, validate or checkpoint.

The engine fills a `TrainingState` after every iteration and asks its triggers.
Triggers keep no state of their own, so they can be rebuilt from config at any point.
"""
import dataclasses

import numpy as np

from bigdl_py.optim._config import Configurable, Registry

TRIGGERS = Registry("trigger")


@dataclasses.dataclass
class TrainingState:
    """Where training stands after an iteration.

    Attributes:
        epoch: epochs completed so far (0 during the first epoch).
        iteration: iterations (optimizer steps) completed so far.
        epoch_finished: True right after the last iteration of an epoch.
        loss: training loss of the last iteration, or None.
        score: last validation score, or None before the first validation.
        since_best: validations since the early-stopping metric last improved
            (0 right after an improvement), or None without early stopping.
    """
    epoch: int = 0
    iteration: int = 0
    epoch_finished: bool = False
    loss: float = None
    score: float = None
    since_best: int = None


def _count(label, n):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"Invalid {label}: expected an integer >= 1, received {n!r}")
    return int(n)


def _threshold(label, x):
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {label}: expected a number, received {x!r}") from None


class Trigger(Configurable):
    """Base class; `a | b` and `a & b` build Or / And."""

    _registry = TRIGGERS

    def __call__(self, state):
        raise NotImplementedError

    def __or__(self, other):
        return Or(self, other)

    def __and__(self, other):
        return And(self, other)


@TRIGGERS.register
class MaxEpoch(Trigger):
    """True once n epochs are complete."""

    def __init__(self, n):
        self.config = dict(n=_count("max epoch", n))

    def __call__(self, state):
        return state.epoch >= self.config["n"]


@TRIGGERS.register
class MaxIteration(Trigger):
    """True once n iterations are complete."""

    def __init__(self, n):
        self.config = dict(n=_count("max iteration", n))

    def __call__(self, state):
        return state.iteration >= self.config["n"]


@TRIGGERS.register
class EveryEpoch(Trigger):
    """True at the end of every epoch."""

    def __init__(self):
        self.config = {}

    def __call__(self, state):
        return bool(state.epoch_finished)


@TRIGGERS.register
class SeveralIteration(Trigger):
    """True after every n-th iteration (n, 2n, 3n, ...)."""

    def __init__(self, n):
        self.config = dict(n=_count("interval", n))

    def __call__(self, state):
        return state.iteration > 0 and state.iteration % self.config["n"] == 0


@TRIGGERS.register
class MinLoss(Trigger):
    """True once the training loss is below `min_loss`."""

    def __init__(self, min_loss):
        self.config = dict(min_loss=_threshold("min_loss", min_loss))

    def __call__(self, state):
        return state.loss is not None and state.loss < self.config["min_loss"]


@TRIGGERS.register
class MaxScore(Trigger):
    """True once the validation score is above `max_score`."""

    def __init__(self, max_score):
        self.config = dict(max_score=_threshold("max_score", max_score))

    def __call__(self, state):
        return state.score is not None and state.score > self.config["max_score"]


@TRIGGERS.register
class NoImprovement(Trigger):
    """True once `patience` validations in a row did not improve the early-stopping metric."""

    def __init__(self, patience):
        self.config = dict(patience=_count("patience", patience))

    def __call__(self, state):
        return state.since_best is not None and state.since_best >= self.config["patience"]


class _Combined(Trigger):
    def __init__(self, *triggers):
        if len(triggers) < 2:
            raise ValueError(f"Invalid triggers: {type(self).__name__} needs at least 2, received {len(triggers)}")
        self.triggers = [TRIGGERS.get(t) for t in triggers]

    @property
    def config(self):
        return dict(triggers=[t.get_config() for t in self.triggers])

    @classmethod
    def _from_inner(cls, inner):
        return cls(*inner["triggers"])


@TRIGGERS.register
class Or(_Combined):
    """True when any of the triggers is."""

    def __call__(self, state):
        return any(t(state) for t in self.triggers)


@TRIGGERS.register
class And(_Combined):
    """True when all of the triggers are."""

    def __call__(self, state):
        return all(t(state) for t in self.triggers)


def triggers_get(identifier, **kwargs):
    """Resolve "max_epoch" / "every_epoch" / ... (plus keyword arguments), a config dict or an instance."""
    return TRIGGERS.get(identifier, **kwargs)
