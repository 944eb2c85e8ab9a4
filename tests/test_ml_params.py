"""The NN estimators' and models' Spark ML params: declared once, visible to readers, checked when set."""
import inspect
import json
import pydoc

import numpy as np
import pytest

from bigdl_py.ml import NNClassificationModel, NNClassifier, NNEstimator, NNModel, NNRegressor, ParamValueError
from bigdl_py.nn import zoo
from bigdl_py.nn.io import save_model
from bigdl_py.optim.optimizers import optimizers_get

CLASSES = [NNEstimator, NNClassifier, NNRegressor, NNModel, NNClassificationModel]
OWN_ARGUMENTS = {NNEstimator: ["model", "criterion"], NNClassifier: ["model", "criterion"],
                 NNRegressor: ["model", "criterion"], NNModel: ["model"], NNClassificationModel: ["model"]}

# The defaults as the hand-written signatures had them before the params table (NNClassifier's).
DEFAULTS_BEFORE = dict(
    featuresCol="features", labelCol="label", predictionCol="prediction", probabilityCol="probability",
    rawPredictionCol="rawPrediction", featureShape=None, batchSize=256, maxEpoch=5, optimizer="adam",
    learningRate=1e-3, schedule=None, validationFraction=0.0, validationMetrics=["top1", "loss"],
    earlyStoppingMetric=None, earlyStoppingPatience=None, checkpointPath=None, cacheRoot=None, lineageEvery=50,
    lineageRoot=None, numPartitions=None, seed=0, sync="blockmanager", tensorboardDir=None, progress=None,
    badRows="error", inferenceBatchSize=256)

# One value each param refuses, with what the message must say it expected.
BAD = {
    "featuresCol": ([], "a column name or a non-empty list of column names"),
    "labelCol": (3, r"a column name \(a string\)"),
    "predictionCol": (None, r"a column name \(a string\)"),
    "probabilityCol": (["p"], r"a column name \(a string\)"),
    "rawPredictionCol": (1.5, r"a column name \(a string\)"),
    "featureShape": ([28, 0, 1], r"positive integers such as \[28, 28, 1\]"),
    "batchSize": (0, "an integer >= 1"),
    "maxEpoch": (2.5, "an integer >= 1"),
    "optimizer": ("adamm", r"an optimizer name.*unknown optimizer 'adamm'"),
    "learningRate": (float("nan"), "a finite number >= 0"),
    "schedule": (42, "a learning-rate schedule name"),
    "validationFraction": (1.0, r"a number in \[0.0, 1.0\)"),
    "validationMetrics": (["top1", "acuracy"], "a list of validation metric names.*unknown metric 'acuracy'"),
    "earlyStoppingMetric": (7, "a string, or None"),
    "earlyStoppingPatience": (0, "an integer >= 1, or None"),
    "checkpointPath": (b"/tmp", "a string, or None"),
    "cacheRoot": (1, "a string, or None"),
    "lineageEvery": (-1, "an integer >= 0"),
    "lineageRoot": (["s3://b"], "a string, or None"),
    "numPartitions": (True, "an integer >= 1, or None"),
    "seed": (-5, "an integer >= 0"),
    "sync": ("gloo", r"one of \('blockmanager', 'ring', 'auto'\)"),
    "tensorboardDir": (0, "a string, or None"),
    "progress": ("on", "True, False or None"),
    "inferenceBatchSize": (None, "an integer >= 1"),
    "badRows": ("drop", r"one of \('error', 'skip'\)"),
}


def param_names(cls):
    return sorted(p.name for p in cls().params)


def test_every_param_has_a_bad_value_case_here():
    assert sorted(BAD) == param_names(NNClassifier)
    assert set(param_names(NNModel)) < set(param_names(NNClassificationModel)) < set(BAD)


def test_defaults_are_the_ones_of_before():
    clf = NNClassifier()
    assert {name: clf.getOrDefault(name) for name in param_names(NNClassifier)} == DEFAULTS_BEFORE
    assert NNRegressor().getValidationMetrics() == ["loss", "mae"]
    model = NNClassificationModel()
    assert {name: model.getOrDefault(name) for name in param_names(NNClassificationModel)} == {
        name: DEFAULTS_BEFORE[name] for name in param_names(NNClassificationModel)}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_signatures_list_every_param_keyword_only_with_its_default(cls):
    instance = cls()
    for method in (cls, cls.setParams):
        parameters = inspect.signature(method).parameters
        keywords = {name: p for name, p in parameters.items() if name != "self"}
        expected = OWN_ARGUMENTS[cls] if method is cls else []
        assert sorted(keywords) == sorted(expected + param_names(cls))
        assert all(p.kind is p.KEYWORD_ONLY for p in keywords.values())
        for name in param_names(cls):
            assert keywords[name].default == instance.getOrDefault(name), name


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_help_names_every_param_with_its_default_and_getters_setters_are_in_dir(cls):
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    instance = cls()
    for param in instance.params:
        assert f"{param.name}={instance.getOrDefault(param)!r}: {param.doc}" in text, param.name
        suffix = param.name[0].upper() + param.name[1:]
        assert {"get" + suffix, "set" + suffix} <= set(dir(cls))
        assert f"get{suffix}(self)" in text and f"set{suffix}(self, value)" in text
    assert "getSync" in dir(NNClassifier) and "getSync" not in dir(NNModel)


