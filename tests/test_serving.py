"""Serving helpers: Arrow features -> numpy, chunked predict, the model broadcast as data."""
import numpy as np
import pyarrow as pa
import pytest

from bigdl_py.nn import zoo
from bigdl_py.serving import ModelBroadcast, features_to_numpy, model_from_bytes, model_to_bytes, predict

VECTOR = pa.struct([("type", pa.int8()), ("size", pa.int32()), ("indices", pa.list_(pa.int32())),
                    ("values", pa.list_(pa.float64()))])


def vectors(rows):
    return pa.array(rows, type=VECTOR)


def test_dense_and_sparse_vectors_with_bad_rows():
    col = vectors([dict(type=1, size=None, indices=None, values=[1.0, 2.0, 3.0]),
                   dict(type=0, size=3, indices=[2], values=[5.0]),
                   None,
                   dict(type=0, size=4, indices=[0], values=[1.0]),
                   dict(type=1, size=None, indices=None, values=[1.0, float("inf"), 0.0]),
                   dict(type=1, size=None, indices=None, values=[1.0])])
    batch = pa.RecordBatch.from_arrays([col], ["features"])
    x, bad = features_to_numpy(batch.slice(0), "features", 3)
    np.testing.assert_array_equal(x[:2], [[1, 2, 3], [0, 0, 5]])
    assert bad.tolist() == [False, False, True, True, True, True]
    assert not x[bad].any()  # bad rows are zeros, never garbage
    # A sliced batch (as Arrow hands them out) reads the right rows.
    x1, bad1 = features_to_numpy(batch.slice(1, 2), "features", (3, 1))
    assert x1.shape == (2, 3, 1) and x1[0, :, 0].tolist() == [0, 0, 5] and bad1.tolist() == [False, True]


def test_array_and_numeric_columns():
    arr = pa.array([[1.0, 2.0], None, [3.0, None], [4.0, 5.0, 6.0]], type=pa.list_(pa.float32()))
    x, bad = features_to_numpy(pa.RecordBatch.from_arrays([arr], ["a"]), "a", (2,))
    assert bad.tolist() == [False, True, True, True] and x[0].tolist() == [1, 2]
    cols = pa.RecordBatch.from_arrays([pa.array([1, 2, None]), pa.array([0.5, float("nan"), 1.0])], ["p", "q"])
    x, bad = features_to_numpy(cols, ["p", "q"], 2)
    assert x[0].tolist() == [1, 0.5] and bad.tolist() == [False, True, True]


def test_wrong_types_and_missing_columns_are_named():
    batch = pa.RecordBatch.from_arrays([pa.array(["a"]), pa.array([1.0])], ["s", "v"])
    with pytest.raises(ValueError, match=r"features column\(s\) \['s'\].*found \{'s': 'string'\}"):
        features_to_numpy(batch, "s", 1)
    with pytest.raises(ValueError, match="features column 'nope' not found"):
        features_to_numpy(batch, "nope", 1)
    with pytest.raises(ValueError, match="expected 2 numeric columns, found 1"):
        features_to_numpy(batch, "v", 2)


def test_predict_chunks_equal_one_forward_and_restore_mode():
    model = zoo.mlp((6, 8, 3), seed=1)
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    model.eval()
    whole = model.forward(x)
    model.train()
    got = predict(model, x, batch_size=3)
    assert model.training and got.dtype == np.float32
    np.testing.assert_allclose(got, whole, rtol=1e-6, atol=1e-6)
    assert predict(model, x[:0]).shape == (0, 3)


def test_model_bytes_round_trip():
    model = zoo.lenet5(seed=3)
    config, weights = model_to_bytes(model)
    again = model_from_bytes(config, weights)
    x = np.random.default_rng(1).normal(size=(4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(predict(again, x), predict(model, x))
    with pytest.raises(ValueError, match="expected a bigdl_py Module"):
        model_to_bytes(object())


@pytest.mark.spark
def test_broadcast_model_is_built_once_per_worker_and_predicts_like_the_driver(spark, tmp_path):
    from pyspark.ml.linalg import Vectors

    from bigdl_py.nn import save_model

    model = zoo.mlp((4, 8, 2), seed=2)
    save_model(model, str(tmp_path / "m"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    rows = [(i, Vectors.sparse(4, [0], [x[i, 0]]) if i % 5 == 0 else Vectors.dense(x[i])) for i in range(40)]
    df = spark.createDataFrame(rows, ["id", "features"]).repartition(4)
    mb = ModelBroadcast.from_dir(spark.sparkContext, str(tmp_path / "m"))

    def score(batches):
        import os

        for batch in batches:
            feats, bad = features_to_numpy(batch, "features", 4)
            out = predict(mb.value(), feats)
            yield pa.RecordBatch.from_pydict(dict(id=batch.column("id"), pid=[os.getpid()] * batch.num_rows,
                                                  identity=[id(mb.value())] * batch.num_rows,
                                                  out=pa.array(list(out), pa.list_(pa.float32()))))

    got = sorted(df.mapInArrow(score, "id long, pid long, identity long, out array<float>").collect())
    dense = x.copy()
    dense[::5, 1:] = 0.0
    np.testing.assert_allclose([r.out for r in got], predict(model, dense.astype(np.float32)), rtol=1e-5,
                               atol=1e-6)
    per_pid = {}
    for r in got:
        per_pid.setdefault(r.pid, set()).add(r.identity)
    assert all(len(ids) == 1 for ids in per_pid.values())  # one model per worker, reused across tasks
    mb.unpersist()
    with pytest.raises(ValueError, match="not a saved model"):
        ModelBroadcast.from_dir(spark.sparkContext, str(tmp_path / "missing"))


def test_whole_float32_rows_take_the_no_copy_path_and_still_flag_nan():
    arr = pa.array([[1.0, 2.0], [float("nan"), 3.0], [4.0, 5.0]], type=pa.list_(pa.float32()))
    x, bad = features_to_numpy(pa.RecordBatch.from_arrays([arr], ["f"]).slice(1), "f", 2)
    assert bad.tolist() == [True, False] and x.tolist() == [[0, 0], [4, 5]]
