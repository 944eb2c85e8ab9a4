"""Save and load models as a directory: config.json (architecture) + weights.npz (state dict).

No pickle anywhere: the config is JSON and the weights are read with
`allow_pickle=False`, so loading a file never runs code. The directory is written
atomically (temp directory beside the target, fsync, rename).
"""
import json
import os
import zipfile

import numpy as np

from bigdl_py.atomic import atomic_directory, write_json, write_npz
from bigdl_py.nn.module import Module, from_config

FORMAT = "bigdl_py.model"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"


def save_model(model, path):
    """Write `model` to the directory `path` (replaced atomically if it exists).

    Args:
        model: a Module whose layers are registered (see nn.register).
        path: the target directory.
    """
    if not isinstance(model, Module):
        raise ValueError(f"save_model: expected a Module, received {type(model).__name__}")
    config = {"format": FORMAT, "version": VERSION, "architecture": model.get_config()}
    state = model.state_dict()
    with atomic_directory(path) as tmp:
        write_npz(tmp, WEIGHTS_FILE, state)
        write_json(tmp, CONFIG_FILE, config)


def read_config(path):
    """The parsed and checked config.json of a saved model directory."""
    if not os.path.isdir(path):
        raise ValueError(f"{path}: not a saved model (no such directory)")
    file = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(file):
        raise ValueError(f"{file}: missing; {path} is not a complete saved model")
    try:
        with open(file, "rb") as f:
            config = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{file}: expected format {FORMAT!r}, found {found!r}")
    if config.get("version") != VERSION:
        raise ValueError(f"{file}: unsupported version {config.get('version')!r}; this bigdl_py reads version "
                         f"{VERSION}")
    if not isinstance(config.get("architecture"), dict):
        raise ValueError(f"{file}: missing the 'architecture' section")
    return config


def read_weights(file):
    """{name: ndarray} from an .npz, refusing pickled objects and non-numeric arrays."""
    if not os.path.isfile(file):
        raise ValueError(f"{file}: missing weights file")
    try:
        npz = np.load(file, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, expected an .npz archive")
        with npz:
            state = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{file}: corrupt or unsafe weights file ({type(e).__name__}: {e})") from None
    for key, array in state.items():
        if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            what = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(f"{file}: entry {key!r} is {what}, expected a numeric array")
    return state


def load_model(path):
    """Rebuild a model saved by `save_model` and load its weights.

    Every tensor's name and shape is checked against the rebuilt model. The model
    comes back in training mode, as built; call `.eval()` for inference.

    Raises:
        ValueError naming the file for a missing or incomplete directory, bad JSON,
        a wrong format or version, or a corrupt, truncated or pickled weights file.
    """
    config = read_config(path)
    file = os.path.join(path, CONFIG_FILE)
    try:
        model = from_config(config["architecture"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{file}: cannot rebuild the architecture ({type(e).__name__}: {e})") from None
    weights = os.path.join(path, WEIGHTS_FILE)
    state = read_weights(weights)
    try:
        model.load_state_dict(state)
    except ValueError as e:
        raise ValueError(f"{weights}: {e}") from None
    return model
