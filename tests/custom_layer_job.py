"""Fit and predict on Spark with a user-defined layer from a module shipped by sc.addPyFile.

The layer module is written to a folder the executors' Python does not search, so
they can import it only if it is shipped. `run` is called in-process on local[2];
as a script it runs on any master (a local-cluster has executor JVMs of their own)
and prints as its last line JSON {"shipped": run's result, "unshipped": the error of a
run whose module was not shipped}:

    python tests/custom_layer_job.py --master "local-cluster[2,1,1024]" --shipped /tmp/x/user_layers_a.py \
        --unshipped /tmp/x/user_layers_b.py
"""
import argparse
import importlib
import json
import os
import sys

import numpy as np

LAYER_SOURCE = '''
import numpy as np
from bigdl_py.nn import Module, register

@register
class {cls}(Module):
    """y = x * w, one learned weight per feature."""
    def __init__(self, features, name=None):
        super().__init__(name)
        self.config = dict(features=features)
        self.params["w"] = np.ones(features, np.float32)
        self.grads["w"] = np.zeros(features, np.float32)

    def forward(self, x):
        self.check_input(x, (None, self.config["features"]))
        return x * self.params["w"]

    def backward(self, x, grad_y):
        self.grads["w"] += (x * grad_y).sum(axis=0)
        return grad_y * self.params["w"]

LAYER = {cls}
'''


def write_layer_module(folder, tag):
    """folder/user_layers_<tag>.py defining the layer class Scale<tag> (also named LAYER); returns the path."""
    path = os.path.join(str(folder), f"user_layers_{tag}.py")
    cls = f"Scale{tag}"
    with open(path, "w") as f:
        f.write(LAYER_SOURCE.format(cls=cls))
    return path


def import_from(path):
    """Import the module at `path` in this (driver) process only."""
    sys.path.insert(0, os.path.dirname(path))
    try:
        return importlib.import_module(os.path.splitext(os.path.basename(path))[0])
    finally:
        sys.path.pop(0)


def _data(spark, n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(float)
    df = spark.createDataFrame([([float(v) for v in row], float(t)) for row, t in zip(x, y)], ["features", "label"])
    return df.repartition(2)


def _scale_weights(module):
    return [v.tolist() for k, v in module.named_parameters() if k.endswith(".w")]


def _driver(module, rows):
    """The driver's own predictions of the rows' features."""
    from bigdl_py.serving import predict

    return predict(module, np.array([r.features for r in rows], np.float32)).tolist()


def run(spark, layers_path, ship=True, lineage_root=None):
    """Fit NNClassifier and NNEstimator on a model with the custom layer, transform, predict_batch_udf.

    Returns per estimator: the fitted Scale weights, transform's raw outputs and the
    udf's outputs, each beside the driver's own predictions of the same rows.
    """
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, FloatType

    from bigdl_py.ml import NNClassifier, NNEstimator, make_predict_fn
    from bigdl_py.nn import CrossEntropyLoss, Linear, Sequential

    layer = import_from(layers_path).LAYER
    if ship:
        spark.sparkContext.addPyFile(layers_path)
    df = _data(spark)
    out = {}
    for name, make_estimator in (("NNClassifier", NNClassifier),
                                 ("NNEstimator", lambda model: NNEstimator(model=model, criterion=CrossEntropyLoss()))):
        est = make_estimator(model=Sequential(Linear(4, 4), layer(4), Linear(4, 2)))
        est.setMaxEpoch(2).setBatchSize(32).setNumPartitions(2).setLearningRate(0.05)
        if lineage_root:  # a cluster master needs storage every executor can write for recovery points
            est.setLineageRoot(f"{lineage_root}/{name}")
        fitted = est.fit(df)
        module = fitted.getModel()
        raw_col = "rawPrediction" if name == "NNClassifier" else "prediction"
        rows = fitted.transform(df).select("features", raw_col).collect()
        udf = predict_batch_udf(make_predict_fn(module), return_type=ArrayType(FloatType()), batch_size=16,
                                input_tensor_shapes=[[4]])
        udf_rows = df.select("features", udf("features").alias("y")).collect()
        out[name] = dict(scale=_scale_weights(module),
                         transform=[list(map(float, r[1])) for r in rows], transform_driver=_driver(module, rows),
                         udf=[list(map(float, r.y)) for r in udf_rows], udf_driver=_driver(module, udf_rows))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--master", required=True)
    ap.add_argument("--shipped", required=True, help="layer module (.py) to ship with addPyFile")
    ap.add_argument("--unshipped", required=True, help="layer module (.py) not shipped: the run must fail")
    ap.add_argument("--lineage-root", default=None, help="shared folder for recovery checkpoints (clusters)")
    args = ap.parse_args(argv)
    from bigdl_py.spark_session import get_or_create_session

    spark = get_or_create_session(master=args.master, app_name="custom-layer-job",
                                  conf={"spark.task.maxFailures": "1", "spark.ui.enabled": "false",
                                        "spark.executor.memory": "512m"})
    spark.sparkContext.setLogLevel("ERROR")
    try:
        result = {"shipped": run(spark, args.shipped, lineage_root=args.lineage_root)}
        try:
            run(spark, args.unshipped, ship=False, lineage_root=args.lineage_root)
            result["unshipped"] = None
        except Exception as e:
            result["unshipped"] = f"{type(e).__name__}: {e}"
    finally:
        spark.stop()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
