"""A user-defined layer's config names its module; a process that lacks the class imports it by name.

The "other process" is simulated by dropping the class from the registry and its
module from sys.modules, as a fresh Spark executor or Python session has neither.
"""
import json
import os
import sys
import uuid

import numpy as np
import pytest

from bigdl_py.nn import Linear, Sequential, from_config, load_model, save_model
from bigdl_py.nn import registry
from tests.custom_layer_job import import_from, write_layer_module


@pytest.fixture
def user_layer(tmp_path, monkeypatch):
    """(class, module name, folder) of a layer module written to tmp_path and imported."""
    tag = uuid.uuid4().hex[:8]
    path = write_layer_module(tmp_path, tag)
    cls = import_from(path).LAYER
    yield cls, f"user_layers_{tag}", tmp_path
    registry._REGISTRY.pop(cls.__name__, None)
    sys.modules.pop(cls.__module__, None)


def forget(cls):
    """This process no longer knows the class, as a fresh executor would not."""
    del registry._REGISTRY[cls.__name__]
    del sys.modules[cls.__module__]


def test_config_of_a_user_layer_names_its_module_and_builtin_configs_do_not(user_layer):
    cls, module, _ = user_layer
    config = Sequential(Linear(2, 2), cls(2)).get_config()
    assert "module" not in config and "module" not in config["config"]["layers"][0]
    assert config["config"]["layers"][1]["class_name"] == cls.__name__
    assert config["config"]["layers"][1]["module"] == module
    json.dumps(config)


def test_from_config_imports_the_module_of_an_unknown_layer_class(user_layer, monkeypatch):
    cls, module, folder = user_layer
    config = Sequential(cls(3)).get_config()
    forget(cls)
    monkeypatch.syspath_prepend(str(folder))
    rebuilt = from_config(config)
    assert type(rebuilt.children()[0][1]).__name__ == cls.__name__ and module in sys.modules


def test_saved_model_with_a_user_layer_loads_where_the_class_was_never_imported(user_layer, monkeypatch, tmp_path):
    cls, _, folder = user_layer
    model = Sequential(Linear(3, 3), cls(3))
    model.children()[1][1].params["w"][:] = [2.0, 3.0, 4.0]
    save_model(model, str(tmp_path / "m"))
    forget(cls)
    monkeypatch.syspath_prepend(str(folder))
    loaded = load_model(str(tmp_path / "m"))
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


def test_saved_config_without_a_module_key_still_loads(user_layer, tmp_path):
    cls, _, _ = user_layer
    path = str(tmp_path / "m")
    save_model(Sequential(Linear(3, 3), cls(3)), path)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    del config["architecture"]["config"]["layers"][1]["module"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    assert type(load_model(path).children()[1][1]) is cls


def test_unimportable_module_error_names_class_module_and_how_to_ship_it(user_layer):
    cls, module, _ = user_layer
    config = Sequential(cls(3)).get_config()
    forget(cls)
    with pytest.raises(ValueError) as err:
        from_config(config)
    message = str(err.value)
    assert f"layer class '{cls.__name__}'" in message and f"module '{module}'" in message
    assert f"sc.addPyFile('{module}.py')" in message and "--py-files" in message


def test_class_defined_in_main_error_says_to_move_it_into_a_module_file():
    config = {"class_name": "NotRegisteredAnywhere", "module": "__main__", "config": {}}
    with pytest.raises(ValueError, match=r"'NotRegisteredAnywhere' was defined in __main__.*module file.*addPyFile"):
        from_config(config)


def test_module_that_does_not_register_the_class_is_named_in_the_error():
    config = {"class_name": "NotRegisteredAnywhere", "module": "json", "config": {}}
    with pytest.raises(ValueError, match=r"module 'json' was imported but registers no layer class "
                                         r"'NotRegisteredAnywhere'; decorate the class with @register"):
        from_config(config)


@pytest.mark.parametrize("module", ["", "os; rm", "../x", 3])
def test_malformed_module_name_is_rejected_before_any_import(module):
    config = {"class_name": "NotRegisteredAnywhere", "module": module, "config": {}}
    with pytest.raises(ValueError, match=r"'NotRegisteredAnywhere': expected a dotted module name"):
        from_config(config)
