"""Label columns that do not suit the estimator fail on the driver, naming the column, before training."""
import numpy as np
import pytest

from bigdl_py.ml import NNClassifier, NNRegressor
from bigdl_py.nn import zoo

pytestmark = pytest.mark.spark

X = np.random.default_rng(0).normal(size=(30, 4))


@pytest.mark.parametrize("estimator", [NNClassifier, NNRegressor])
def test_string_label_column_is_rejected_before_any_job_naming_the_column_and_type(spark, estimator):
    df = spark.createDataFrame([(X[i].tolist(), "good" if i % 2 else "bad") for i in range(20)],
                               "features array<double>, status string")
    est = estimator(model=zoo.mlp((4, 2), seed=0), labelCol="status", maxEpoch=1, numPartitions=2)
    with pytest.raises(ValueError, match=r"label column 'status': expected a numeric column, found string; "
                                         r"index string labels with pyspark.ml.feature.StringIndexer"):
        est.fit(df)


def test_string_validation_label_column_is_rejected_too(spark):
    train = spark.createDataFrame([(X[i].tolist(), float(i % 2)) for i in range(20)],
                                  "features array<double>, y double")
    val = spark.createDataFrame([(X[i].tolist(), str(i % 2)) for i in range(20)],
                                "features array<double>, y string")
    clf = NNClassifier(model=zoo.mlp((4, 2), seed=0), labelCol="y", maxEpoch=1, numPartitions=2).setValidation(val)
    with pytest.raises(ValueError, match=r"label column 'y': expected a numeric column, found string"):
        clf.fit(train)


def test_classifier_rejects_fractional_labels_on_the_driver_naming_the_column(spark):
    df = spark.createDataFrame([(X[i].tolist(), 0.5 * (i % 3)) for i in range(21)],
                               "features array<double>, target double")
    clf = NNClassifier(model=zoo.mlp((4, 2), seed=0), labelCol="target", maxEpoch=1, numPartitions=2)
    with pytest.raises(ValueError, match=r"label column 'target': expected whole-number class labels \(0, 1, ...\), "
                                         r"found 7 value\(s\) with a fraction; index labels with .*StringIndexer"):
        clf.fit(df)
