"""Checkpoints of the local engine: exact resume, atomic writes, damaged files, pruning, no pickle."""
import json
import os

import numpy as np
import pytest

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.engine.training_log import read_log
from bigdl_py.nn import CrossEntropyLoss
from bigdl_py.nn.zoo import mlp
from bigdl_py.optim import SGD, Adam, Loss, MaxEpoch, MaxIteration, Plateau, SeveralIteration
from tests.test_engine_local import SIZES, data

EPOCHS = 3  # 60 samples in batches of 8: 8 iterations per epoch, 24 in all


class PowerCut(RuntimeError):
    pass


class CrashingLoss(CrossEntropyLoss):
    """Cross-entropy that raises on its n-th forward: a process dying mid-run."""

    def __init__(self, crash_at):
        super().__init__()
        self.crash_at, self.calls = crash_at, 0

    def forward(self, output, target):
        self.calls += 1
        if self.calls == self.crash_at:
            raise PowerCut(f"crash in step {self.calls}")
        return super().forward(output, target)


def make(optim_method, end_trigger=MaxEpoch(EPOCHS), criterion=None, dropout=0.0, **kw):
    x, y = data()
    opt = LocalOptimizer(mlp(SIZES, dropout=dropout, seed=1), criterion or CrossEntropyLoss(), optim_method,
                         x, y, batch_size=8, end_trigger=end_trigger, learning_rate=kw.pop("learning_rate", 0.05),
                         **kw)
    return opt.set_progress(False)


def weights(opt):
    return opt.model.parameters_flat()[0]


