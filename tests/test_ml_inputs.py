"""NNModel input forms (dense/sparse vectors, arrays, numeric columns), bad rows, damaged saves."""
import os

import numpy as np
import pytest

from bigdl_py.ml import NNClassificationModel, NNClassifier, NNModel
from bigdl_py.nn import zoo
from bigdl_py.serving import predict

pytestmark = pytest.mark.spark

X = np.random.default_rng(0).normal(size=(30, 4))


@pytest.fixture(scope="module")
def module():
    return zoo.mlp((4, 8, 3), seed=5)


def expected(module, x):
    return predict(module, x.astype(np.float32)).astype(np.float64)


def raw_of(df, model):
    rows = model.transform(df).orderBy("id").collect()
    return np.array([r.rawPrediction.toArray() for r in rows]), rows


def test_dense_sparse_array_and_column_forms_give_the_same_scores(spark, module):
    from pyspark.ml.linalg import Vectors

    sparse_x = X.copy()
    sparse_x[::3, 1:] = 0.0
    vec = spark.createDataFrame(
        [(i, Vectors.sparse(4, [0], [X[i, 0]]) if i % 3 == 0 else Vectors.dense(X[i])) for i in range(30)],
        ["id", "features"]).repartition(3)
    arr = spark.createDataFrame([(i, X[i].tolist()) for i in range(30)], "id long, features array<double>")
    cols = spark.createDataFrame([(i, *map(float, X[i])) for i in range(30)], ["id", "a", "b", "c", "d"])
    model = NNClassificationModel(model=module, inferenceBatchSize=7)
    np.testing.assert_allclose(raw_of(vec, model)[0], expected(module, sparse_x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(raw_of(arr, model)[0], expected(module, X), rtol=1e-5, atol=1e-6)
    by_cols = NNClassificationModel(model=module, featuresCol=["a", "b", "c", "d"])
    np.testing.assert_allclose(raw_of(cols, by_cols)[0], expected(module, X), rtol=1e-5, atol=1e-6)


def test_generic_model_prediction_is_double_or_vector(spark):
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import DoubleType

    df = spark.createDataFrame([(i, X[i].tolist()) for i in range(30)], "id long, features array<float>")
    one = NNModel(model=zoo.mlp((4, 1), seed=1), featureShape=[4]).transform(df)
    two = NNModel(model=zoo.mlp((4, 2), seed=1)).transform(df)
    assert one.schema["prediction"].dataType == DoubleType() and two.schema["prediction"].dataType == VectorUDT()
    got = np.array([r.prediction for r in one.orderBy("id").collect()])
    np.testing.assert_allclose(got, expected(zoo.mlp((4, 1), seed=1), X)[:, 0], rtol=1e-5, atol=1e-6)


def bad_df(spark):
    rows = [(i, X[i].tolist()) for i in range(10)] + [(10, None), (11, [1.0, 2.0]), (12, [1.0, float("nan"), 0.0, 0.0])]
    return spark.createDataFrame(rows, "id long, features array<double>").coalesce(1)


def test_bad_rows_fail_naming_column_expected_size_and_counts(spark, module):
    model = NNClassificationModel(model=module)
    with pytest.raises(Exception) as e:
        model.transform(bad_df(spark)).collect()
    msg = str(e.value)
    assert "features column 'features'" in msg and "3 bad row(s)" in msg and "expected 4 finite values" in msg
    for cause in ("1 with null features", "1 with wrong length", "1 with non finite"):
        assert cause in msg


def test_skip_policy_gives_null_outputs_and_counts_them(spark, module):
    model = NNClassificationModel(model=module, badRows="skip")
    rows = sorted(model.transform(bad_df(spark)).collect(), key=lambda r: r.id)  # one action: one pass
    assert model.badRowCount() == 3
    assert all(r.prediction is None and r.probability is None for r in rows[10:])
    np.testing.assert_allclose([r.rawPrediction.toArray() for r in rows[:10]], expected(module, X[:10]),
                               rtol=1e-5, atol=1e-6)


def test_schema_errors_are_raised_before_any_job(spark, module):
    df = spark.createDataFrame([(1, "x")], "id long, text string")
    model = NNClassificationModel(model=module)
    with pytest.raises(ValueError, match="features column 'features' not found"):
        model.transform(df)
    with pytest.raises(ValueError, match="features column 'text': expected a Spark ML vector.*received string"):
        model.setFeaturesCol("text").transform(df)
    with pytest.raises(ValueError, match=r"output column\(s\) \['prediction'\] already exist"):
        NNClassificationModel(model=module, featuresCol="f").transform(
            spark.createDataFrame([([1.0] * 4, 0.0)], "f array<double>, prediction double"))


def test_fit_rejects_bad_rows_and_labels_with_counts(spark):
    bad = spark.createDataFrame([(X[i].tolist(), float(i % 2)) for i in range(20)] + [([1.0], 0.0)],
                                "features array<double>, label double")
    clf = NNClassifier(model=zoo.mlp((4, 2), seed=0), maxEpoch=1, numPartitions=2)
    with pytest.raises(ValueError, match=r"1 bad row\(s\) \(1 with wrong length; expected 4 finite values"):
        clf.fit(bad)
    labels = spark.createDataFrame([(X[i].tolist(), float(i % 4)) for i in range(20)],
                                   "features array<double>, label double")
    with pytest.raises(ValueError, match=r"label column 'label': expected 0-based class labels in \[0, 1\].*"
                                         r"found values in \[0, 3\]"):
        clf.fit(labels)
    with pytest.raises(ValueError, match="label column 'y' not found"):
        clf.setLabelCol("y").fit(labels)


def test_loading_a_non_model_or_damaged_path_is_a_clear_error(spark, module, tmp_path):
    with pytest.raises(ValueError, match="not a saved Spark ML stage"):
        NNClassificationModel.load(str(tmp_path / "nothing"))
    path = str(tmp_path / "m")
    NNClassificationModel(model=module).save(path)
    with pytest.raises(ValueError, match=r"holds a 'bigdl_py.ml.model.NNClassificationModel', expected "
                                         r"'bigdl_py.ml.model.NNModel'"):
        NNModel.load(path)
    with open(os.path.join(path, "model", "weights.npz"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="weights.npz: corrupt or unsafe weights file"):
        NNClassificationModel.load(path)
    os.remove(os.path.join(path, "model", "config.json"))
    with pytest.raises(ValueError, match="config.json: missing"):
        NNClassificationModel.load(path)


def test_one_output_classifier_trains_with_bce_and_scores_both_classes(spark):
    from bigdl_py.nn import BCEWithLogitsLoss

    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    df = spark.createDataFrame([(i, X[i].tolist(), float(y[i])) for i in range(30)],
                               "id long, features array<double>, label double")
    clf = NNClassifier(model=zoo.mlp((4, 1), seed=0), maxEpoch=30, batchSize=30, optimizer="sgd",
                       learningRate=0.5, numPartitions=1)
    fitted = clf.fit(df)
    module = fitted.getModel()
    assert type(module) is type(clf.getModel()) and predict(module, X[:2].astype(np.float32)).shape == (2, 1)
    _, rows = raw_of(df, fitted)
    z = predict(module, X.astype(np.float32))[:, 0].astype(np.float64)
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose([r.rawPrediction.toArray() for r in rows], np.stack([-z, z], 1), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose([r.probability.toArray() for r in rows], np.stack([1 - p, p], 1), rtol=1e-5,
                               atol=1e-6)
    assert np.mean([r.prediction == t for r, t in zip(rows, y)]) > 0.9
    assert isinstance(clf._default_criterion(1), BCEWithLogitsLoss)


def test_early_stopping_bookkeeping_and_no_improvement_trigger():
    from bigdl_py.engine.base import BaseOptimizer
    from bigdl_py.optim.triggers import MaxEpoch, NoImprovement

    opt = BaseOptimizer(zoo.mlp((2, 2)), None, None, batch_size=4).set_early_stopping("auc")
    stop = MaxEpoch(10) | NoImprovement(2)
    states = []
    for epoch, auc in enumerate([0.6, 0.7, 0.69, 0.7, 0.65], start=1):
        opt._track_best({"AUC": auc, "Loss": 1.0}, epoch)
        states.append(opt.make_state(epoch, epoch, True, 1.0, auc))
    assert [s.since_best for s in states] == [0, 0, 1, 2, 3] and opt.early_stopping["best_epoch"] == 2
    assert [stop(s) for s in states] == [False, False, False, True, True]
    loss = BaseOptimizer(zoo.mlp((2, 2)), None, None, batch_size=4).set_early_stopping("loss")
    assert loss.early_stopping["mode"] == "min"
    with pytest.raises(ValueError, match="'AUC' is not among the validation metrics"):
        opt._track_best({"Loss": 1.0}, 6)


def test_empty_output_column_names_are_not_computed(spark, module):
    """As in Spark ML: an output column named "" is left out; all of them empty is an error."""
    df = spark.createDataFrame([(i, X[i].tolist()) for i in range(30)], "id long, features array<double>")
    full = NNClassificationModel(model=module)
    only = NNClassificationModel(model=module, predictionCol="", rawPredictionCol="")
    out = only.transform(df)
    assert out.columns == ["id", "features", "probability"]
    a = [r.probability.toArray() for r in full.transform(df).orderBy("id").collect()]
    b = [r.probability.toArray() for r in out.orderBy("id").collect()]
    np.testing.assert_array_equal(a, b)
    raw_only = NNClassificationModel(model=module, predictionCol="", probabilityCol="")
    assert raw_only.transform(df).columns == ["id", "features", "rawPrediction"]
    with pytest.raises(ValueError, match="every output column name is empty"):
        NNClassificationModel(model=module, predictionCol="", probabilityCol="", rawPredictionCol="").transform(df)
    with pytest.raises(ValueError, match="every output column name is empty"):
        NNModel(model=module, predictionCol="").transform(df)
