"""A user-defined layer trains and predicts on Spark when its module is shipped with sc.addPyFile.

The layer module (README's Scale) is written to tmp_path, outside every executor's
sys.path: executors rebuild the model from its config and must import the module
that the config names. Checked on local[2] (Python workers of the driver's JVM)
and on a local-cluster (executor JVMs and Python workers of their own).
"""
import json
import sys
import uuid

import numpy as np
import pytest

from tests.cluster_fixtures import REPO, Process
from tests.custom_layer_job import run, write_layer_module

pytestmark = pytest.mark.spark
JOB = f"{REPO}/tests/custom_layer_job.py"


def new_tag():
    return uuid.uuid4().hex[:8]  # executors' Python workers outlive a test: fresh module and class names


def assert_trained_and_predicted(result):
    for name in ("NNClassifier", "NNEstimator"):
        out = result[name]
        assert not np.allclose(out["scale"], 1.0), f"{name}: the Scale layer's weights did not train"
        np.testing.assert_allclose(out["transform"], out["transform_driver"], rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(out["udf"], out["udf_driver"], rtol=1e-5, atol=1e-6, err_msg=name)


def assert_names_class_module_and_shipping(message, tag):
    assert f"'Scale{tag}'" in message and f"'user_layers_{tag}'" in message, message[-2000:]
    assert f"sc.addPyFile('user_layers_{tag}.py')" in message, message[-2000:]


def test_custom_layer_fits_transforms_and_predicts_on_local_executors(spark, tmp_path):
    path = write_layer_module(tmp_path, new_tag())
    assert_trained_and_predicted(run(spark, path))


def test_custom_layer_whose_module_is_not_shipped_fails_naming_class_module_and_addpyfile(spark, tmp_path):
    tag = new_tag()
    with pytest.raises(Exception) as err:
        run(spark, write_layer_module(tmp_path, tag), ship=False)
    assert_names_class_module_and_shipping(str(err.value), tag)


@pytest.mark.slow
def test_custom_layer_on_a_local_cluster_with_executor_processes_of_its_own(tmp_path):
    shipped, unshipped = new_tag(), new_tag()
    cmd = [sys.executable, JOB, "--master", "local-cluster[2,1,1024]",
           "--shipped", write_layer_module(tmp_path, shipped), "--unshipped", write_layer_module(tmp_path, unshipped)]
    proc = Process(cmd, tmp_path / "job.log")
    try:
        assert proc.wait(420) == 0, proc.log()[-3000:]
    finally:
        proc.kill()
    lines = [line for line in proc.log().splitlines() if line.startswith('{"shipped"')]
    assert lines, proc.log()[-3000:]
    result = json.loads(lines[-1])
    assert_trained_and_predicted(result["shipped"])
    assert result["unshipped"] is not None, "a run whose layer module was not shipped succeeded"
    assert_names_class_module_and_shipping(result["unshipped"], unshipped)


@pytest.fixture
def main_layer():
    """A registered layer class that says it was defined in __main__, as a notebook's would."""
    from bigdl_py.nn import Module, register
    from bigdl_py.nn.registry import _REGISTRY

    name = f"MainScale{new_tag()}"
    cls = register(type(name, (Module,), {"__module__": "__main__",
                                          "forward": lambda self, x: x, "backward": lambda self, x, g: g}))
    yield cls
    _REGISTRY.pop(name)


def test_layer_defined_in_main_fails_on_the_driver_before_anything_is_shipped(spark, main_layer):
    from bigdl_py.ml import NNClassifier, make_predict_fn
    from bigdl_py.nn import Linear, Sequential
    from bigdl_py.serving import ModelBroadcast

    model = Sequential(Linear(4, 2), main_layer())
    expected = rf"'{main_layer.__name__}' was defined in __main__ .*move the class into a module file.*addPyFile"
    df = spark.createDataFrame([([0.0] * 4, 0.0)], "features array<double>, label double")
    with pytest.raises(ValueError, match=expected):
        NNClassifier(model=model).fit(df)
    with pytest.raises(ValueError, match=expected):
        make_predict_fn(model)
    with pytest.raises(ValueError, match=expected):
        ModelBroadcast(spark.sparkContext, model)
