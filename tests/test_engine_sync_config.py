"""sync= takes a backend config (Ring, BlockManager, Auto) or a name; options are checked when made."""
import json
import math
import warnings

import numpy as np
import pytest

from bigdl_py.engine import Auto, BlockManager, DistriOptimizer, LocalOptimizer, Ring
from bigdl_py.engine.sync_config import sync_config
from bigdl_py.ml import NNClassifier, ParamValueError
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import SGD, MaxIteration
from tests.test_distri_equivalence import mlp_data, partitioned_df


def test_the_engine_package_exports_the_optimizers_and_configs():
    import bigdl_py.engine as engine

    assert {"DistriOptimizer", "LocalOptimizer", "Ring", "BlockManager", "Auto"} <= set(engine.__all__)
    assert LocalOptimizer.__module__ == "bigdl_py.engine.local"


@pytest.mark.parametrize("name, config", [("ring", Ring()), ("blockmanager", BlockManager()), ("auto", Auto())])
def test_a_name_means_its_config_with_default_options(name, config):
    assert sync_config(name) == config and config.name == name


def test_defaults_are_the_old_keyword_defaults():
    assert (Ring().timeout, Ring().idle_timeout, Ring().max_restarts) == (120.0, 900.0, 6)
    assert BlockManager().compress is None


@pytest.mark.parametrize("config", [Ring(timeout=60, idle_timeout=30.5, max_restarts=0), BlockManager(compress="bf16"),
                                    Auto(ring=Ring(max_restarts=2), blockmanager=BlockManager(compress="bf16"))])
def test_the_json_form_is_plain_json_and_reads_back_equal(config):
    form = json.loads(json.dumps(config.to_json()))
    assert list(form) == [config.name]
    assert sync_config(form) == config


def test_the_json_form_may_leave_options_out():
    assert sync_config({"ring": {"timeout": 60}}) == Ring(timeout=60.0)
    assert sync_config({"auto": {"ring": {"max_restarts": 1}}}) == Auto(ring=Ring(max_restarts=1))


@pytest.mark.parametrize("make, message", [
    (lambda: Ring(timeout=-1), r"^Ring: timeout: expected a finite number of seconds > 0, received -1$"),
    (lambda: Ring(timeout=0), r"^Ring: timeout: expected .* > 0, received 0$"),
    (lambda: Ring(timeout=math.inf), r"^Ring: timeout: expected a finite number"),
    (lambda: Ring(timeout="60"), r"^Ring: timeout: expected .*, received '60'$"),
    (lambda: Ring(idle_timeout=math.nan), r"^Ring: idle_timeout: expected a finite number of seconds > 0"),
    (lambda: Ring(max_restarts=-1), r"^Ring: max_restarts: expected an integer >= 0, received -1$"),
    (lambda: Ring(max_restarts=1.5), r"^Ring: max_restarts: expected an integer >= 0, received 1.5$"),
    (lambda: Ring(max_restarts=True), r"^Ring: max_restarts: expected an integer >= 0, received True$"),
    (lambda: BlockManager(compress="fp8"), r"^BlockManager: compress: expected None or 'bf16', received 'fp8'$"),
    (lambda: Auto(ring=BlockManager()), r"^Auto: ring: expected a Ring\(...\) or its options as a dict"),
    (lambda: Auto(ring={"timeout": -2}), r"^Ring: timeout: expected .*, received -2$"),
    (lambda: sync_config("mpi"), r"^sync: expected one of \('blockmanager', 'ring', 'auto'\), .*received 'mpi'$"),
    (lambda: sync_config({"ring": {"tmeout": 5}}), r"^sync 'ring': unknown option\(s\) \['tmeout'\]"),
    (lambda: sync_config({"ring": {}, "auto": {}}), r"^sync: expected .*received \{'ring'"),
])
def test_a_bad_option_fails_when_made_naming_the_option_and_what_was_expected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_configs_are_immutable():
    with pytest.raises(AttributeError):
        Ring().timeout = 5


# ---- DistriOptimizer -----------------------------------------------------------------------

def distri(df, **kwargs):
    return DistriOptimizer(zoo.mlp([8, 3], seed=1), CrossEntropyLoss(), SGD(), df, batch_size=4,
                           end_trigger=MaxIteration(2), num_partitions=1, **kwargs)


@pytest.fixture(scope="module")
def df(spark):
    x, y = mlp_data(20)
    return partitioned_df(spark, x, y, [20])


@pytest.mark.spark
@pytest.mark.parametrize("sync, expected", [
    (Ring(timeout=30), Ring(timeout=30)), ("ring", Ring()), ({"ring": {"max_restarts": 1}}, Ring(max_restarts=1)),
    (BlockManager(compress="bf16"), BlockManager(compress="bf16")), ("auto", Auto())])
