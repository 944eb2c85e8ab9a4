"""The one training loop (BaseOptimizer.run_training) and the backend interface it drives."""
import numpy as np
import pytest

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.backend import TrainingBackend
from bigdl_py.engine.base import TrainingError
from bigdl_py.engine.blockmanager_backend import BlockManagerBackend
from bigdl_py.engine.local import _LocalBackend
from bigdl_py.engine.ring_driver import RingDriver
from bigdl_py.optim import SGD, EveryEpoch, Loss, MaxEpoch, SeveralIteration
from tests.test_engine_local import data, make_optimizer

VERBS = ("start", "step", "validate", "checkpoint", "weights", "known_norms")


@pytest.mark.parametrize("backend", [_LocalBackend, BlockManagerBackend, RingDriver])
def test_every_engine_implements_every_verb(backend):
    missing = [verb for verb in VERBS if getattr(backend, verb) is getattr(TrainingBackend, verb)]
    assert missing == []


class Recording(_LocalBackend):
    """The local backend, noting which verbs the loop calls (known_norms aside)."""

    def __init__(self, opt, fail_at_step=None):
        super().__init__(opt)
        self.calls, self.fail_at_step = [], fail_at_step

    def start(self, source):
        self.calls.append("start")
        super().start(source)

    def step(self, step, epoch, iteration, lr, norms):
        self.calls.append(("step", step, epoch, iteration))
        if step == self.fail_at_step:
            raise TrainingError(f"step {step}: failed on purpose")
        return super().step(step, epoch, iteration, lr, norms)

    def validate(self):
        self.calls.append("validate")
        return super().validate()

    def checkpoint(self, root, meta, keep):
        self.calls.append(("checkpoint", meta["step"], meta["epoch"], meta["iteration"]))
        super().checkpoint(root, meta, keep)

    def weights(self):
        self.calls.append("weights")
        return super().weights()

    def close(self):
        self.calls.append("close")


def test_the_loop_calls_the_verbs_in_order_with_the_positions_the_triggers_chose(tmp_path):
    x, y = data(24)  # 3 iterations of 8 per epoch
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(2))
    opt.set_validation(x, y, [Loss()], trigger=EveryEpoch()).set_checkpoint(str(tmp_path), SeveralIteration(2))
    backend = Recording(opt)
    opt.run_training(backend, (0, 0, 0), None)
    assert backend.calls == ["start", ("step", 1, 0, 0), ("step", 2, 0, 1), ("checkpoint", 2, 0, 2),
                             ("step", 3, 0, 2), "validate", ("step", 4, 1, 0), ("checkpoint", 4, 1, 1),
                             ("step", 5, 1, 1), ("step", 6, 1, 2), "validate", ("checkpoint", 6, 2, 0),
                             "weights", "close"]
    assert [entry["step"] for entry in opt.history] == [1, 2, 3, 4, 5, 6]


def test_a_finished_run_starts_and_stops_the_backend_without_a_step(tmp_path):
    x, y = data(24)
    make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(1)).set_checkpoint(str(tmp_path)).optimize()
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(1), model_seed=7)
    backend = Recording(opt)
    position, source = opt.set_checkpoint(str(tmp_path)).resume("latest")
    opt.run_training(backend, position, source)
    assert position == (3, 1, 0) and backend.calls == ["start", "weights", "close"]
    stored = ckpt.load_range(source, 0, backend.flat_weights.size)[0]
    np.testing.assert_array_equal(opt.model.parameters_flat()[0], stored)


def test_a_failed_step_still_closes_the_backend_and_writes_no_checkpoint(tmp_path):
    x, y = data(24)
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(1)).set_checkpoint(str(tmp_path))
    backend = Recording(opt, fail_at_step=2)
    with pytest.raises(TrainingError, match="step 2: failed on purpose"):
        opt.run_training(backend, (0, 0, 0), None)
    assert backend.calls == ["start", ("step", 1, 0, 0), ("step", 2, 0, 1), "close"]
    assert ckpt.list_checkpoints(str(tmp_path)) == []


def test_a_non_finite_loss_from_any_backend_stops_the_loop(tmp_path):
    x, y = data(24)
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(1))

    class Diverging(Recording):
        def step(self, step, epoch, iteration, lr, norms):
            result = super().step(step, epoch, iteration, lr, norms)
            result.loss = float("nan")
            return result

    backend = Diverging(opt)
    with pytest.raises(TrainingError, match="step 1: the loss is nan"):
        opt.run_training(backend, (0, 0, 0), None)
    assert backend.calls[-1] == "close"


WARM_UP_PROBE = """
import json, numba
import bigdl_py.kernels.conv, bigdl_py.kernels.im2col, bigdl_py.kernels.pool
from bigdl_py.engine.replica import warm_up
from bigdl_py.nn import CrossEntropyLoss, zoo

def loaded():
    return sum(len(f.signatures) for m in (bigdl_py.kernels.conv, bigdl_py.kernels.im2col, bigdl_py.kernels.pool)
               for f in vars(m).values() if isinstance(f, numba.core.dispatcher.Dispatcher))

config = json.dumps(zoo.lenet5(seed=0).get_config())
before = loaded()
ok = warm_up(config, json.dumps(CrossEntropyLoss().get_config()), (28, 28, 1), 1)
bad = warm_up(config, json.dumps(CrossEntropyLoss().get_config()), (3, 3, 1), 1)  # too small for LeNet-5
print(json.dumps(dict(before=before, after=loaded(), ok=ok, bad=bad)))
"""


def test_warm_up_loads_a_fresh_workers_kernels_and_gives_up_quietly_on_a_batch_the_model_refuses():
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", WARM_UP_PROBE], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["before"] == 0 and seen["after"] > 0 and seen["ok"] is True and seen["bad"] is False, seen
