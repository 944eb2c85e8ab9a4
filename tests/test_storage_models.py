"""Saved models and Spark ML persistence on storage URIs: a local folder and a real S3
server on loopback (moto); a remote save without its commit marker is refused."""
import numpy as np
import pytest

from bigdl_py import storage
from bigdl_py.ml import NNModel
from bigdl_py.ml.stage_storage import MARKER, load_stage, save_stage
from bigdl_py.nn import load_model, save_model, zoo
from tests.s3_server import local_or_s3_root, s3_endpoint, s3_root  # noqa: F401 (fixtures)


root = local_or_s3_root("models")


def drop_marker(uri):
    fs, path = storage.resolve(storage.join(uri, MARKER))
    fs.delete_file(path)


def test_save_model_and_load_model_round_trip(root):
    model = zoo.mlp((4, 8, 3), seed=3)
    uri = storage.join(root, "mlp")
    save_model(model, uri)
    save_model(zoo.mlp((4, 8, 3), seed=3), uri)  # over an existing save
    loaded = load_model(uri)
    np.testing.assert_array_equal(loaded.parameters_flat()[0], model.parameters_flat()[0])
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.eval().forward(x), model.eval().forward(x))


def test_a_remote_model_without_its_marker_is_refused(s3_root):
    uri = storage.join(s3_root, "half")
    save_model(zoo.mlp((4, 3), seed=0), uri)
    drop_marker(uri)
    with pytest.raises(ValueError, match=r"half\S*: no _COMMITTED marker; the save did not complete") as error:
        load_model(uri)
    assert "test:test@" not in str(error.value)


def pipeline_model():
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import VectorAssembler

    return PipelineModel(stages=[VectorAssembler(inputCols=["a", "b", "c"], outputCol="features"),
                                 NNModel(model=zoo.mlp((3, 4, 2), seed=5))])


@pytest.mark.spark
def test_pipeline_model_and_nn_model_round_trip(spark, root):
    from pyspark.ml import PipelineModel

    df = spark.createDataFrame([(0.1, 0.2, 0.3), (1.0, -2.0, 0.5), (3.0, 0.0, -1.0)], ["a", "b", "c"])
    model = pipeline_model()
    uri = storage.join(root, "pipeline")
    save_stage(model, uri)
    with pytest.raises(ValueError, match="already exists"):
        save_stage(model, uri)
    save_stage(model, uri, overwrite=True)
    again = load_stage(PipelineModel, uri)
    assert model.transform(df).select("prediction").collect() == again.transform(df).select("prediction").collect()
    nn = model.stages[-1]
    nn.write().overwrite().save(storage.join(root, "nn"))
    np.testing.assert_array_equal(NNModel.load(storage.join(root, "nn")).getModel().parameters_flat()[0],
                                  nn.getModel().parameters_flat()[0])


@pytest.mark.spark
def test_a_remote_stage_without_its_marker_is_refused(spark, s3_root):
    from pyspark.ml import PipelineModel

    uri = storage.join(s3_root, "pm")
    save_stage(pipeline_model(), uri)
    drop_marker(uri)
    with pytest.raises(ValueError, match=r"pm\S*: no _COMMITTED marker; expected a complete saved stage"):
        load_stage(PipelineModel, uri)


def test_training_log_and_tensorboard_reach_the_storage_uri(root, tmp_path):
    from tbparse import SummaryReader

    from bigdl_py.engine.training_log import read_log
    from bigdl_py.optim import Adam, MaxIteration
    from tests.test_engine_checkpoint import make

    log, board = storage.join(root, "run", "train.jsonl"), storage.join(root, "run", "tensorboard")
    opt = make(Adam(), end_trigger=MaxIteration(4))
    opt.set_training_log(log)
    opt.set_tensorboard(board, weights_every=2)
    opt.optimize()
    assert [r["step"] for r in read_log(log)] == [1, 2, 3, 4]
    storage.download_dir(board, str(tmp_path / "events"))
    frame = SummaryReader(str(tmp_path / "events")).scalars
    losses = frame[frame.tag == "train/loss"].sort_values("step")
    assert list(losses.step) == [1, 2, 3, 4]
    np.testing.assert_allclose(losses.value, [h["loss"] for h in opt.history], rtol=1e-6)
