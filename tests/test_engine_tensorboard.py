"""TensorBoard event files read back equal the training log: every engine, validation, norms."""
import numpy as np
import pytest
from tbparse import SummaryReader

from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.ml.estimator import NNClassifier
from bigdl_py.nn import CrossEntropyLoss
from bigdl_py.nn.zoo import mlp
from bigdl_py.optim import SGD, EveryEpoch, Loss, MaxEpoch, MaxIteration, SeveralIteration, Top1Accuracy

SIZES = (8, 16, 3)
ROWS, BATCH = 48, 8  # 6 iterations per epoch


def data(n=ROWS):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, SIZES[0])).astype(np.float32)
    return x, np.abs(x[:, :3]).argmax(axis=1).astype(np.int64)


def read_scalars(log_dir):
    """{tag: {step: value}} of every scalar in the event files under log_dir."""
    frame = SummaryReader(str(log_dir)).scalars
    out = {}
    for tag, step, value in zip(frame["tag"], frame["step"], frame["value"]):
        out.setdefault(tag, {})[int(step)] = float(value)
    return out


def assert_matches_history(tags, history, keys):
    """Each key of every history entry equals the scalar of its tag at that step (float32 in the file)."""
    for tag, key in keys.items():
        expected = {e["step"]: e[key] for e in history if key in e}
        assert expected, f"no {key!r} in the history"
        assert sorted(tags[tag]) == sorted(expected), tag
        np.testing.assert_allclose([tags[tag][s] for s in sorted(expected)],
                                   [expected[s] for s in sorted(expected)], rtol=1e-6, err_msg=tag)


def segment_norms(model, vector):
    return {name: float(np.linalg.norm(vector[lo:hi])) for name, lo, hi in model.parameter_segments()}


def assert_norms(tags, step, model, weights, grads, rtol=1e-6):
    np.testing.assert_allclose(tags["norms/weights"][step], np.linalg.norm(weights), rtol=rtol)
    np.testing.assert_allclose(tags["norms/gradients"][step], np.linalg.norm(grads), rtol=rtol)
    for kind, vector in (("weights", weights), ("gradients", grads)):
        for name, norm in segment_norms(model, vector).items():
            np.testing.assert_allclose(tags[f"{kind}_norm/{name}"][step], norm, rtol=rtol, err_msg=name)


def local_optimizer(end_trigger=MaxEpoch(2), partition_sizes=None):
    x, y = data()
    opt = LocalOptimizer(mlp(SIZES, seed=0), CrossEntropyLoss(), SGD(momentum=0.9), x, y, batch_size=BATCH,
                         end_trigger=end_trigger, learning_rate=0.1, seed=3, partition_sizes=partition_sizes)
    return opt.set_progress(False)


def test_local_events_equal_the_log_validation_and_final_norms(tmp_path):
    x, y = data(24)
    opt = local_optimizer().set_validation(x, y, [Top1Accuracy(), Loss()], trigger=EveryEpoch())
    model = opt.set_tensorboard(tmp_path / "tb", weights_every=4).optimize()
    tags = read_scalars(tmp_path / "tb")
    assert_matches_history(tags, opt.history, {"train/loss": "loss", "train/lr": "lr",
                                               "train/samples_s": "samples_s",
                                               "validation/Top1Accuracy": "Top1Accuracy",
                                               "validation/Loss": "Loss"})
    assert sorted(tags["validation/Loss"]) == [6, 12] and sorted(tags["norms/weights"]) == [4, 8, 12]
    weights, grads = model.parameters_flat()
    assert_norms(tags, 12, model, weights, grads)  # the last step's update and the gradient it applied


@pytest.mark.parametrize("every", [0, -1, 2.5, True, None])
def test_set_tensorboard_rejects_a_non_positive_integer_interval(tmp_path, every):
    with pytest.raises(ValueError, match=rf"weights_every: expected a positive integer .*received {every!r}"):
        local_optimizer().set_tensorboard(tmp_path, weights_every=every)


def test_no_event_files_without_set_tensorboard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local_optimizer().optimize()
    assert list(tmp_path.iterdir()) == []


def partitioned_df(spark, x, y, sizes):
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = [[(x[i].tolist(), float(y[i])) for i in range(offsets[p], offsets[p + 1])] for p in range(len(sizes))]
    rdd = spark.sparkContext.parallelize(range(len(sizes)), len(sizes)).flatMap(lambda p: rows[p])
    return spark.createDataFrame(rdd, "features array<float>, label double")


