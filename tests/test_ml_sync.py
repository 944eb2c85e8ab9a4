"""NNClassifier trains through either sync backend and both give the same model."""
import numpy as np
import pytest

from bigdl_py.ml import NNClassifier, ParamValueError
from bigdl_py.nn import zoo

pytestmark = pytest.mark.spark


def test_ring_and_blockmanager_fits_agree(spark):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(float)
    df = spark.createDataFrame([(x[i].tolist(), float(y[i])) for i in range(200)], "features array<double>, label double")
    fitted = {sync: NNClassifier(model=zoo.mlp((4, 8, 2), seed=1), batchSize=50, maxEpoch=2, learningRate=0.05,
                                 numPartitions=2, sync=sync, validationMetrics=["loss"]).fit(df)
              for sync in ("blockmanager", "ring")}
    weights = {k: m.getModel().parameters_flat()[0] for k, m in fitted.items()}
    np.testing.assert_allclose(weights["ring"], weights["blockmanager"], rtol=1e-5, atol=1e-7)


def test_unknown_sync_is_named():
    with pytest.raises(ParamValueError, match="sync: expected one of"):
        NNClassifier(model=zoo.mlp((4, 2)), sync="gloo")
