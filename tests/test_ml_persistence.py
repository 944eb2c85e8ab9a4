"""model.write().overwrite().save(path) on a local path: the old save stays loadable until the new one is complete."""
import os
import socket
import subprocess

import numpy as np
import pytest

from bigdl_py.ml import NNModel
from bigdl_py.nn import zoo

pytestmark = pytest.mark.spark


def nn_model(seed):
    return NNModel(model=zoo.mlp((3, 2), seed=seed))


def weights(model):
    return model.getModel().parameters_flat()[0].copy()


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_overwrite_that_fails_midway_keeps_the_old_model_loadable(spark, tmp_path, monkeypatch):
    import bigdl_py.ml.persistence as persistence

    path = str(tmp_path / "m")
    old = nn_model(seed=0)
    old.write().save(path)

    def disk_full(*args):
        raise OSError("disk full")

    monkeypatch.setattr(persistence, "save_module", disk_full)  # after the metadata was written
    with pytest.raises(OSError, match="disk full"):
        nn_model(seed=1).write().overwrite().save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(weights(NNModel.load(path)), weights(old))
    assert os.listdir(tmp_path) == ["m"]


def test_overwrite_replaces_the_model_and_leaves_no_temp_folder(spark, tmp_path):
    path = str(tmp_path / "m")
    nn_model(seed=0).write().save(path)
    new = nn_model(seed=1)
    new.write().overwrite().save("file://" + path)
    np.testing.assert_array_equal(weights(NNModel.load(path)), weights(new))
    assert os.listdir(tmp_path) == ["m"]


def test_save_over_an_existing_model_without_overwrite_is_refused_and_keeps_it(spark, tmp_path):
    path = str(tmp_path / "m")
    old = nn_model(seed=0)
    old.write().save(path)
    with pytest.raises(ValueError, match=r"m: already exists; use write\(\)\.overwrite\(\)\.save\(path\)"):
        nn_model(seed=1).write().save(path)
    np.testing.assert_array_equal(weights(NNModel.load(path)), weights(old))


def test_next_save_into_a_folder_removes_temps_of_killed_writes_only(spark, tmp_path):
    host = socket.gethostname()
    killed = tmp_path / f".m.tmp-{dead_pid()}@{host}-0123abcd"
    in_progress = tmp_path / f".m.tmp-{os.getpid()}@{host}-4567abcd"
    other_host = tmp_path / f".m.tmp-{dead_pid()}@not-{host}-89abcdef"
    for folder in (killed, in_progress, other_host):
        (folder / "metadata").mkdir(parents=True)
    nn_model(seed=0).write().save(str(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path)) == sorted(["m", in_progress.name, other_host.name])
