"""Model save/load: round trips, atomic writes, and clear errors for bad files (never running code)."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from bigdl_py import atomic, nn
from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.io import load_model, save_model


def small_model():
    model = Sequential(nn.Linear(4, 6), nn.BatchNorm(6), nn.ReLU(), nn.Linear(6, 3, name="head"))
    rng = np.random.default_rng(0)
    model.forward(rng.standard_normal((8, 4)).astype(np.float32))  # moves the BN running statistics
    return model


def saved(tmp_path):
    path = tmp_path / "model"
    save_model(small_model(), str(path))
    return path


class _Boom:
    """A pickle payload that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_round_trip_restores_parameters_buffers_and_outputs(tmp_path):
    model = small_model()
    save_model(model, str(tmp_path / "m"))
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.get_config() == model.get_config()
    state, want = loaded.state_dict(), model.state_dict()
    assert set(state) == set(want) and "1.running_mean" in state
    for k in want:
        np.testing.assert_array_equal(state[k], want[k], err_msg=k)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.eval().forward(x), model.eval().forward(x))


def test_directory_layout_and_config_header(tmp_path):
    path = saved(tmp_path)
    assert sorted(os.listdir(path)) == ["config.json", "weights.npz"]
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == "bigdl_py.model" and config["version"] == 1
    assert config["architecture"]["class_name"] == "Sequential"
    with np.load(path / "weights.npz", allow_pickle=False) as npz:
        assert "head.weight" in npz.files and "1.running_var" in npz.files


def test_saving_over_an_existing_model_replaces_it_and_leaves_no_temp_dirs(tmp_path):
    path = saved(tmp_path)
    other = Sequential(nn.Linear(2, 2))
    save_model(other, str(path))
    assert load_model(str(path)).get_config() == other.get_config()
    assert os.listdir(tmp_path) == ["model"]


def test_a_crash_while_writing_leaves_the_old_model_and_no_temp_dir(tmp_path, monkeypatch):
    path = saved(tmp_path)
    before = (path / "weights.npz").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(Sequential(nn.Linear(2, 2)), str(path))
    assert (path / "weights.npz").read_bytes() == before
    assert os.listdir(tmp_path) == ["model"]


def test_a_killed_writer_leaves_only_a_temp_dir_that_is_never_taken_for_the_model(tmp_path, monkeypatch):
    target = tmp_path / "fresh"
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_model(small_model(), str(target))
    monkeypatch.undo()
    assert not target.exists()
    with pytest.raises(ValueError, match="not a saved model"):
        load_model(str(target))
    # A temp directory that survived a real crash (kill -9) is recognisable by its name.
    with atomic.atomic_directory(str(target)) as tmp:
        assert atomic.is_temp_name(tmp) and not atomic.is_temp_name(str(target))


def test_save_model_removes_temps_that_killed_writes_left_in_the_folder(tmp_path):
    import socket
    import subprocess

    finished = subprocess.Popen(["true"])
    finished.wait()
    killed = tmp_path / f".model.tmp-{finished.pid}@{socket.gethostname()}-0123abcd"
    killed.mkdir()
    (killed / "weights.npz").write_bytes(b"half")
    in_progress = tmp_path / f".model.tmp-{os.getpid()}@{socket.gethostname()}-4567abcd"
    in_progress.mkdir()
    save_model(small_model(), str(tmp_path / "model"))
    assert sorted(os.listdir(tmp_path)) == sorted(["model", in_progress.name])


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "config.json").unlink(), "config.json: missing"),
    (lambda p: (p / "weights.npz").unlink(), "weights.npz: missing weights file"),
    (lambda p: (p / "config.json").write_text("{not json"), "config.json: not valid JSON"),
    (lambda p: (p / "config.json").write_text('{"format": "keras", "version": 1}'), "expected format"),
    (lambda p: (p / "config.json").write_text('{"format": "bigdl_py.model", "version": 99, "architecture": {}}'),
     "unsupported version 99"),
    (lambda p: (p / "config.json").write_text(
        '{"format": "bigdl_py.model", "version": 1, "architecture": {"class_name": "Evil", "config": {}}}'),
     "cannot rebuild.*unknown layer class 'Evil'"),
])
def test_bad_config_raises_a_clear_error_naming_the_file(tmp_path, damage, message):
    path = saved(tmp_path)
    damage(path)
    with pytest.raises(ValueError, match=message) as e:
        load_model(str(path))
    assert str(path) in str(e.value)


