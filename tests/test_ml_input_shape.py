"""The feature width and shape come from the model when it declares them, not from the first data row."""
import uuid

import numpy as np
import pytest

from bigdl_py.ml import NNClassifier, NNModel
from bigdl_py.nn import Conv2d, Dropout, Flatten, Input, Linear, Model, Sequential, zoo
from bigdl_py.nn.input_spec import input_spec

X = np.random.default_rng(1).normal(size=(40, 4))


def test_input_spec_reads_the_first_layer_or_the_graph_input():
    assert input_spec(Sequential(Dropout(), Linear(7, 2))).flat_width() == 7
    assert input_spec(Sequential(Flatten(), Linear(12, 2))).fits((2, 3, 2))
    assert not input_spec(Conv2d(3, 4, 3)).fits((28, 28, 1))
    x = Input((2, 2, 1))
    assert input_spec(Model(x, Flatten()(x))).shape == (2, 2, 1)
    assert input_spec(zoo.mlp((4, 2))).flat_width() == 4


def jobs_and_error(spark, action):
    """Run `action` in a job group of its own: (the Spark jobs it started, the error it raised)."""
    sc = spark.sparkContext
    group = f"shape-check-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "model/data shape check")
    try:
        action()
        error = None
    except ValueError as e:
        error = str(e)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return list(sc.statusTracker().getJobIdsForGroup(group)), error


@pytest.mark.spark
def test_a_malformed_first_row_does_not_set_the_expected_width(spark):
    rows = [([1.0], 0.0)] + [(X[i].tolist(), float(i % 2)) for i in range(40)]
    df = spark.createDataFrame(rows, "features array<double>, label double").coalesce(1)
    clf = NNClassifier(model=zoo.mlp((4, 2), seed=0), maxEpoch=1, numPartitions=2, progress=False)
    with pytest.raises(ValueError, match=r"1 bad row\(s\) \(1 with wrong length; expected 4 finite values"):
        clf.fit(df)
    fitted = clf.setBadRows("skip").fit(df)
    assert fitted.getFeatureShape() == [4]
    assert fitted.transform(df).where("prediction is not null").count() == 40


@pytest.mark.spark
def test_a_model_data_width_mismatch_fails_before_any_job_naming_both_shapes(spark):
    cols = [f"c{j}" for j in range(7)]
    df = spark.createDataFrame([(*map(float, np.arange(7) + i), 0.0) for i in range(8)], cols + ["label"])
    clf = NNClassifier(model=zoo.mlp((8, 2)), featuresCol=cols, maxEpoch=1, progress=False)
    jobs, error = jobs_and_error(spark, lambda: clf.fit(df))
    assert jobs == [] and "shape (7,)" in error and "(..., 8)" in error and "in_features of Linear" in error
    conv = NNModel(model=Conv2d(3, 4, 1), featuresCol=cols[:4], featureShape=[2, 2, 1])
    jobs, error = jobs_and_error(spark, lambda: conv.transform(df))
    assert jobs == [] and "(2, 2, 1)" in error and "(?, ?, 3)" in error


@pytest.mark.spark
def test_the_job_check_sees_the_jobs_of_a_fit_that_converted_its_data(spark):
    cols = [f"c{j}" for j in range(4)]
    df = spark.createDataFrame([(*map(float, X[i]), 0.5) for i in range(8)], cols + ["label"])
    clf = NNClassifier(model=zoo.mlp((4, 2)), featuresCol=cols, maxEpoch=1, progress=False)
    jobs, error = jobs_and_error(spark, lambda: clf.fit(df))
    assert jobs and "label column 'label'" in error


@pytest.mark.spark
def test_a_graph_input_gives_the_feature_shape(spark):
    x = Input((2, 2, 1))
    model = Model(x, Linear(4, 1)(Flatten()(Conv2d(1, 1, 1)(x))))
    df = spark.createDataFrame([(X[i].tolist(),) for i in range(5)], "features array<double>")
    assert NNModel(model=model).transform(df).where("prediction is not null").count() == 5
