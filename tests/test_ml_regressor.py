"""NNRegressor validates with regression metrics by default."""
import numpy as np
import pytest

from bigdl_py.ml import NNClassifier, NNRegressor
from bigdl_py.nn import zoo

pytestmark = pytest.mark.spark


def test_regressor_validation_defaults_to_loss_and_mae_while_classifier_keeps_top1():
    assert NNRegressor().getValidationMetrics() == ["loss", "mae"]
    assert NNRegressor(validationMetrics=["mae"]).getValidationMetrics() == ["mae"]
    assert NNClassifier().getValidationMetrics() == ["top1", "loss"]


def test_regressor_with_a_validation_fraction_trains_on_continuous_targets(spark):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 0.3
    df = spark.createDataFrame([(*map(float, r), float(t)) for r, t in zip(x, y)], ["a", "b", "c", "label"])
    reg = NNRegressor(model=zoo.mlp((3, 1), seed=0), featuresCol=["a", "b", "c"], maxEpoch=2, batchSize=50,
                      numPartitions=2, validationFraction=0.25)
    history = reg.fit(df).history
    assert len(history) == 2 and all(np.isfinite(h["val_Loss"]) and np.isfinite(h["val_MAE"]) for h in history)


def frame(spark, y):
    x = np.random.default_rng(1).normal(size=(len(y), 3))
    return spark.createDataFrame([(*map(float, r), float(t)) for r, t in zip(x, y)], ["a", "b", "c", "label"])


def test_accuracy_on_continuous_targets_fails_before_training_naming_metric_and_column(spark):
    df = frame(spark, np.linspace(-1.0, 1.0, 40))
    reg = NNRegressor(model=zoo.mlp((3, 1), seed=0), featuresCol=["a", "b", "c"], maxEpoch=1, numPartitions=2,
                      validationFraction=0.25, validationMetrics=["top1", "loss", "auc"])
    with pytest.raises(ValueError, match=r"validationMetrics \['top1', 'auc'\]: need whole-number class labels, but "
                                         r"label column 'label' has 3\d value\(s\) with a fraction; validate a "
                                         r"regression with 'loss' or 'mae'"):
        reg.fit(df)


def test_regressor_on_binary_targets_may_validate_with_auc(spark):
    df = frame(spark, np.arange(40) % 2)
    reg = NNRegressor(model=zoo.mlp((3, 1), seed=0), featuresCol=["a", "b", "c"], maxEpoch=1, numPartitions=2,
                      validationFraction=0.25, validationMetrics=["auc", "loss"])
    assert 0.0 <= reg.fit(df).history[0]["val_AUC"] <= 1.0