@pytest.mark.spark
@pytest.mark.parametrize("sync,checkpoint", [("blockmanager", False), ("blockmanager", True), ("ring", True)])
def test_distri_events_equal_its_log_and_norms_equal_the_local_oracle(spark, tmp_path, sync, checkpoint):
    """Norms are computed on the executors; they equal the local engine's on the same samples."""
    sizes = [20, 28]
    x, y = data()
    oracle = local_optimizer(MaxIteration(6), partition_sizes=sizes).set_tensorboard(tmp_path / "local",
                                                                                     weights_every=2)
    oracle.optimize()
    df = partitioned_df(spark, x, y, sizes)
    opt = DistriOptimizer(mlp(SIZES, seed=0), CrossEntropyLoss(), SGD(momentum=0.9), df, batch_size=BATCH,
                          end_trigger=MaxIteration(6), learning_rate=0.1, seed=3, num_partitions=2, sync=sync)
    opt.set_progress(False).set_validation(df, [Top1Accuracy()], trigger=EveryEpoch())
    if checkpoint:  # a checkpoint runs the pending update itself: its norms must still be written
        opt.set_checkpoint(str(tmp_path / "ckpt"), SeveralIteration(3))
    model = opt.set_tensorboard(tmp_path / "distri", weights_every=2).optimize()
    tags, expected = read_scalars(tmp_path / "distri"), read_scalars(tmp_path / "local")
    assert_matches_history(tags, opt.history, {
        "train/loss": "loss", "train/lr": "lr", "train/samples_s": "samples_s", "time/compute_ms": "compute_ms",
        "time/sync_ms": "sync_ms", "time/data_ms": "data_ms", "time/overhead_ms": "overhead_ms",
        "validation/Top1Accuracy": "Top1Accuracy"})
    norm_tags = sorted(t for t in expected if "norm" in t)
    assert norm_tags == sorted(t for t in tags if "norm" in t) and len(norm_tags) == 2 + 2 * 4
    for tag in norm_tags:
        assert sorted(tags[tag]) == [2, 4, 6], tag
        np.testing.assert_allclose([tags[tag][s] for s in (2, 4, 6)], [expected[tag][s] for s in (2, 4, 6)],
                                   rtol=1e-4, err_msg=tag)
    np.testing.assert_allclose(tags["norms/weights"][6], np.linalg.norm(model.parameters_flat()[0]), rtol=1e-6)


@pytest.mark.spark
def test_nnclassifier_tensorboard_dir_gets_the_fit_events(spark, tmp_path):
    x, y = data()
    df = partitioned_df(spark, x, y, [24, 24])
    clf = NNClassifier(model=mlp(SIZES, seed=0), maxEpoch=2, batchSize=BATCH, numPartitions=2, progress=False,
                       validationMetrics=["top1", "loss"], tensorboardDir=str(tmp_path / "tb"))
    fitted = clf.setValidation(df).fit(df)
    tags = read_scalars(tmp_path / "tb")
    assert sorted(tags["train/loss"]) == list(range(1, 13))
    for epoch, row in enumerate(fitted.history, start=1):
        assert tags["validation/Top1Accuracy"][6 * epoch] == pytest.approx(row["val_Top1Accuracy"], rel=1e-6)
        assert tags["validation/Loss"][6 * epoch] == pytest.approx(row["val_Loss"], rel=1e-6)
        mean_loss = np.mean([tags["train/loss"][s] for s in range(6 * epoch - 5, 6 * epoch + 1)])
        assert mean_loss == pytest.approx(row["loss"], rel=1e-6)


def test_outputs_close_every_writer_even_when_the_progress_bar_fails_to(tmp_path):
    from bigdl_py.engine.step_outputs import StepOutputs
    from bigdl_py.engine.training_log import read_log

    opt = local_optimizer().set_tensorboard(str(tmp_path / "tb")).set_training_log(str(tmp_path / "log.jsonl"))
    outputs = StepOutputs(opt, 0, 0, 0)
    outputs.write(dict(step=1, epoch=0, loss=0.5, lr=0.1, samples=4, samples_s=100.0), {})

    class BrokenBar:
        def close(self):
            raise OSError("stderr closed")

    outputs.progress = BrokenBar()
    with pytest.raises(OSError, match="stderr closed"):
        outputs.close()
    assert read_scalars(str(tmp_path / "tb"))["train/loss"] == {1: 0.5}  # the writer still flushed
    assert read_log(str(tmp_path / "log.jsonl")) == [dict(step=1, epoch=0, loss=0.5, lr=0.1, samples=4,
                                                          samples_s=100.0)]
