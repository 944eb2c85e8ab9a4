"""LR schedules vs torch.optim.lr_scheduler, purity, Plateau state, config round trips."""
import json
import re
import warnings

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

from bigdl_py.optim import (Constant, Cosine, Exponential, MultiStep, Plateau, Poly, Schedule, SequentialSchedule,
                            Step, Warmup, linear_scaling_lr, schedules_get)

BASE = 0.4
T = 30


def _torch_lrs(make, steps=T):
    """lr that torch's scheduler gives after 0, 1, ..., steps - 1 calls to step()."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    sched = make(opt)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's step(0) deprecation notice
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return np.array(lrs)


# One line per case: (ours, torch scheduler factory, indexed by "epoch" or "step").
CASES = {
    "step": (Step(3, gamma=0.5), lambda o: tls.StepLR(o, 3, gamma=0.5), "epoch"),
    "multistep": (MultiStep([2, 5, 11], gamma=0.3), lambda o: tls.MultiStepLR(o, [2, 5, 11], gamma=0.3), "epoch"),
    "exponential": (Exponential(0.9), lambda o: tls.ExponentialLR(o, 0.9), "epoch"),
    "poly": (Poly(2.0, 20), lambda o: tls.PolynomialLR(o, total_iters=20, power=2.0), "step"),
    "poly_linear": (Poly(1.0, 7), lambda o: tls.PolynomialLR(o, total_iters=7, power=1.0), "step"),
    "cosine": (Cosine(12), lambda o: tls.CosineAnnealingLR(o, 12), "step"),
    "cosine_eta_min_periodic": (Cosine(8, eta_min=0.01), lambda o: tls.CosineAnnealingLR(o, 8, eta_min=0.01), "step"),
    "warmup": (Warmup(6, start_factor=0.25), lambda o: tls.LinearLR(o, start_factor=0.25, total_iters=6), "step"),
    "warmup_cosine": (Warmup(5, then=Cosine(20), start_factor=0.1),
                      lambda o: tls.SequentialLR(o, [tls.LinearLR(o, 0.1, total_iters=5), tls.CosineAnnealingLR(o, 20)],
                                                 milestones=[5]), "step"),
    "sequential": (SequentialSchedule([(Cosine(10), 4), (Poly(2.0, 9), 12), (Constant(), None)]),
                   lambda o: tls.SequentialLR(o, [tls.CosineAnnealingLR(o, 10), tls.PolynomialLR(o, 9, 2.0),
                                                  tls.ConstantLR(o, factor=1.0)], milestones=[4, 16]), "step"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_matches_torch(case):
    ours, make, by = CASES[case]
    expected = _torch_lrs(make)
    got = [ours(t + 1, 0, BASE) if by == "step" else ours(1, t, BASE) for t in range(T)]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)


def test_step_schedules_ignore_epoch_and_epoch_schedules_ignore_step():
    assert Cosine(10)(4, 0, BASE) == Cosine(10)(4, 7, BASE)
    assert Step(2)(1, 3, BASE) == Step(2)(900, 3, BASE)


def test_warmup_passes_epoch_to_the_wrapped_schedule():
    sched = Warmup(4, then=Step(1, gamma=0.5), start_factor=0.0)
    assert sched(1, 0, 1.0) == 0.0
    assert sched(4, 0, 1.0) == 0.75
    assert sched(5, 2, 1.0) == 0.25


def test_schedules_are_pure():
    sched = SequentialSchedule([(Warmup(3), 3), (Cosine(5), None)])
    first = [sched(s, 0, BASE) for s in range(1, 12)]
    assert [sched(s, 0, BASE) for s in reversed(range(1, 12))] == first[::-1]


def _torch_plateau(metrics, **kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    sched = tls.ReduceLROnPlateau(opt, **kwargs)
    lrs = []
    for m in metrics:
        sched.step(m)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


PLATEAU = {
    "min": dict(factor=0.5, patience=2),
    "max_cooldown": dict(mode="max", factor=0.3, patience=1, cooldown=2),
    "abs_threshold": dict(factor=0.5, patience=0, threshold=0.05, threshold_mode="abs"),
    "min_lr": dict(factor=0.1, patience=0, min_lr=0.01),
}


@pytest.mark.parametrize("case", PLATEAU, ids=list(PLATEAU))
def test_plateau_matches_torch(case):
    kwargs = PLATEAU[case]
    rng = np.random.default_rng(3)
    metrics = list(np.concatenate([np.linspace(1.0, 0.5, 5), 0.5 + 0.04 * rng.random(20)]))
    if kwargs.get("mode") == "max":
        metrics = [-m for m in metrics]
    expected = _torch_plateau(metrics, **kwargs)
    plateau, got = Plateau(**kwargs), []
    for m in metrics:
        plateau.observe(m)
        got.append(plateau(1, 0, BASE))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert min(got) < BASE


def test_plateau_state_survives_a_config_round_trip():
    metrics = [1.0, 0.9, 0.95, 0.97, 0.99, 0.96, 0.98, 0.97, 1.2, 1.1]
    whole = Plateau(factor=0.5, patience=1, cooldown=1)
    resumed = Plateau(factor=0.5, patience=1, cooldown=1)
    for i, m in enumerate(metrics):
        whole.observe(m)
        resumed = Schedule.from_config(json.loads(json.dumps(resumed.get_config())))  # checkpoint each time
        resumed.observe(m)
        assert resumed(1, 0, BASE) == whole(1, 0, BASE), i
    assert whole.state.scale < 1.0


def test_pure_schedules_ignore_observe():
    sched = Cosine(10)
    sched.observe(1.0)
    assert sched.get_config() == Cosine(10).get_config()


def test_plateau_inside_warmup_observes_and_round_trips_with_its_state():
    sched = Warmup(2, then=Plateau(factor=0.5, patience=0))
    for m in [1.0, 2.0, 3.0]:
        sched.observe(m)
    back = Schedule.from_config(json.loads(json.dumps(sched.get_config())))
    assert back(10, 0, 1.0) == sched(10, 0, 1.0) == 0.25


def test_sequential_forwards_observe_to_its_phases():
    sched = SequentialSchedule([(Warmup(2), 2), (Plateau(factor=0.1, patience=0), None)])
    sched.observe(1.0)
    sched.observe(1.0)
    assert sched(5, 0, 1.0) == pytest.approx(0.1)


ALL = [Constant(), Step(2, 0.5), MultiStep([1, 4]), Exponential(0.95), Poly(0.9, 100), Cosine(50, 1e-4),
       Warmup(5, then=Cosine(20)), SequentialSchedule([(Warmup(2), 2), (Step(3), None)]),
       Plateau(mode="max", patience=3)]


@pytest.mark.parametrize("sched", ALL, ids=[type(s).__name__ for s in ALL])
def test_config_round_trip_through_json(sched):
    config = json.loads(json.dumps(sched.get_config()))
    back = schedules_get(config)
    assert type(back) is type(sched) and back.get_config() == sched.get_config()
    assert [back(s, s // 3, BASE) for s in range(1, 15)] == [sched(s, s // 3, BASE) for s in range(1, 15)]


def test_get_resolves_names_with_keyword_arguments():
    assert schedules_get("cosine", t_max=10)(11, 0, 1.0) == 0.0
    assert schedules_get("multi_step", milestones=[2])(1, 2, 1.0) == pytest.approx(0.1)


def test_linear_scaling_rule():
    assert linear_scaling_lr(0.1, 8192) == pytest.approx(3.2)
    assert linear_scaling_lr(0.1, 64, base_batch_size=32) == pytest.approx(0.2)


@pytest.mark.parametrize("make, message", [
    (lambda: Step(0), "Invalid step_size: expected an integer >= 1, received 0"),
    (lambda: Step(2, gamma=-0.5), "Invalid gamma: -0.5"),
    (lambda: MultiStep([3, 2]), "Invalid milestones: expected increasing epochs >= 0, received [3, 2]"),
    (lambda: Exponential(0), "Invalid gamma: 0"),
    (lambda: Poly(-1, 10), "Invalid power: -1"),
    (lambda: Cosine(10, eta_min=-1), "Invalid eta_min: -1"),
    (lambda: Warmup(5, start_factor=1.5), "Invalid start_factor: 1.5"),
    (lambda: Warmup(5, then="nope"), "unknown schedule 'nope'"),
    (lambda: SequentialSchedule([(Constant(), None), (Constant(), None)]), "Invalid n_steps of phases[0]"),
    (lambda: Plateau(factor=1.0), "Invalid factor: 1.0"),
    (lambda: Plateau(mode="up"), "Invalid mode: expected 'min' or 'max', received 'up'"),
    (lambda: linear_scaling_lr(0.1, 0), "Invalid batch_size: expected an integer >= 1, received 0"),
    (lambda: Cosine(10)(0, 0, 0.1), "step: expected an integer >= 1"),
    (lambda: Cosine(10)(1, -1, 0.1), "epoch: expected an integer >= 0"),
    (lambda: Cosine(10)(1, 0, -0.1), "Invalid learning rate: -0.1"),
])
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