def test_setters_chain_and_getters_read_back_converted_values():
    clf = NNClassifier()
    assert clf.setBatchSize(np.int32(64)).setMaxEpoch(3.0).setFeatureShape(784) is clf
    assert (clf.getBatchSize(), clf.getMaxEpoch(), clf.getFeatureShape()) == (64, 3, [784])
    assert type(clf.getBatchSize()) is int and type(clf.getMaxEpoch()) is int
    sgd = optimizers_get("sgd", momentum=0.9)
    clf.setParams(optimizer=sgd, featuresCol=("a", "b"), validationMetrics=("auc", "loss"), progress=False)
    assert clf.getOptimizer() == sgd.get_config() and json.loads(json.dumps(clf.getOptimizer())) == clf.getOptimizer()
    assert (clf.getFeaturesCol(), clf.getValidationMetrics(), clf.getProgress()) == (["a", "b"], ["auc", "loss"],
                                                                                    False)
    assert clf.setSchedule(None).getSchedule() is None and clf.setNumPartitions(None).getNumPartitions() is None


def routes(name, value):
    """Every way a value reaches a param, each on a fresh classifier."""
    suffix = name[0].upper() + name[1:]
    return {
        "constructor": lambda: NNClassifier(**{name: value}),
        "setter": lambda: getattr(NNClassifier(), "set" + suffix)(value),
        "setParams": lambda: NNClassifier().setParams(**{name: value}),
        "set": lambda: (lambda c: c.set(c.getParam(name), value))(NNClassifier()),
        "copy": lambda: (lambda c: c.copy({c.getParam(name): value}))(NNClassifier()),
        "fit_params": lambda: (lambda c: c.fit(None, {c.getParam(name): value}))(NNClassifier()),
    }


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_refused_the_same_way_on_every_route(name):
    value, expected = BAD[name]
    for route, set_it in routes(name, value).items():
        with pytest.raises(ParamValueError, match=rf"^{name}: expected {expected}") as refused:
            set_it()
        assert f"received {value!r}" in str(refused.value), route
    assert issubclass(ParamValueError, ValueError)


def test_a_refused_value_leaves_every_param_as_it_was():
    clf = NNClassifier(batchSize=32)
    with pytest.raises(ParamValueError, match=r"batchSize: expected an integer >= 1, received -3$"):
        clf.setBatchSize(-3)
    with pytest.raises(ParamValueError, match="batchSize"):
        clf.setParams(maxEpoch=9, batchSize=None)
    assert (clf.getBatchSize(), clf.getMaxEpoch()) == (32, 5)


def test_model_params_are_checked_too():
    with pytest.raises(ParamValueError, match=r"badRows: expected one of \('error', 'skip'\), received 'ignore'"):
        NNModel(badRows="ignore")
    with pytest.raises(ParamValueError, match="probabilityCol"):
        NNClassificationModel().setProbabilityCol(None)


def test_positional_and_unknown_arguments_are_type_errors_naming_the_call():
    with pytest.raises(TypeError, match=r"NNClassifier\(\): too many positional arguments"):
        NNClassifier(zoo.mlp((4, 2)))
    with pytest.raises(TypeError, match=r"NNRegressor\(\): got an unexpected keyword argument 'batchsize'"):
        NNRegressor(batchsize=3)
    with pytest.raises(TypeError, match=r"NNModel.setParams\(\): got an unexpected keyword argument 'labelCol'"):
        NNModel().setParams(labelCol="y")


def test_copy_keeps_set_values_and_defaults_and_takes_checked_extras():
    clf = NNClassifier(model=zoo.mlp((4, 2)), batchSize=16, sync="ring")
    twin = clf.copy({clf.maxEpoch: 2})
    assert (twin.getBatchSize(), twin.getSync(), twin.getMaxEpoch(), twin.getLabelCol()) == (16, "ring", 2, "label")
    assert clf.getMaxEpoch() == 5 and twin.uid == clf.uid and twin.getModel() is clf.getModel()


