"""Inference on executors: a model broadcast as data, chunked prediction, Arrow features -> numpy.

`ModelBroadcast` ships a model as its JSON config plus its weights as .npz bytes
(no pickle of the Module), and rebuilds it once per Python worker: tasks that reuse
the worker reuse the model. Use it inside `mapInArrow` functions together with
`features_to_numpy` and `predict`:

    mb = ModelBroadcast(spark.sparkContext, model)
    def score(batches):
        model = mb.value()
        for batch in batches:
            x, bad = features_to_numpy(batch, "features", (28, 28, 1))
            y = predict(model, x[~bad])
            ...
"""
import io
import json
import uuid

import numpy as np

from bigdl_py.data.partitions import arrow_feature_matrix
from bigdl_py.nn.io import load_model
from bigdl_py.nn.module import Module, from_config
from bigdl_py.nn.registry import check_importable_by_name
from bigdl_py.worker_heap import settle_heap

_MODELS = {}  # per Python worker: broadcast key -> Module in eval mode


def model_to_bytes(model):
    """(config JSON string, weights as .npz bytes) of a Module."""
    if not isinstance(model, Module):
        raise ValueError(f"expected a bigdl_py Module, received {type(model).__name__}")
    buf = io.BytesIO()
    np.savez(buf, **model.state_dict())
    return json.dumps(model.get_config()), buf.getvalue()


def model_from_bytes(config_json, weights):
    """Inverse of model_to_bytes (weights read with allow_pickle=False)."""
    model = from_config(json.loads(config_json))
    with np.load(io.BytesIO(weights), allow_pickle=False) as npz:
        model.load_state_dict({k: npz[k] for k in npz.files})
    return model


class ModelBroadcast:
    """A model broadcast to executors as config + weights, built once per Python worker.

    Args:
        sc: the SparkContext.
        model: a Module (its current weights are broadcast; later changes are not).
    """

    def __init__(self, sc, model):
        config_json, weights = model_to_bytes(model)
        check_importable_by_name(model)
        self.key = uuid.uuid4().hex
        self._broadcast = sc.broadcast((config_json, weights))

    @classmethod
    def from_dir(cls, sc, path):
        """Broadcast a model saved with bigdl_py.nn.save_model (clear ValueError if `path` is not one)."""
        return cls(sc, load_model(path))

    def value(self):
        """The model in eval mode; built on first use in this Python worker, then cached."""
        if self.key not in _MODELS:
            model = model_from_bytes(*self._broadcast.value)
            model.eval()
            _MODELS[self.key] = model
        return _MODELS[self.key]

    def unpersist(self):
        """Release the broadcast on the executors (this object cannot be used afterwards)."""
        _MODELS.pop(self.key, None)
        self._broadcast.unpersist()


def _rows(x):
    return len(x[0]) if isinstance(x, (list, tuple)) else len(x)


def _chunk(x, lo, hi):
    if isinstance(x, (list, tuple)):
        return [np.ascontiguousarray(v[lo:hi], dtype=np.float32) for v in x]
    return np.ascontiguousarray(x[lo:hi], dtype=np.float32)


def predict(model, x, batch_size=256):
    """Eval-mode forward of `x` in chunks of `batch_size` rows.

    Args:
        model: a Module (its training flag is restored afterwards).
        x: an array (n, ...) or, for a multi-input model, a list of arrays.
        batch_size: rows per forward call (bounds the activation memory).

    Returns:
        float32 array (n, ...), or a list of them for a multi-output model.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, received {batch_size!r}")
    n = _rows(x)
    was_training = model.training
    model.eval()
    try:
        outs = [model.infer(_chunk(x, lo, min(lo + batch_size, n))) for lo in range(0, n, batch_size)]
    finally:
        model.train(was_training)
    settle_heap(("predict", id(model)))  # in a Spark task: once its kernels are loaded
    if not outs:
        probe = model_output_shapes(model, x)
        return [np.zeros((0,) + s, np.float32) for s in probe] if len(probe) > 1 else np.zeros((0,) + probe[0],
                                                                                               np.float32)
    if isinstance(outs[0], (list, tuple)):
        return [np.concatenate([o[j] for o in outs]).astype(np.float32, copy=False) for j in range(len(outs[0]))]
    return np.concatenate(outs).astype(np.float32, copy=False)


def model_output_shapes(model, x):
    """Per-sample output shapes, from a forward of one zero sample shaped like `x`'s rows."""
    zero = ([np.zeros((1,) + v.shape[1:], np.float32) for v in x] if isinstance(x, (list, tuple))
            else np.zeros((1,) + x.shape[1:], np.float32))
    was_training = model.training
    model.eval()
    try:
        out = model.infer(zero)
    finally:
        model.train(was_training)
    return [o.shape[1:] for o in out] if isinstance(out, (list, tuple)) else [out.shape[1:]]


def features_to_numpy(batch, features_col, feature_shape):
    """Features of an Arrow RecordBatch as (x, bad).

    Args:
        batch: pyarrow.RecordBatch (as mapInArrow gives it).
        features_col: an array<float|double> column, a Spark ML vector column
            (dense or sparse), or a list of numeric column names.
        feature_shape: per-row shape, e.g. (28, 28, 1) or (784,).

    Returns:
        x: float32 (n, *feature_shape); bad rows are zeros.
        bad: bool (n,), True for a null row, a wrong length or a NaN/Inf value.
    """
    shape = tuple(int(d) for d in np.atleast_1d(feature_shape))
    x, causes = arrow_feature_matrix(batch, features_col, int(np.prod(shape)))
    bad = causes["null_features"] | causes["wrong_length"] | causes["non_finite"]
    return x.reshape((len(x),) + shape), bad
