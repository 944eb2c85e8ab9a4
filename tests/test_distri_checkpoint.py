"""DistriOptimizer checkpoints: exact resume, and no loading of another model's weights."""
import numpy as np
import pytest

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import Adam, MaxIteration, SeveralIteration
from tests.test_distri_equivalence import mlp_data, partitioned_df

pytestmark = pytest.mark.spark


def optimizer(df, model, iterations):
    return DistriOptimizer(model, CrossEntropyLoss(), Adam(), df, batch_size=37,
                           end_trigger=MaxIteration(iterations), learning_rate=0.01, num_partitions=2)


def test_resume_from_a_checkpoint_continues_exactly(spark, tmp_path):
    x, y = mlp_data(120)
    df = partitioned_df(spark, x, y, [50, 70])
    full = optimizer(df, zoo.mlp([8, 16, 3], seed=1), 6)
    full.set_checkpoint(str(tmp_path / "ck"), trigger=SeveralIteration(3), keep=5)
    expected = full.optimize().parameters_flat()[0].copy()
    third = [p for p in ckpt.list_checkpoints(str(tmp_path / "ck")) if p.endswith("ckpt-0000000003")][0]
    # Adam's moments come back from the slices: a fresh model resumed at step 3 ends identical.
    resumed = optimizer(df, zoo.mlp([8, 16, 3], seed=99), 6).optimize(resume_from="file://" + third)
    np.testing.assert_array_equal(resumed.parameters_flat()[0], expected)


def test_a_checkpoint_of_another_model_is_refused(spark, tmp_path):
    x, y = mlp_data(60)
    df = partitioned_df(spark, x, y, [30, 30])
    small = optimizer(df, zoo.mlp([8, 16, 3], seed=1), 2)
    small.set_checkpoint(str(tmp_path / "ck"))
    small.optimize()
    with pytest.raises(ValueError, match="the checkpoint holds 195 parameters, the model has"):
        optimizer(df, zoo.mlp([8, 32, 3], seed=1), 2).optimize(resume_from=ckpt.latest(str(tmp_path / "ck")))
