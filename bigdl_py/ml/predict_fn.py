"""`make_predict_fn` for pyspark.ml.functions.predict_batch_udf."""
import uuid

import numpy as np

from bigdl_py.nn.registry import check_importable_by_name
from bigdl_py.serving import model_from_bytes, model_to_bytes, predict

_BUILT = {}  # per Python worker: id of the shipped bytes -> Module in eval mode


def make_predict_fn(model, feature_shape=None, batch_size=256):
    """A zero-argument function returning `predict(inputs) -> outputs`, as predict_batch_udf wants.

    The model travels as its config JSON and .npz weight bytes (never a pickled
    Module) and is built once per Python worker.

    Args:
        model: a bigdl_py Module.
        feature_shape: per-row shape the flat input rows are reshaped to (e.g. (28, 28, 1)).
        batch_size: rows per forward call.

    Example (`features` an array column of 784 values per row; predict_batch_udf needs
    the flat width of an array column as `input_tensor_shapes`):
        from pyspark.ml.functions import predict_batch_udf
        from pyspark.sql.types import ArrayType, FloatType
        logits = predict_batch_udf(make_predict_fn(lenet5, (28, 28, 1)), return_type=ArrayType(FloatType()),
                                   batch_size=1024, input_tensor_shapes=[[784]])
        scored = df.withColumn("logits", logits("features"))
    """
    config, weights = model_to_bytes(model)
    check_importable_by_name(model)
    key = uuid.uuid4().hex
    shape = None if feature_shape is None else tuple(np.atleast_1d(feature_shape).tolist())

    def make():
        if key not in _BUILT:
            built = model_from_bytes(config, weights)
            built.eval()
            _BUILT[key] = built
        module = _BUILT[key]

        def predict_batch(inputs):
            x = np.asarray(inputs, dtype=np.float32)
            if shape is not None:
                x = x.reshape((len(x),) + shape)
            out = predict(module, x, batch_size)
            return out.reshape(len(out), -1) if out.ndim > 2 else out

        return predict_batch

    return make