def test_distri_optimizer_takes_a_config_a_name_or_the_json_form(df, sync, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spellings do not warn
        assert distri(df, sync=sync).sync == expected


@pytest.mark.spark
@pytest.mark.parametrize("old, sync, expected, spelled", [
    (dict(ring_timeout=30, max_restarts=0), "ring", Ring(timeout=30, max_restarts=0),
     "sync=Ring(timeout=30.0, idle_timeout=900.0, max_restarts=0)"),
    (dict(ring_idle_timeout=60), Ring(timeout=5), Ring(timeout=5, idle_timeout=60), "sync=Ring(timeout=5.0, "),
    (dict(compress="bf16"), "blockmanager", BlockManager(compress="bf16"), "sync=BlockManager(compress='bf16')"),
    (dict(compress="bf16", max_restarts=1), "auto",
     Auto(ring=Ring(max_restarts=1), blockmanager=BlockManager(compress="bf16")), "sync=Auto(ring=Ring("),
    (dict(max_restarts=1), "blockmanager", BlockManager(), "do nothing with the block manager"),
])
def test_the_old_keywords_still_work_and_warn_naming_the_new_spelling(df, old, sync, expected, spelled):
    with pytest.warns(DeprecationWarning, match="is deprecated; write ") as caught:
        opt = distri(df, sync=sync, **old)
    assert opt.sync == expected
    message = str(caught[0].message)
    assert spelled in message and all(f"{k}=" in message for k in old)
    assert caught[0].filename == __file__  # points at the caller's line


@pytest.mark.spark
def test_a_bad_option_in_an_old_keyword_is_named_too(df):
    with pytest.raises(ValueError, match=r"^Ring: timeout: expected .*, received -1$"):
        distri(df, sync="ring", ring_timeout=-1)


@pytest.mark.spark
def test_ring_options_reach_the_ring_driver(df):
    opt = distri(df, sync=Ring(max_restarts=0, timeout=7, idle_timeout=11))
    opt.model.parameters_flat()
    backend = opt._ring_backend(opt.sync, "run", [(0, 27)], [0, 24], None)
    try:
        assert (backend.timeout, backend.idle_timeout, backend.max_restarts) == (7.0, 11.0, 0)
        assert (backend.cfg["timeout"], backend.cfg["idle_timeout"]) == (7.0, 11.0)
    finally:
        backend.close()


# ---- the Spark ML param -------------------------------------------------------------------

def test_the_ml_param_keeps_names_and_stores_configs_as_json():
    clf = NNClassifier(model=zoo.mlp((4, 2)), sync="ring")
    assert clf.getSync() == "ring"
    clf.setSync(Ring(timeout=60))
    assert clf.getSync() == {"ring": {"timeout": 60.0, "idle_timeout": 900.0, "max_restarts": 6}}
    assert json.loads(json.dumps(clf.getSync())) == clf.getSync()
    assert clf.setSync({"blockmanager": {"compress": "bf16"}}).getSync() == {"blockmanager": {"compress": "bf16"}}


@pytest.mark.parametrize("value, reason", [
    (Ring, None), ({"ring": {"timeout": -1}}, "Ring: timeout: expected"),
    ({"ring": {"tmeout": 1}}, r"unknown option\(s\) \['tmeout'\]"), ("Ring", None)])
def test_the_ml_param_refuses_bad_configs_naming_the_param(value, reason):
    with pytest.raises(ParamValueError, match=r"^sync: expected one of \('blockmanager', 'ring', 'auto'\), a Ring") \
            as refused:
        NNClassifier(model=zoo.mlp((4, 2)), sync=value)
    if reason:
        assert refused.match(reason)


@pytest.mark.spark
def test_a_saved_estimator_keeps_its_sync_config(spark, tmp_path):
    clf = NNClassifier(model=zoo.mlp((4, 2)), sync=Auto(ring=Ring(max_restarts=1)))
    clf.save(str(tmp_path / "clf"))
    loaded = NNClassifier.load(str(tmp_path / "clf"))
    assert loaded.getSync() == clf.getSync()
    assert sync_config(loaded.getSync()) == Auto(ring=Ring(max_restarts=1))


@pytest.mark.spark
def test_fit_trains_with_a_config_as_with_its_name(spark):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4))
    y = (x[:, 0] > 0).astype(float)
    frame = spark.createDataFrame([(x[i].tolist(), float(y[i])) for i in range(100)],
                                  "features array<double>, label double")
    weights = [NNClassifier(model=zoo.mlp((4, 2), seed=1), batchSize=50, maxEpoch=1, learningRate=0.05,
                            numPartitions=2, sync=sync, validationMetrics=["loss"]).fit(frame)
               .getModel().parameters_flat()[0] for sync in ("ring", Ring(timeout=60, max_restarts=1))]
    np.testing.assert_array_equal(weights[0], weights[1])
