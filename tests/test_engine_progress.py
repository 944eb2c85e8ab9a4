"""The driver's training progress bar: auto on a terminal or Jupyter, forced on or off, every engine."""
import io
import re
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.engine.progress import progress_wanted
from bigdl_py.ml.estimator import NNClassifier
from bigdl_py.nn import CrossEntropyLoss
from bigdl_py.nn.zoo import mlp
from bigdl_py.optim import SGD, MaxEpoch, MaxIteration, MinLoss

SIZES = (8, 16, 3)


def data(n=48):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, SIZES[0])).astype(np.float32)
    return x, np.abs(x[:, :3]).argmax(axis=1).astype(np.int64)


def local_optimizer(end_trigger):
    x, y = data()
    return LocalOptimizer(mlp(SIZES, seed=0), CrossEntropyLoss(), SGD(), x, y, batch_size=8,
                          end_trigger=end_trigger, learning_rate=0.1)


def final_bar(stderr):
    """The bar's last state (tqdm rewrites its line with carriage returns)."""
    lines = [part for part in re.split(r"[\r\n]", stderr) if part.strip()]
    assert lines, "no progress bar was written"
    return lines[-1]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_auto_is_on_for_a_terminal_or_a_jupyter_kernel_and_off_otherwise(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert progress_wanted(None, _Terminal()) and not progress_wanted(None, io.StringIO())
    assert progress_wanted(True, io.StringIO()) and not progress_wanted(False, _Terminal())
    kernel = SimpleNamespace(get_ipython=lambda: SimpleNamespace(kernel=object()))
    monkeypatch.setitem(sys.modules, "IPython", kernel)
    assert progress_wanted(None, io.StringIO())
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: None))  # a plain python
    assert not progress_wanted(None, io.StringIO())


def test_local_default_writes_no_bar_when_stderr_is_not_a_terminal(capsys):
    local_optimizer(MaxEpoch(1)).optimize()
    assert capsys.readouterr().err == ""


def test_local_forced_bar_counts_to_the_max_epoch_total_with_loss_and_samples_per_second(capsys):
    opt = local_optimizer(MaxEpoch(2)).set_progress(True)
    opt.optimize()
    bar = final_bar(capsys.readouterr().err)
    assert "epoch 2/2" in bar and "12/12" in bar, bar  # 48 rows / 8 = 6 iterations per epoch
    assert f"loss={opt.history[-1]['loss']:.4f}" in bar and "samples/s=" in bar, bar


def test_local_bar_counts_per_epoch_when_the_end_is_not_a_fixed_count(capsys):
    local_optimizer(MaxEpoch(2) | MinLoss(1e-9)).set_progress(True).optimize()
    err = capsys.readouterr().err
    assert "epoch 1: 100%" in err and "epoch 2: 100%" in final_bar(err) and "6/6" in final_bar(err)
    assert "epoch 3" not in err


def test_local_bar_total_is_the_max_iteration(capsys):
    local_optimizer(MaxIteration(9)).set_progress(True).optimize()
    assert "9/9" in final_bar(capsys.readouterr().err)


def test_set_progress_rejects_values_other_than_true_false_or_none():
    with pytest.raises(ValueError, match=r"enabled: expected True, False or None \(auto\), received 'yes'"):
        local_optimizer(MaxEpoch(1)).set_progress("yes")


def dataframe(spark):
    x, y = data()
    return spark.createDataFrame([(row.tolist(), float(label)) for row, label in zip(x, y)],
                                 "features array<float>, label double")


@pytest.mark.spark
@pytest.mark.parametrize("sync", ["blockmanager", "ring"])
def test_distri_bar_on_the_driver_for_both_backends(spark, capsys, sync):
    opt = DistriOptimizer(mlp(SIZES, seed=0), CrossEntropyLoss(), SGD(), dataframe(spark), batch_size=8,
                          end_trigger=MaxIteration(4), learning_rate=0.1, num_partitions=2, sync=sync)
    opt.optimize()
    assert capsys.readouterr().err == "", "auto: no bar when stderr is not a terminal"
    opt = DistriOptimizer(mlp(SIZES, seed=0), CrossEntropyLoss(), SGD(), dataframe(spark), batch_size=8,
                          end_trigger=MaxIteration(4), learning_rate=0.1, num_partitions=2, sync=sync)
    opt.set_progress(True).optimize()
    bar = final_bar(capsys.readouterr().err)
    assert "4/4" in bar and f"loss={opt.history[-1]['loss']:.4f}" in bar and "samples/s=" in bar, bar


@pytest.mark.spark
def test_nnclassifier_fit_shows_the_bar_when_progress_is_true(spark, capsys):
    clf = NNClassifier(model=mlp(SIZES, seed=0), maxEpoch=2, batchSize=8, numPartitions=2)
    assert clf.getProgress() is None
    clf.setProgress(True).fit(dataframe(spark))
    bar = final_bar(capsys.readouterr().err)
    assert "epoch 2/2" in bar and "12/12" in bar and "loss=" in bar and "samples/s=" in bar, bar
    with pytest.raises(ValueError, match="progress: expected True, False or None"):
        clf.setProgress("on")
