"""Triggers over TrainingState: behaviour, combinators, config round trips."""
import json
import re

import pytest

from bigdl_py.optim import (And, EveryEpoch, MaxEpoch, MaxIteration, MaxScore, MinLoss, Or, SeveralIteration,
                            TrainingState, Trigger, triggers_get)

S = TrainingState

# One line per case: (trigger, state, expected).
CASES = [
    (MaxEpoch(2), S(epoch=1), False),
    (MaxEpoch(2), S(epoch=2), True),
    (MaxIteration(100), S(iteration=99), False),
    (MaxIteration(100), S(iteration=100), True),
    (EveryEpoch(), S(iteration=7), False),
    (EveryEpoch(), S(iteration=7, epoch_finished=True), True),
    (SeveralIteration(5), S(iteration=0), False),
    (SeveralIteration(5), S(iteration=9), False),
    (SeveralIteration(5), S(iteration=10), True),
    (MinLoss(0.1), S(), False),
    (MinLoss(0.1), S(loss=0.1), False),
    (MinLoss(0.1), S(loss=0.05), True),
    (MaxScore(0.9), S(), False),
    (MaxScore(0.9), S(score=0.95), True),
    (Or(MaxEpoch(3), MinLoss(0.1)), S(epoch=1, loss=0.5), False),
    (Or(MaxEpoch(3), MinLoss(0.1)), S(epoch=1, loss=0.01), True),
    (And(EveryEpoch(), MaxScore(0.5)), S(epoch_finished=True, score=0.4), False),
    (And(EveryEpoch(), MaxScore(0.5)), S(epoch_finished=True, score=0.6), True),
    (MaxIteration(10) | (EveryEpoch() & MaxScore(0.5)), S(iteration=3, epoch_finished=True, score=0.7), True),
]


@pytest.mark.parametrize("trigger, state, expected", CASES, ids=[f"{t!r}-{s}" for t, s, _ in CASES])
def test_trigger(trigger, state, expected):
    assert trigger(state) is expected


@pytest.mark.parametrize("trigger, state, expected", CASES, ids=[repr(t) for t, _, _ in CASES])
def test_config_round_trip_through_json(trigger, state, expected):
    back = Trigger.from_config(json.loads(json.dumps(trigger.get_config())))
    assert type(back) is type(trigger) and back.get_config() == trigger.get_config()
    assert back(state) is expected


def test_get_resolves_names_with_keyword_arguments():
    assert triggers_get("max_epoch", n=4)(S(epoch=4))
    assert triggers_get("SeveralIteration", n=2)(S(iteration=4))
    with pytest.raises(ValueError, match="unknown trigger 'max_loss'"):
        triggers_get("max_loss", x=1)


@pytest.mark.parametrize("make, message", [
    (lambda: MaxEpoch(0), "Invalid max epoch: expected an integer >= 1, received 0"),
    (lambda: MaxIteration(2.5), "Invalid max iteration: expected an integer >= 1, received 2.5"),
    (lambda: SeveralIteration(-3), "Invalid interval: expected an integer >= 1, received -3"),
    (lambda: MinLoss("low"), "Invalid min_loss: expected a number, received 'low'"),
    (lambda: Or(MaxEpoch(1)), "Invalid triggers: Or needs at least 2, received 1"),
    (lambda: And(MaxEpoch(1), "sometimes"), "unknown trigger 'sometimes'"),
])
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
