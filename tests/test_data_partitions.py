"""DataFrame -> per-partition numpy: feature column kinds and bad rows."""
import numpy as np
import pytest

from bigdl_py.data.partitions import load_partition, materialize_dataframe

pytestmark = pytest.mark.spark


def all_rows(data):
    parts = [load_partition(data.location, p, data.feature_shape) for p in range(data.num_partitions)]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def test_array_column_is_converted_once_per_partition(spark):
    df = spark.createDataFrame([([1.0, 2.0], 0.0), ([3.0, 4.0], 1.0), ([5.0, 6.0], 1.0)],
                               "features array<double>, label double").coalesce(2)
    data = materialize_dataframe(df, num_partitions=2)
    x, y = all_rows(data)
    assert sorted(map(tuple, x.tolist())) == [(1, 2), (3, 4), (5, 6)]
    assert x.dtype == np.float32 and sum(data.sizes) == 3 and data.label_range == (0.0, 1.0)


def test_dense_and_sparse_vectors_and_feature_shape(spark):
    from pyspark.ml.linalg import Vectors

    df = spark.createDataFrame([(Vectors.dense([1.0, 0.0, 2.0, 0.0]), 1.0),
                                (Vectors.sparse(4, [1, 3], [5.0, 7.0]), 0.0)], ["features", "label"])
    data = materialize_dataframe(df, feature_shape=(2, 2, 1), num_partitions=1)
    x, y = all_rows(data)
    assert x.shape == (2, 2, 2, 1)
    np.testing.assert_array_equal(x[y == 0].reshape(-1), [0, 5, 0, 7])


def test_list_of_numeric_columns(spark):
    df = spark.createDataFrame([(1, 2.5, 0), (3, 4.5, 1)], "a int, b double, label int")
    x, y = all_rows(materialize_dataframe(df, features_col=["a", "b"], num_partitions=1))
    np.testing.assert_array_equal(x[np.argsort(y)], [[1, 2.5], [3, 4.5]])


def test_missing_column_is_named(spark):
    df = spark.createDataFrame([([1.0], 0.0)], "feats array<double>, label double")
    with pytest.raises(ValueError, match="features column 'features' not found"):
        materialize_dataframe(df)
    with pytest.raises(ValueError, match="label column 'y' not found"):
        materialize_dataframe(df, features_col="feats", label_col="y")


def bad_df(spark):
    rows = [([1.0, 2.0], 0.0), ([1.0], 1.0), (None, 1.0), ([float("nan"), 1.0], 0.0), ([1.0, 1.0], None),
            ([2.0, 2.0], 1.0)]
    return spark.createDataFrame(rows, "features array<double>, label double")


def test_bad_rows_fail_before_training_naming_column_and_counts(spark):
    with pytest.raises(ValueError) as e:
        materialize_dataframe(bad_df(spark), num_partitions=2)
    msg = str(e.value)
    assert "'features'" in msg and "4 bad row(s)" in msg
    for cause in ("1 with null features", "1 with wrong length", "1 with non finite", "1 with null label"):
        assert cause in msg


def test_skip_policy_drops_and_counts_bad_rows(spark):
    data = materialize_dataframe(bad_df(spark), num_partitions=2, policy="skip")
    x, _ = all_rows(data)
    assert sum(data.sizes) == 2 and sorted(x[:, 0].tolist()) == [1.0, 2.0]
    assert data.bad == dict(null_features=1, wrong_length=1, non_finite=1, null_label=1)


def test_feature_shape_must_match_row_width(spark):
    df = spark.createDataFrame([([1.0, 2.0, 3.0], 0.0)], "features array<double>, label double")
    with pytest.raises(ValueError, match=r"1 bad row\(s\) \(1 with wrong length; expected 4 finite values"):
        materialize_dataframe(df, feature_shape=(2, 2))
    columns = spark.createDataFrame([(1.0, 2.0, 3.0, 0.0)], "a double, b double, c double, label double")
    with pytest.raises(ValueError, match=r"feature_shape \(2, 2\) holds 4 values.*3 values per row"):
        materialize_dataframe(columns, ["a", "b", "c"], feature_shape=(2, 2))


def test_width_is_read_from_the_schema_where_declared(spark):
    from pyspark.ml.feature import VectorAssembler

    from bigdl_py.data.partitions import feature_width

    df = spark.createDataFrame([(1.0, 2.0, 3.0, 0.0)], "a double, b double, c double, label double")
    assembled = VectorAssembler(inputCols=["a", "b", "c"], outputCol="features").transform(df)
    assert assembled.schema["features"].metadata["ml_attr"]["num_attrs"] == 3  # what is read, no Spark job
    assert feature_width(assembled, "features") == 3
    assert feature_width(df, ["a", "b"]) == 2 and feature_width(df, "a") == 1
    x, _ = all_rows(materialize_dataframe(assembled, num_partitions=1))
    np.testing.assert_array_equal(x, [[1, 2, 3]])


def test_rows_that_disagree_with_the_declared_vector_width_are_bad_rows(spark):
    from pyspark.ml.linalg import Vectors
    from pyspark.sql import functions as F

    df = spark.createDataFrame([(Vectors.dense([1.0, 2.0]), 0.0), (Vectors.dense([1.0, 2.0, 3.0]), 1.0)],
                               ["features", "label"])
    declared = df.withColumn("features", F.col("features").alias("features", metadata={
        "ml_attr": {"num_attrs": 3}}))
    data = materialize_dataframe(declared, num_partitions=1, policy="skip")
    assert data.feature_shape == (3,) and data.bad["wrong_length"] == 1 and sum(data.sizes) == 1


def test_store_grouped_reads_only_until_the_partitions_not_cached_here_are_complete(tmp_path):
    """A ring task whose executor already holds its training files (the token stage wrote them)
    reads only the validation chunks that come first in its input, then stops reading."""
    from bigdl_py.data.partitions import DataLocation, store_grouped, store_partition

    train, val = DataLocation(str(tmp_path), "train"), DataLocation(str(tmp_path), "val")
    cached_x = np.full((2, 3), 7, np.float32)
    store_partition(train.folder(), 0, cached_x, np.ones(2))
    xv, yv = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1.0, 2.0])
    records = [(0, ("slot",)), (0, (0, ("chunk", "val", 0, xv[:1], yv[:1]))),
               (0, (0, ("chunk", "val", 1, xv[1:], yv[1:]))), (0, (0, ("stats", "val", {"rows": 2}))),
               (0, (0, ("chunk", "train", 0, np.zeros((2, 3), np.float32), np.zeros(2)))),
               (0, (0, ("stats", "train", {"rows": 2})))]
    read = []

    def stream():
        for r in records:
            read.append(r)
            yield r

    store_grouped(stream(), [(val, 3), (train, 3)], [0])
    assert len(read) == 4  # the pin and the validation partition; no training record
    np.testing.assert_array_equal(load_partition(val, 0, (3,))[0], xv)
    np.testing.assert_array_equal(load_partition(train, 0, (3,))[0], cached_x)
    read.clear()
    store_grouped(stream(), [(val, 3), (train, 3)], [0])  # everything cached: nothing is read
    assert read == []
    empty = DataLocation(str(tmp_path / "elsewhere"), "train")
    store_grouped(stream(), [(DataLocation(str(tmp_path / "elsewhere"), "val"), 3), (empty, 3)], [0])
    assert len(read) == len(records)  # a new executor: both partitions are read and cached
    np.testing.assert_array_equal(load_partition(empty, 0, (3,))[0], np.zeros((2, 3)))