def test_path_that_is_not_a_directory_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a saved model"):
        load_model(str(tmp_path / "file"))


def rewrite_weights(path, transform):
    file = path / "weights.npz"
    file.write_bytes(transform(file.read_bytes()))


@pytest.mark.parametrize("transform", [
    lambda b: b[: len(b) // 2],  # truncated
    lambda b: b[:200] + bytes(x ^ 0xFF for x in b[200:260]) + b[260:],  # corrupted array data (CRC fails)
    lambda b: b"",
    lambda b: b"\x93NUMPY garbage",
])
def test_corrupt_or_truncated_weights_raise_a_clear_error(tmp_path, transform):
    path = saved(tmp_path)
    rewrite_weights(path, transform)
    with pytest.raises(ValueError, match="weights.npz: corrupt or unsafe weights file"):
        load_model(str(path))


def test_pickled_object_array_inside_the_npz_is_refused_without_running_code(tmp_path):
    path = saved(tmp_path)
    marker = tmp_path / "pwned"
    state = small_model().state_dict()
    state["head.weight"] = np.array([_Boom(str(marker))], dtype=object)
    with open(path / "weights.npz", "wb") as f:
        np.savez(f, **state)  # numpy pickles object arrays when allowed to
    with pytest.raises(ValueError, match="weights.npz: corrupt or unsafe.*pickle"):
        load_model(str(path))
    assert not marker.exists()


def test_a_raw_pickle_named_weights_npz_is_refused_without_running_code(tmp_path):
    path = saved(tmp_path)
    marker = tmp_path / "pwned"
    (path / "weights.npz").write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(ValueError, match="weights.npz: corrupt or unsafe.*pickled"):
        load_model(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("tamper, message", [
    (lambda s: s.update({"head.weight": np.array(["a", "b"])}), "entry 'head.weight' is <U1, expected a numeric"),
    (lambda s: s.update({"head.weight": np.zeros((2, 2), np.float32)}), "mis-shaped.*head.weight: model \\(3, 6\\)"),
    (lambda s: s.pop("1.running_mean"), "missing \\['1.running_mean'\\]"),
    (lambda s: s.update({"extra": np.zeros(1)}), "unexpected \\['extra'\\]"),
])
def test_tampered_tensors_are_listed(tmp_path, tamper, message):
    path = saved(tmp_path)
    state = small_model().state_dict()
    tamper(state)
    with open(path / "weights.npz", "wb") as f:
        np.savez(f, **state)
    with pytest.raises(ValueError, match=message) as e:
        load_model(str(path))
    assert "weights.npz" in str(e.value)


def test_npz_holding_a_non_array_member_is_refused(tmp_path):
    path = saved(tmp_path)
    with zipfile.ZipFile(path / "weights.npz", "a") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match="entry 'notes.txt' is bytes"):
        load_model(str(path))


def test_atomic_write_helpers_write_and_replace(tmp_path):
    target = str(tmp_path / "state.json")
    atomic.atomic_write_json(target, {"step": 1})
    atomic.atomic_write_json(target, {"step": 2})
    assert json.loads(open(target).read()) == {"step": 2}
    npz = str(tmp_path / "w.npz")
    atomic.atomic_write_npz(npz, {"a": np.arange(3.0)})
    with np.load(npz, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3.0))
    atomic.atomic_write_bytes(str(tmp_path / "b.bin"), b"xyz")
    assert (tmp_path / "b.bin").read_bytes() == b"xyz"
    assert sorted(os.listdir(tmp_path)) == ["b.bin", "state.json", "w.npz"]


def test_failed_atomic_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = str(tmp_path / "state.json")
    atomic.atomic_write_json(target, {"ok": True})
    with pytest.raises(ValueError):
        atomic.atomic_write_json(target, {"loss": float("nan")})  # NaN is not JSON
    assert json.loads(open(target).read()) == {"ok": True}
    assert os.listdir(tmp_path) == ["state.json"]


def test_atomic_directory_refuses_to_replace_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        with atomic.atomic_directory(str(tmp_path / "f")):
            pass
