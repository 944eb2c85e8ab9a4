"""RDD of numpy samples -> the same per-partition numpy files a DataFrame gives."""
import numpy as np
import pytest

from bigdl_py.data.partitions import load_partition
from bigdl_py.data.rdd_input import materialize_rdd

pytestmark = pytest.mark.spark


def all_rows(data):
    parts = [load_partition(data.location, p, data.feature_shape) for p in range(data.num_partitions)]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def test_samples_keep_their_shape_order_and_labels(spark):
    rng = np.random.default_rng(0)
    samples = [(rng.normal(size=(4, 3, 1)).astype(np.float32), i % 3) for i in range(50)]
    data = materialize_rdd(spark.sparkContext.parallelize(samples, 3), num_partitions=3)
    x, y = all_rows(data)
    assert data.feature_shape == (4, 3, 1) and sum(data.sizes) == 50 and data.label_range == (0.0, 2.0)
    np.testing.assert_array_equal(x, np.stack([s[0] for s in samples]))
    np.testing.assert_array_equal(y, [s[1] for s in samples])


def test_empty_partition_and_repartition(spark):
    samples = [(np.ones(2), 1.0), (np.zeros(2), 0.0)]
    data = materialize_rdd(spark.sparkContext.parallelize(samples, 4), feature_shape=(2,), num_partitions=4)
    assert sorted(data.sizes) == [0, 0, 1, 1]
    data = materialize_rdd(spark.sparkContext.parallelize(samples, 1), num_partitions=2)
    assert sum(data.sizes) == 2 and data.num_partitions == 2


def bad_samples():
    return [(np.ones(2), 0), (np.ones(3), 1), (np.array([np.nan, 1.0]), 1), (np.ones(2), None), (np.ones(2), 1)]


def test_bad_samples_fail_with_counts(spark):
    with pytest.raises(ValueError) as e:
        materialize_rdd(spark.sparkContext.parallelize(bad_samples(), 2))
    msg = str(e.value)
    assert "RDD samples" in msg and "3 bad row(s)" in msg
    for cause in ("1 with wrong length", "1 with non finite", "1 with null label"):
        assert cause in msg


def test_skip_policy_drops_and_counts(spark):
    data = materialize_rdd(spark.sparkContext.parallelize(bad_samples(), 2), policy="skip")
    x, y = all_rows(data)
    assert len(x) == 2 and data.bad == dict(null_features=0, wrong_length=1, non_finite=1, null_label=1)


def test_wrong_shape_and_non_pairs_are_named(spark):
    rdd = spark.sparkContext.parallelize([(np.ones(6), 0)])
    with pytest.raises(ValueError, match=r"feature_shape \(2, 2\) holds 4 values.*has 6"):
        materialize_rdd(rdd, feature_shape=(2, 2))
    with pytest.raises(ValueError, match="expected a \\(features, label\\) pair"):
        materialize_rdd(spark.sparkContext.parallelize([np.ones(3)]))
    with pytest.raises(ValueError, match="no samples"):
        materialize_rdd(spark.sparkContext.emptyRDD())
