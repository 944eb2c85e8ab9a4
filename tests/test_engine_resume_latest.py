"""optimize(resume_from="latest") with no committed checkpoint yet starts from scratch and says so in the log."""
import logging

import pytest

from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import SGD, MaxIteration
from tests.test_distri_equivalence import mlp_data, partitioned_df
from tests.test_engine_checkpoint import make

MESSAGE = 'resume_from="latest": no committed checkpoint under {}; training starts from scratch'


def test_local_resume_latest_without_a_checkpoint_logs_a_fresh_start(tmp_path, caplog):
    root = str(tmp_path / "empty")
    opt = make(SGD(), end_trigger=MaxIteration(2)).set_checkpoint(root)
    with caplog.at_level(logging.WARNING, logger="bigdl_py"):
        opt.optimize(resume_from="latest")
    assert MESSAGE.format(root) in caplog.text


@pytest.mark.spark
def test_distri_resume_latest_without_a_checkpoint_logs_a_fresh_start(spark, tmp_path, caplog):
    x, y = mlp_data(40)
    opt = DistriOptimizer(zoo.mlp([8, 4, 3], seed=1), CrossEntropyLoss(), SGD(), partitioned_df(spark, x, y, [20, 20]),
                          batch_size=10, end_trigger=MaxIteration(1), num_partitions=2)
    root = str(tmp_path / "empty")
    with caplog.at_level(logging.WARNING, logger="bigdl_py"):
        opt.set_checkpoint(root).optimize(resume_from="latest")
    assert MESSAGE.format(root) in caplog.text
