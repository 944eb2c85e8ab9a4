"""NNEstimator's storage settings: the checkpoint, cache and lineage settings of DistriOptimizer,
and checkpoints (early stopping's too) on an S3 server on loopback (moto)."""
import numpy as np
import pytest

from bigdl_py import storage
from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.ml import NNClassifier, NNEstimator, ParamValueError
from bigdl_py.nn import zoo
from tests.s3_server import s3_endpoint, s3_root  # noqa: F401 (fixtures)

pytestmark = pytest.mark.spark


def test_storage_settings_have_distri_optimizer_defaults_and_are_checked():
    est = NNEstimator()
    assert (est.getCheckpointPath(), est.getCacheRoot(), est.getLineageEvery(), est.getLineageRoot()) == (
        None, None, 50, None)
    est = NNClassifier(cacheRoot="/x", lineageEvery=0, lineageRoot="s3://b/rec")
    assert (est.getCacheRoot(), est.getLineageEvery(), est.getLineageRoot()) == ("/x", 0, "s3://b/rec")
    with pytest.raises(ParamValueError, match="lineageEvery: expected an integer >= 0, received -1"):
        NNClassifier(lineageEvery=-1)


def test_classifier_with_early_stopping_checkpoints_to_s3(spark, s3_root, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(float)
    df = spark.createDataFrame([(r.tolist(), float(t)) for r, t in zip(x, y)], "features array<float>, label double")
    root = storage.join(s3_root, "ckpt")
    clf = NNClassifier(model=zoo.mlp((4, 8, 2), seed=0), maxEpoch=3, batchSize=40, numPartitions=2,
                       validationFraction=0.25, earlyStoppingMetric="top1", earlyStoppingPatience=2,
                       checkpointPath=root, lineageEvery=1, cacheRoot=str(tmp_path / "cache"), progress=False)
    fitted = clf.fit(df)
    assert [ckpt.read_meta(p)["epoch"] for p in ckpt.list_checkpoints(root)] == [1, 2, 3]
    assert storage.listdir(storage.join(root, ckpt.LINEAGE_DIR)) == []
    assert len(fitted.history) == 3
    clf.write().overwrite().save(storage.join(s3_root, "estimator"))
    again = NNClassifier.load(storage.join(s3_root, "estimator"))
    assert (again.getCheckpointPath(), again.getLineageEvery()) == (root, 1)