OPTIMIZERS = {"sgd_momentum": lambda: SGD(momentum=0.9), "adam": lambda: Adam()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs: final weights, final checkpoint and losses, per optimizer and dropout."""
    cache = {}

    def get(name, dropout):
        if (name, dropout) not in cache:
            root = str(tmp_path_factory.mktemp(f"ref-{name}-{dropout}"))
            opt = make(OPTIMIZERS[name](), dropout=dropout).set_checkpoint(root, SeveralIteration(3))
            opt.optimize()
            cache[name, dropout] = (weights(opt).copy(), ckpt.latest(root), [h["loss"] for h in opt.history])
        return cache[name, dropout]
    return get


def assert_same_checkpoint(a, b):
    wa, sa = ckpt.load_range(a, 0, ckpt.read_meta(a)["slices"][-1][1])
    wb, sb = ckpt.load_range(b, 0, ckpt.read_meta(b)["slices"][-1][1])
    np.testing.assert_array_equal(wa, wb)
    assert sorted(sa) == sorted(sb) and sa
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    ma, mb = ckpt.read_meta(a), ckpt.read_meta(b)
    assert {k: ma[k] for k in ("step", "epoch", "iteration")} == {k: mb[k] for k in ("step", "epoch", "iteration")}


# (optimizer, dropout, crash in step): checkpoints every 3 steps, so the newest one
# left by the crash is that of step (crash - 1) // 3 * 3.
CRASHES = [
    ("sgd_momentum", 0.0, 11),  # newest checkpoint: step 9, epoch 1 iteration 1
    ("adam", 0.0, 11),
    ("adam", 0.0, 20),  # newest checkpoint: step 18, epoch 2 iteration 2
    ("sgd_momentum", 0.3, 14),  # dropout: masks are a function of (seed, epoch, iteration)
]


@pytest.mark.parametrize("name,dropout,crash_at", CRASHES)
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, reference, name, dropout, crash_at):
    ref_w, ref_ckpt, ref_losses = reference(name, dropout)
    root = str(tmp_path / "ckpt")
    log = str(tmp_path / "log.jsonl")
    crashed = make(OPTIMIZERS[name](), criterion=CrashingLoss(crash_at), dropout=dropout)
    crashed.set_checkpoint(root, SeveralIteration(3)).set_training_log(log)
    with pytest.raises(PowerCut):
        crashed.optimize()
    saved = (crash_at - 1) // 3 * 3
    assert ckpt.read_meta(ckpt.latest(root))["step"] == saved

    resumed = make(OPTIMIZERS[name](), dropout=dropout).set_checkpoint(root, SeveralIteration(3))
    resumed.set_training_log(log).optimize(resume_from="latest")
    np.testing.assert_array_equal(weights(resumed), ref_w)
    assert [h["step"] for h in resumed.history] == list(range(saved + 1, 8 * EPOCHS + 1))
    assert [h["loss"] for h in resumed.history] == ref_losses[saved:]
    assert_same_checkpoint(ckpt.latest(root), ref_ckpt)
    # The log holds both runs: the crashed one up to its crash, then the resumed one.
    steps = [r["step"] for r in read_log(log)]
    assert steps == list(range(1, crash_at)) + list(range(saved + 1, 8 * EPOCHS + 1))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_at_an_epoch_boundary_from_an_explicit_path(tmp_path, reference, name):
    ref_w, _, _ = reference(name, 0.0)
    root = str(tmp_path / "ckpt")
    first = make(OPTIMIZERS[name](), end_trigger=MaxIteration(8)).set_checkpoint(root, SeveralIteration(3))
    first.optimize()
    # The run ends with epoch 0: its last checkpoint resumes at epoch 1, iteration 0.
    path = ckpt.latest(root)
    meta = ckpt.read_meta(path)
    assert (meta["step"], meta["epoch"], meta["iteration"]) == (8, 1, 0)
    # A different root for the second run, and the file:// form of the path.
    second = make(OPTIMIZERS[name]()).set_checkpoint(str(tmp_path / "other"), SeveralIteration(3))
    second.optimize(resume_from="file://" + path)
    np.testing.assert_array_equal(weights(second), ref_w)
    assert second.history[0]["step"] == 9 and second.history[0]["epoch"] == 1


def test_resume_from_an_older_checkpoint_replays_from_there(tmp_path, reference):
    ref_w, _, _ = reference("adam", 0.0)
    root = str(tmp_path / "ckpt")
    make(Adam(), end_trigger=MaxIteration(13)).set_checkpoint(root, SeveralIteration(3)).optimize()
    assert [ckpt.read_meta(p)["step"] for p in ckpt.list_checkpoints(root)] == [9, 12, 13]
    again = make(Adam()).set_checkpoint(root, SeveralIteration(3))
    again.optimize(resume_from=os.path.join(root, "ckpt-0000000009"))
    np.testing.assert_array_equal(weights(again), ref_w)


def test_optimizer_state_is_what_makes_resume_exact(tmp_path, reference):
    # Control: the same resume with the momentum buffer zeroed gives other weights.
    ref_w, _, _ = reference("sgd_momentum", 0.0)
    root = str(tmp_path / "ckpt")
    make(SGD(momentum=0.9), end_trigger=MaxIteration(10)).set_checkpoint(root).optimize()
    path = ckpt.latest(root)
    with np.load(os.path.join(path, "slices", "slice-00000.npz"), allow_pickle=False) as z:
        stored = {k: z[k] for k in z.files}
    assert np.abs(stored["momentum_buffer"]).max() > 0
    np.savez(os.path.join(path, "slices", "slice-00000.npz"),
             **dict(stored, momentum_buffer=np.zeros_like(stored["momentum_buffer"])))
    resumed = make(SGD(momentum=0.9)).set_checkpoint(root)
    resumed.optimize(resume_from=path)
    assert not np.allclose(weights(resumed), ref_w, rtol=1e-4, atol=1e-6)


def test_resuming_a_finished_run_trains_no_further(tmp_path):
    root = str(tmp_path / "ckpt")
    done = make(Adam(), end_trigger=MaxEpoch(1)).set_checkpoint(root)
    done.optimize()
    again = make(Adam(), end_trigger=MaxEpoch(1)).set_checkpoint(root)
    again.optimize(resume_from="latest")
    assert again.history == []
    np.testing.assert_array_equal(weights(again), weights(done))
    assert [ckpt.read_meta(p)["step"] for p in ckpt.list_checkpoints(root)] == [8]


def test_resume_latest_with_no_checkpoint_yet_starts_from_scratch(tmp_path):
    fresh = make(SGD(), end_trigger=MaxIteration(5))
    fresh.optimize()
    opt = make(SGD(), end_trigger=MaxIteration(5)).set_checkpoint(str(tmp_path / "empty"))
    opt.optimize(resume_from="latest")
    np.testing.assert_array_equal(weights(opt), weights(fresh))


def test_resume_latest_needs_a_checkpoint_path():
    with pytest.raises(ValueError, match="set_checkpoint"):
        make(SGD()).optimize(resume_from="latest")


def test_plateau_state_is_restored(tmp_path):
    # A threshold of 50% makes almost every validation "no improvement": with
    # patience 0 the lr halves at nearly every epoch, so the state matters.
    def run(end, root, resume=None):
        opt = make(SGD(momentum=0.9), end_trigger=MaxEpoch(end),
                   schedule=Plateau(factor=0.5, patience=0, threshold=0.5))
        opt.set_validation(*data(n=24, seed=4), [Loss()]).set_checkpoint(root)
        opt.optimize(resume_from=resume)
        return opt

    full = run(4, str(tmp_path / "full"))
    scales = [h["lr"] / 0.05 for h in full.history]
    assert min(scales) <= 0.25  # reduced at least twice
    root = str(tmp_path / "ckpt")
    first = run(2, root)
    saved = ckpt.read_meta(ckpt.latest(root))["schedule"]["config"]["state"]
    assert saved == first.schedule.get_config()["config"]["state"] and saved["scale"] < 1
    resumed = run(4, root, resume="latest")
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history[16:]]
    assert resumed.schedule.get_config() == full.schedule.get_config()
    np.testing.assert_array_equal(weights(resumed), weights(full))


# ---- the files ------------------------------------------------------------------------
@pytest.fixture
def written(tmp_path):
    """A root holding three checkpoints of a 7-step Adam run (steps 3, 6 and 7)."""
    root = str(tmp_path / "ckpt")
    make(Adam(), end_trigger=MaxIteration(7)).set_checkpoint(root, SeveralIteration(3)).optimize()
    return root


def test_layout_and_no_pickle(written):
    path = ckpt.latest(written)
    assert os.path.basename(path) == "ckpt-0000000007"
    files = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)
    assert files == ["_COMMITTED", "buffers.npz", "checkpoint.json", os.path.join("slices", "slice-00000.npz")]
    with open(os.path.join(path, "checkpoint.json")) as f:
        meta = json.load(f)
    assert (meta["step"], meta["epoch"], meta["iteration"]) == (7, 0, 7)
    assert meta["optimizer"]["class_name"] == "Adam" and meta["architecture"]["class_name"] == "Sequential"
    for name in files:
        if name.endswith(".npz"):
            with np.load(os.path.join(path, name), allow_pickle=False) as z:
                assert all(z[k].dtype != object for k in z.files)
    with np.load(os.path.join(path, "slices", "slice-00000.npz"), allow_pickle=False) as z:
        assert sorted(z.files) == ["_range", "exp_avg", "exp_avg_sq", "weights"]


def test_load_model_rebuilds_the_trained_model(tmp_path):
    root = str(tmp_path / "ckpt")
    opt = make(SGD(momentum=0.9), end_trigger=MaxIteration(4)).set_checkpoint(root)
    opt.optimize()
    model = ckpt.load_model(ckpt.latest(root))
    x, _ = data(n=5, seed=8)
    np.testing.assert_array_equal(model.eval().forward(x), opt.model.eval().forward(x))


def test_keep_prunes_old_checkpoints(tmp_path):
    root = str(tmp_path / "ckpt")
    make(SGD(), end_trigger=MaxIteration(9)).set_checkpoint(root, SeveralIteration(1), keep=2).optimize()
    assert sorted(os.listdir(root)) == ["ckpt-0000000008", "ckpt-0000000009"]


@pytest.mark.parametrize("keep", [0, -1, 1.5, None])
def test_keep_must_be_a_positive_integer(tmp_path, keep):
    with pytest.raises(ValueError, match="keep"):
        make(SGD()).set_checkpoint(str(tmp_path), keep=keep)


def test_a_temp_dir_left_by_a_crash_is_never_listed(written):
    junk = os.path.join(written, ".tmp-ckpt-x1y2z3")
    os.makedirs(os.path.join(junk, "slices"))
    with open(os.path.join(junk, "checkpoint.json"), "w") as f:
        json.dump({"step": 99}, f)
    with open(os.path.join(junk, "slices", "slice-00000.npz"), "wb") as f:
        f.write(b"half a file")
    os.makedirs(os.path.join(written, "ckpt-99"))  # not a checkpoint name either
    assert [os.path.basename(p) for p in ckpt.list_checkpoints(written)] == [
        "ckpt-0000000003", "ckpt-0000000006", "ckpt-0000000007"]
    opt = make(Adam(), end_trigger=MaxIteration(9)).set_checkpoint(written, SeveralIteration(3))
    opt.optimize(resume_from="latest")
    assert [h["step"] for h in opt.history] == [8, 9]


@pytest.mark.parametrize("content", [b"\x00\x01junk", b'{"step": 7, "epoch"', b"[1, 2]",
                                     b'{"format": "something else", "version": 1}'],
                         ids=["binary", "truncated", "not_an_object", "wrong_format"])
def test_a_damaged_checkpoint_json_names_the_file(written, content):
    path = ckpt.latest(written)
    with open(os.path.join(path, "checkpoint.json"), "wb") as f:
        f.write(content)
    opt = make(Adam()).set_checkpoint(written)
    with pytest.raises(ValueError, match=os.path.join(path, "checkpoint.json")):
        opt.optimize(resume_from="latest")


def test_a_missing_checkpoint_json_is_not_a_checkpoint(written):
    path = ckpt.latest(written)
    os.remove(os.path.join(path, "checkpoint.json"))
    with pytest.raises(ValueError, match=f"{path}: not a checkpoint"):
        make(Adam()).optimize(resume_from=path)


@pytest.mark.parametrize("damage", ["truncate", "junk", "wrong_range", "missing_array"])
def test_a_damaged_slice_names_the_file(written, damage):
    path = ckpt.latest(written)
    file = os.path.join(path, "slices", "slice-00000.npz")
    with np.load(file, allow_pickle=False) as z:
        stored = {k: z[k] for k in z.files}
    with open(file, "rb") as f:
        raw = f.read()
    if damage == "truncate":
        with open(file, "wb") as f:
            f.write(raw[:len(raw) // 2])
    elif damage == "junk":
        with open(file, "wb") as f:
            f.write(b"\x00" * 100)
    elif damage == "wrong_range":
        np.savez(file, **dict(stored, _range=np.array([0, 10 ** 6])))
    else:
        np.savez(file, **{k: v for k, v in stored.items() if k != "exp_avg"})
    with pytest.raises(ValueError, match=file if damage != "missing_array" else "exp_avg"):
        make(Adam()).optimize(resume_from=path)


def test_missing_slices_are_a_clear_error(written):
    path = ckpt.latest(written)
    os.remove(os.path.join(path, "slices", "slice-00000.npz"))
    with pytest.raises(ValueError, match="cover 0 of"):
        make(Adam()).optimize(resume_from=path)


def test_a_damaged_buffers_file_names_the_file(written):
    path = ckpt.latest(written)
    file = os.path.join(path, "buffers.npz")
    with open(file, "wb") as f:
        f.write(b"PK\x03\x04 broken")
    with pytest.raises(ValueError, match=file):
        make(Adam()).optimize(resume_from=path)


def test_a_checkpoint_of_another_model_is_refused(written):
    x, y = data()
    other = LocalOptimizer(mlp((8, 4, 3), seed=0), CrossEntropyLoss(), Adam(), x, y, batch_size=8)
    with pytest.raises(ValueError, match="parameters"):
        other.set_progress(False).optimize(resume_from=ckpt.latest(written))


def test_a_checkpoint_of_another_optimizer_is_refused(written):
    with pytest.raises(ValueError, match="momentum_buffer.*missing"):
        make(SGD(momentum=0.9)).optimize(resume_from=ckpt.latest(written))
