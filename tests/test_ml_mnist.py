"""NNClassifier on an MNIST DataFrame: fit, transform, evaluators, persistence, predict_batch_udf."""
import numpy as np
import pytest

from bigdl_py.ml import NNClassificationModel, NNClassifier, make_predict_fn
from bigdl_py.nn import zoo
from bigdl_py.serving import predict

pytestmark = pytest.mark.spark

TRAIN, TEST = 3000, 600


@pytest.fixture(scope="module")
def mnist(spark):
    from pyspark.ml.linalg import Vectors

    from bigdl_py.data.mnist import load_mnist

    x_train, y_train, x_test, y_test = load_mnist(flat=True)
    make = lambda x, y: spark.createDataFrame(  # noqa: E731
        [(Vectors.dense(r.astype(np.float64)), float(t)) for r, t in zip(x, y)], ["features", "label"])
    return make(x_train[:TRAIN], y_train[:TRAIN]), make(x_test[:TEST], y_test[:TEST]), x_test[:TEST]


@pytest.fixture(scope="module")
def fitted(mnist):
    train, _, _ = mnist
    clf = NNClassifier(model=zoo.lenet5(seed=0), featureShape=[28, 28, 1], batchSize=250, maxEpoch=2,
                       learningRate=4e-3, numPartitions=2, validationFraction=0.1, inferenceBatchSize=128)
    return clf, clf.fit(train)


def test_fit_learns_and_transform_gives_typed_columns(mnist, fitted):
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import DoubleType

    clf, model = fitted
    _, test, x_test = mnist
    assert isinstance(model, NNClassificationModel)
    assert [h["epoch"] for h in model.history] == [1, 2]
    assert 0 < model.history[-1]["val_Top1Accuracy"] <= 1 and model.history[-1]["val_Loss"] > 0
    out = model.transform(test)
    types = {f.name: f.dataType for f in out.schema.fields}
    assert types["prediction"] == DoubleType() and types["probability"] == VectorUDT()
    assert types["rawPrediction"] == VectorUDT() and set(test.columns) <= set(out.columns)
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(out)
    assert accuracy > 0.7  # chance is 0.1; 22 steps of a tiny subset
    # Same numbers as the trained Module run locally, in the DataFrame's row order.
    rows = out.select("rawPrediction", "probability", "prediction").collect()
    raw = np.array([r.rawPrediction.toArray() for r in rows])
    local = predict(model.getModel(), x_test.reshape(-1, 28, 28, 1))
    np.testing.assert_allclose(raw, local, rtol=1e-5, atol=1e-5)
    probs = np.array([r.probability.toArray() for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
    assert [r.prediction for r in rows] == raw.argmax(axis=1).astype(float).tolist()
    # The estimator's own model was not trained (fit trains a copy).
    assert not np.array_equal(clf.getModel().parameters_flat()[0], model.getModel().parameters_flat()[0])


def test_model_save_load_gives_identical_predictions(spark, mnist, fitted, tmp_path):
    _, model = fitted
    _, test, _ = mnist
    path = str(tmp_path / "model")
    model.write().overwrite().save(path)
    model.write().overwrite().save(path)  # overwrite an existing save
    again = NNClassificationModel.load(path)
    assert again.getFeatureShape() == [28, 28, 1] and again.getInferenceBatchSize() == 128
    assert again.history == model.history
    a = model.transform(test).select("rawPrediction").collect()
    b = again.transform(test).select("rawPrediction").collect()
    assert [r[0] for r in a] == [r[0] for r in b]


def test_predict_batch_udf_with_make_predict_fn_matches_transform(spark, mnist, fitted):
    from pyspark.ml.functions import predict_batch_udf, vector_to_array
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, FloatType

    _, model = fitted
    _, test, _ = mnist
    logits = predict_batch_udf(make_predict_fn(model.getModel(), (28, 28, 1)),
                               return_type=ArrayType(FloatType()), batch_size=100,
                               input_tensor_shapes=[[784]])
    out = model.transform(test).withColumn("udf", logits(vector_to_array(F.col("features"), "float32")))
    rows = out.select("rawPrediction", "udf").collect()
    np.testing.assert_allclose([r.udf for r in rows], [r.rawPrediction.toArray() for r in rows], rtol=1e-5,
                               atol=1e-5)