# Metadata the hand-written params wrote (before the params table), as saved by Spark 4.3.
SAVED_BEFORE = {
    "model": {"class": "bigdl_py.ml.model.NNClassificationModel", "timestamp": 1796624558518,
              "sparkVersion": "4.3.0", "uid": "NNClassificationModel_d8978dd788b7",
              "paramMap": {"featureShape": [4], "badRows": "skip", "inferenceBatchSize": 64, "probabilityCol": "p"},
              "defaultParamMap": {"rawPredictionCol": "rawPrediction", "probabilityCol": "probability",
                                  "predictionCol": "prediction", "featuresCol": "features", "featureShape": None,
                                  "inferenceBatchSize": 256, "badRows": "error"},
              "bigdl_py": {"history": [{"epoch": 1, "loss": 0.5}], "skippedRows": {}}},
    "estimator": {"class": "bigdl_py.ml.estimator.NNClassifier", "timestamp": 1796624570094,
                  "sparkVersion": "4.3.0", "uid": "NNClassifier_31a4d71da43b",
                  "paramMap": {"optimizer": {"class_name": "SGD", "config": {"momentum": 0.9, "dampening": 0.0,
                                                                             "nesterov": False,
                                                                             "weight_decay": 0.0}},
                               "schedule": {"class_name": "Cosine", "config": {"t_max": 10, "eta_min": 0.0}},
                               "validationMetrics": ["auc", "loss"],
                               "earlyStoppingPatience": 2, "sync": "ring", "maxEpoch": 3},
                  "defaultParamMap": dict(DEFAULTS_BEFORE), "bigdl_py": {"criterion": None}},
}


def write_saved(path, metadata, module):
    (path / "metadata").mkdir(parents=True)
    (path / "metadata" / "part-00000").write_text(json.dumps(metadata) + "\n")
    save_model(module, str(path / "model"))
    return str(path)


@pytest.mark.spark
def test_stages_saved_before_the_params_table_load_with_their_values(spark, tmp_path):
    module = zoo.mlp((4, 2), seed=0)
    model = NNClassificationModel.load(write_saved(tmp_path / "m", SAVED_BEFORE["model"], module))
    assert (model.getFeatureShape(), model.getBadRows(), model.getInferenceBatchSize()) == ([4], "skip", 64)
    assert (model.getProbabilityCol(), model.getRawPredictionCol(), model.isSet("predictionCol")) == (
        "p", "rawPrediction", False)
    assert model.history == [{"epoch": 1, "loss": 0.5}] and model.uid == "NNClassificationModel_d8978dd788b7"
    np.testing.assert_array_equal(model.getModel().parameters_flat()[0], module.parameters_flat()[0])
    est = NNClassifier.load(write_saved(tmp_path / "e", SAVED_BEFORE["estimator"], module))
    saved = SAVED_BEFORE["estimator"]["paramMap"]
    assert (est.getOptimizer(), est.getSchedule()) == (saved["optimizer"], saved["schedule"])
    assert (est.getValidationMetrics(), est.getEarlyStoppingPatience(), est.getSync(), est.getMaxEpoch(),
            est.getBatchSize()) == (["auc", "loss"], 2, "ring", 3, 256)


@pytest.mark.spark
def test_a_saved_stage_with_a_bad_value_fails_to_load_naming_the_param(spark, tmp_path):
    metadata = json.loads(json.dumps(SAVED_BEFORE["model"]))
    metadata["paramMap"]["inferenceBatchSize"] = 0
    with pytest.raises(ParamValueError, match="inferenceBatchSize: expected an integer >= 1, received 0"):
        NNClassificationModel.load(write_saved(tmp_path / "m", metadata, zoo.mlp((4, 2))))


@pytest.mark.spark
def test_pipeline_with_an_estimator_saves_and_loads_its_params(spark, tmp_path):
    from pyspark.ml import Pipeline

    clf = NNClassifier(model=zoo.mlp((4, 2)), batchSize=32, validationMetrics=["auc"], featureShape=[4])
    Pipeline(stages=[clf]).write().save(str(tmp_path / "p"))
    loaded = Pipeline.load(str(tmp_path / "p")).getStages()[0]
    assert type(loaded) is NNClassifier and loaded.uid == clf.uid
    assert {p.name: loaded.getOrDefault(p) for p in loaded.params} == {p.name: clf.getOrDefault(p) for p in clf.params}
    assert sorted(p.name for p in loaded.params if loaded.isSet(p)) == ["batchSize", "featureShape",
                                                                      "validationMetrics"]
