"""Bad rows at fit: the error names the caller's parameter, and skipped rows are counted on the fitted model."""
import numpy as np
import pytest

from bigdl_py.data.partitions import materialize_dataframe
from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.ml import NNClassificationModel, NNClassifier
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import SGD

pytestmark = pytest.mark.spark

X = np.random.default_rng(2).normal(size=(30, 4))


def with_bad_rows(spark, rows):
    good = [(X[i].tolist(), float(i % 2)) for i in range(len(X))]
    return spark.createDataFrame(good + rows, "features array<double>, label double")


def test_the_bad_row_error_names_the_callers_policy_parameter(spark):
    df = with_bad_rows(spark, [([1.0], 0.0)])
    with pytest.raises(ValueError, match="fix the data or set badRows='skip'"):
        NNClassifier(model=zoo.mlp((4, 2)), maxEpoch=1, numPartitions=2, progress=False).fit(df)
    with pytest.raises(ValueError, match="fix the data or set bad_rows='skip'"):
        DistriOptimizer(zoo.mlp((4, 2)), CrossEntropyLoss(), SGD(), df, batch_size=8, num_partitions=2)
    with pytest.raises(ValueError, match="fix the data or set policy='skip'"):
        materialize_dataframe(df, num_partitions=2)


def test_rows_skipped_at_fit_are_counted_on_the_fitted_model(spark, tmp_path):
    train = with_bad_rows(spark, [([1.0], 0.0), ([1.0, 2.0], 1.0), (None, 0.0)])
    val = with_bad_rows(spark, [([0.0, float("nan"), 0.0, 0.0], 0.0)])
    clf = NNClassifier(model=zoo.mlp((4, 2)), maxEpoch=1, numPartitions=2, badRows="skip", progress=False)
    fitted = clf.setValidation(val).fit(train)
    expected = dict(training=dict(wrong_length=2, null_features=1), validation=dict(non_finite=1))
    assert fitted.skippedRows == expected
    fitted.write().save(str(tmp_path / "m"))
    assert NNClassificationModel.load(str(tmp_path / "m")).skippedRows == expected
    assert clf.setValidation(None).fit(train.limit(30)).skippedRows == dict(training={})
