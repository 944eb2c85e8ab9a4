"""Learning-rate schedules: `lr = schedule(step, epoch, base_lr)`.

`step` is the number of the update about to run (1 for the first), `epoch` the index
of the current epoch (0 for the first). Schedules are pure: calling one changes
nothing, so the engine can ask for the lr of any step (resume, retried task).
Step-based schedules see t = step - 1 updates done, which is where
torch.optim.lr_scheduler stands after t calls to `scheduler.step()`; epoch-based ones
see the epoch. The one stateful schedule is `Plateau`, whose state the engine
advances with `observe(metric)` and which travels in its config.
"""
import bisect
import dataclasses
import math

import numpy as np

from bigdl_py.optim._config import Configurable, Registry

SCHEDULES = Registry("schedule")


def _positive_int(label, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Invalid {label}: expected an integer >= 1, received {value!r}")
    return int(value)


def _number(label, value, low=None, high=None, low_open=False, high_open=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {label}: {value!r}") from None
    bad = math.isnan(v)
    bad = bad or (low is not None and (v <= low if low_open else v < low))
    bad = bad or (high is not None and (v >= high if high_open else v > high))
    if bad:
        raise ValueError(f"Invalid {label}: {value}")
    return v


class Schedule(Configurable):
    """Base class: checks (step, epoch, base_lr) and calls `_lr`."""

    _registry = SCHEDULES

    def __call__(self, step, epoch, base_lr):
        if not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"step: expected an integer >= 1 (steps count from 1), received {step!r}")
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch: expected an integer >= 0 (epochs count from 0), received {epoch!r}")
        if not float(base_lr) >= 0:
            raise ValueError(f"Invalid learning rate: {base_lr}")
        return float(self._lr(int(step), int(epoch), float(base_lr)))

    def observe(self, metric):
        """Validation result from the engine; only Plateau (also inside a composition) uses it."""

    def _lr(self, step, epoch, base_lr):
        raise NotImplementedError


@SCHEDULES.register
class Constant(Schedule):
    """lr = base_lr."""

    def __init__(self):
        self.config = {}

    def _lr(self, step, epoch, base_lr):
        return base_lr


@SCHEDULES.register
class Step(Schedule):
    """lr = base_lr * gamma ** (epoch // step_size) (torch StepLR)."""

    def __init__(self, step_size, gamma=0.1):
        self.config = dict(step_size=_positive_int("step_size", step_size),
                           gamma=_number("gamma", gamma, low=0, low_open=True))

    def _lr(self, step, epoch, base_lr):
        return base_lr * self.config["gamma"] ** (epoch // self.config["step_size"])


@SCHEDULES.register
class MultiStep(Schedule):
    """lr = base_lr * gamma ** (number of milestones <= epoch) (torch MultiStepLR)."""

    def __init__(self, milestones, gamma=0.1):
        ms = list(milestones) if isinstance(milestones, (list, tuple)) else None
        if (not ms or not all(isinstance(m, (int, np.integer)) and m >= 0 for m in ms)
                or any(b <= a for a, b in zip(ms, ms[1:]))):
            raise ValueError(f"Invalid milestones: expected increasing epochs >= 0, received {milestones!r}")
        self.config = dict(milestones=[int(m) for m in ms], gamma=_number("gamma", gamma, low=0, low_open=True))

    def _lr(self, step, epoch, base_lr):
        return base_lr * self.config["gamma"] ** bisect.bisect_right(self.config["milestones"], epoch)


@SCHEDULES.register
class Exponential(Schedule):
    """lr = base_lr * gamma ** epoch (torch ExponentialLR)."""

    def __init__(self, gamma):
        self.config = dict(gamma=_number("gamma", gamma, low=0, low_open=True))

    def _lr(self, step, epoch, base_lr):
        return base_lr * self.config["gamma"] ** epoch


@SCHEDULES.register
class Poly(Schedule):
    """lr = base_lr * (1 - min(t, max_steps) / max_steps) ** power, t = step - 1 (torch PolynomialLR)."""

    def __init__(self, power, max_steps):
        self.config = dict(power=_number("power", power, low=0), max_steps=_positive_int("max_steps", max_steps))

    def _lr(self, step, epoch, base_lr):
        c = self.config
        return base_lr * (1.0 - min(step - 1, c["max_steps"]) / c["max_steps"]) ** c["power"]


@SCHEDULES.register
class Cosine(Schedule):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / t_max)) / 2, t = step - 1.

    The closed form of torch CosineAnnealingLR, periodic past t_max as torch's is.
    """

    def __init__(self, t_max, eta_min=0.0):
        self.config = dict(t_max=_positive_int("t_max", t_max), eta_min=_number("eta_min", eta_min, low=0))

    def _lr(self, step, epoch, base_lr):
        c = self.config
        return c["eta_min"] + (base_lr - c["eta_min"]) * (1 + math.cos(math.pi * (step - 1) / c["t_max"])) / 2


@SCHEDULES.register
class Warmup(Schedule):
    """Gradual warm-up (Goyal et al. 2017), then another schedule.

    Steps 1..warmup_steps ramp linearly from base_lr * start_factor towards base_lr
    (torch LinearLR); step warmup_steps + k then runs `then` at step k (epoch unchanged),
    as torch SequentialLR([LinearLR(...), then], milestones=[warmup_steps]) does.

    Args:
        warmup_steps: length of the ramp in steps.
        then: schedule after the ramp (instance, name or config); Constant by default.
        start_factor: fraction of base_lr at step 1, in [0, 1].
    """

    def __init__(self, warmup_steps, then=None, start_factor=0.1):
        self.warmup_steps = _positive_int("warmup_steps", warmup_steps)
        self.start_factor = _number("start_factor", start_factor, low=0, high=1)
        self.then = Constant() if then is None else SCHEDULES.get(then)

    @property
    def config(self):
        return dict(warmup_steps=self.warmup_steps, then=self.then.get_config(), start_factor=self.start_factor)

    def observe(self, metric):
        self.then.observe(metric)

    def _lr(self, step, epoch, base_lr):
        if step <= self.warmup_steps:
            return base_lr * (self.start_factor + (1 - self.start_factor) * (step - 1) / self.warmup_steps)
        return self.then(step - self.warmup_steps, epoch, base_lr)


@SCHEDULES.register
class SequentialSchedule(Schedule):
    """Schedules one after another: [(schedule, n_steps), ...].

    Phase i runs for n_steps steps, seeing its own step count from 1; the last phase
    runs on past its n_steps (which may be None). The epoch is passed unchanged;
    `observe` reaches every phase (a Plateau counts from the start of training).
    """

    def __init__(self, phases):
        if not isinstance(phases, (list, tuple)) or not phases:
            raise ValueError(f"Invalid phases: expected a non-empty list of (schedule, n_steps), received {phases!r}")
        self.phases = []
        for i, phase in enumerate(phases):
            if not isinstance(phase, (list, tuple)) or len(phase) != 2:
                raise ValueError(f"Invalid phases[{i}]: expected (schedule, n_steps), received {phase!r}")
            schedule, n = phase
            last = i == len(phases) - 1
            n = None if last and n is None else _positive_int(f"n_steps of phases[{i}]", n)
            self.phases.append((SCHEDULES.get(schedule), n))

    @property
    def config(self):
        return dict(phases=[[s.get_config(), n] for s, n in self.phases])

    def observe(self, metric):
        for schedule, _ in self.phases:
            schedule.observe(metric)

    def _lr(self, step, epoch, base_lr):
        for schedule, n in self.phases[:-1]:
            if step <= n:
                return schedule(step, epoch, base_lr)
            step -= n
        return self.phases[-1][0](step, epoch, base_lr)


@dataclasses.dataclass
class PlateauState:
    """What Plateau remembers between validations (JSON values only)."""
    scale: float = 1.0  # lr = max(base_lr * scale, min_lr)
    best: float = None  # best metric so far; None before the first observation
    num_bad: int = 0  # observations since the last improvement
    cooldown_left: int = 0


@SCHEDULES.register
class Plateau(Schedule):
    """Reduce the lr by `factor` when a validation metric stops improving (torch ReduceLROnPlateau).

    The engine calls `observe(metric)` after each validation; the lr is
    max(base_lr * state.scale, min_lr). The state is part of get_config(), so a
    checkpoint that saves the config restores it.

    Args:
        factor: multiplier in (0, 1) applied on each reduction.
        patience: observations without improvement tolerated before reducing.
        mode: "min" (loss) or "max" (accuracy).
        threshold: how much better counts as better, relative ("rel") or absolute ("abs").
        cooldown: observations to wait after a reduction before counting again.
        min_lr: lower bound of the lr.
        state: PlateauState or its dict (from a saved config) to resume from.
    """

    def __init__(self, factor=0.1, patience=10, mode="min", threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, state=None):
        if mode not in ("min", "max"):
            raise ValueError(f"Invalid mode: expected 'min' or 'max', received {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"Invalid threshold_mode: expected 'rel' or 'abs', received {threshold_mode!r}")
        if not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"Invalid patience: expected an integer >= 0, received {patience!r}")
        if not isinstance(cooldown, (int, np.integer)) or cooldown < 0:
            raise ValueError(f"Invalid cooldown: expected an integer >= 0, received {cooldown!r}")
        self.hparams = dict(factor=_number("factor", factor, low=0, high=1, low_open=True, high_open=True),
                            patience=int(patience), mode=mode, threshold=_number("threshold", threshold, low=0),
                            threshold_mode=threshold_mode, cooldown=int(cooldown),
                            min_lr=_number("min_lr", min_lr, low=0))
        self.state = state if isinstance(state, PlateauState) else PlateauState(**(state or {}))

    @property
    def config(self):
        return dict(self.hparams, state=dataclasses.asdict(self.state))

    def _better(self, metric):
        h, best = self.hparams, self.state.best
        t, rel = h["threshold"], h["threshold_mode"] == "rel"
        if h["mode"] == "min":
            best = math.inf if best is None else best
            return metric < (best * (1 - t) if rel else best - t)
        best = -math.inf if best is None else best
        return metric > (best * (1 + t) if rel else best + t)

    def observe(self, metric):
        """Record one validation result; return the scale now in force."""
        metric, s, h = float(metric), self.state, self.hparams
        if self._better(metric):
            s.best, s.num_bad = metric, 0
        else:
            s.num_bad += 1
        if s.cooldown_left > 0:
            s.cooldown_left -= 1
            s.num_bad = 0
        if s.num_bad > h["patience"]:
            s.scale *= h["factor"]
            s.cooldown_left, s.num_bad = h["cooldown"], 0
        return s.scale

    def _lr(self, step, epoch, base_lr):
        return max(base_lr * self.state.scale, self.hparams["min_lr"])


def linear_scaling_lr(base_lr, batch_size, base_batch_size=256):
    """Linear scaling rule (Goyal et al. 2017): base_lr * batch_size / base_batch_size."""
    base_lr = _number("learning rate", base_lr, low=0)
    return base_lr * _positive_int("batch_size", batch_size) / _positive_int("base_batch_size", base_batch_size)


def schedules_get(identifier, **kwargs):
    """Resolve "cosine" / "step" / ... (plus keyword arguments), a config dict or an instance."""
    return SCHEDULES.get(identifier, **kwargs)
