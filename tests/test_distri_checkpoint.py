"""DistriOptimizer checkpoints: exact resume (either backend, and across backends), and
no loading of another model's weights."""
import numpy as np
import pytest

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import Adam, MaxIteration, SeveralIteration
from tests.test_distri_equivalence import SYNCS, mlp_data, partitioned_df

pytestmark = pytest.mark.spark


def optimizer(df, model, iterations, sync="blockmanager"):
    return DistriOptimizer(model, CrossEntropyLoss(), Adam(), df, batch_size=37,
                           end_trigger=MaxIteration(iterations), learning_rate=0.01, num_partitions=2, sync=sync)


@pytest.fixture(scope="module")
def df120(spark):
    x, y = mlp_data(120)
    return partitioned_df(spark, x, y, [50, 70])


def full_run_with_checkpoints(df, sync, root):
    full = optimizer(df, zoo.mlp([8, 16, 3], seed=1), 6, sync)
    full.set_checkpoint(str(root), trigger=SeveralIteration(3), keep=5)
    expected = full.optimize().parameters_flat()[0].copy()
    third = [p for p in ckpt.list_checkpoints(str(root)) if p.endswith("ckpt-0000000003")][0]
    return expected, third


@pytest.mark.parametrize("sync", SYNCS)
def test_resume_from_a_checkpoint_continues_exactly(df120, tmp_path, sync):
    expected, third = full_run_with_checkpoints(df120, sync, tmp_path / "ck")
    # Adam's moments come back from the slices: a fresh model resumed at step 3 ends identical.
    resumed = optimizer(df120, zoo.mlp([8, 16, 3], seed=99), 6, sync).optimize(resume_from="file://" + third)
    np.testing.assert_array_equal(resumed.parameters_flat()[0], expected)


@pytest.mark.parametrize("writer,reader", [("ring", "blockmanager"), ("blockmanager", "ring")])
def test_each_backend_resumes_the_others_checkpoint(df120, tmp_path, writer, reader):
    expected, third = full_run_with_checkpoints(df120, writer, tmp_path / "ck")
    resumed = optimizer(df120, zoo.mlp([8, 16, 3], seed=99), 6, reader).optimize(resume_from=third)
    w = resumed.parameters_flat()[0]
    # Two ranks: both backends add the same two partition sums, so the bits agree too.
    np.testing.assert_array_equal(w, expected)


def test_a_checkpoint_of_another_model_is_refused(df120, tmp_path):
    small = optimizer(df120, zoo.mlp([8, 16, 3], seed=1), 2)
    small.set_checkpoint(str(tmp_path / "ck"))
    small.optimize()
    with pytest.raises(ValueError, match="the checkpoint holds 195 parameters, the model has"):
        optimizer(df120, zoo.mlp([8, 32, 3], seed=1), 2).optimize(resume_from=ckpt.latest(str(tmp_path / "ck")))


@pytest.mark.parametrize("sync", SYNCS)
def test_resuming_a_finished_run_trains_no_further(df120, tmp_path, sync):
    root = str(tmp_path / "ck")
    done = optimizer(df120, zoo.mlp([8, 16, 3], seed=1), 2, sync).set_checkpoint(root)
    expected = done.optimize().parameters_flat()[0].copy()
    again = optimizer(df120, zoo.mlp([8, 16, 3], seed=99), 2, sync).set_checkpoint(root)
    w = again.optimize(resume_from="latest").parameters_flat()[0]
    assert again.history == []
    np.testing.assert_array_equal(w, expected)
    assert [ckpt.read_meta(p)["step"] for p in ckpt.list_checkpoints(root)] == [2]
