"""Save and load models as a directory: config.json (architecture) + weights.npz (state dict).

No pickle anywhere: the config is JSON and the weights are read with
`allow_pickle=False`, so loading a file never runs code. The target is a local path
or any URI of bigdl_py.storage (file://, hdfs://, s3://, s3a://). A local directory is
written atomically (temp directory beside the target, fsync, rename); on remote
storage the files are written in place and a `_COMMITTED` marker last, and a remote
model without the marker is refused as incomplete.
"""
import io
import json
import zipfile

import numpy as np

from bigdl_py import storage
from bigdl_py.atomic import atomic_directory, write_json, write_npz
from bigdl_py.nn.module import Module, from_config

FORMAT = "bigdl_py.model"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
MARKER = "_COMMITTED"


def save_model(model, path):
    """Write `model` to the directory `path` (replaced atomically if it exists).

    Args:
        model: a Module whose layers are registered (see nn.register).
        path: the target directory, a local path or a storage URI.

    Example:
        save_model(model, "s3://bucket/models/lenet")
        same = load_model("s3://bucket/models/lenet")
    """
    if not isinstance(model, Module):
        raise ValueError(f"save_model: expected a Module, received {type(model).__name__}")
    config = {"format": FORMAT, "version": VERSION, "architecture": model.get_config()}
    state = model.state_dict()
    local = storage.local_path(path)
    if local is not None:
        with atomic_directory(local) as tmp:
            write_npz(tmp, WEIGHTS_FILE, state)
            write_json(tmp, CONFIG_FILE, config)
        return
    storage.remove_tree(path, first=MARKER)
    storage.makedirs(path)
    storage.write_bytes(storage.join(path, WEIGHTS_FILE), lambda f: np.savez(f, **state))
    storage.write_bytes(storage.join(path, CONFIG_FILE), json.dumps(config, indent=1, allow_nan=False).encode())
    storage.write_bytes(storage.join(path, MARKER), b"")


def read_config(path):
    """The parsed and checked config.json of a saved model directory (path or URI)."""
    shown = storage.redacted(path)
    if not storage.isdir(path):
        raise ValueError(f"{shown}: not a saved model (no such directory)")
    file = storage.join(path, CONFIG_FILE)
    shown_file = storage.redacted(file)
    if not storage.isfile(file):
        raise ValueError(f"{shown_file}: missing; {shown} is not a complete saved model")
    if storage.local_path(path) is None and not storage.isfile(storage.join(path, MARKER)):
        raise ValueError(f"{shown}: no {MARKER} marker; the save did not complete, expected a committed saved model")
    try:
        config = json.loads(storage.read_bytes(file).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{shown_file}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{shown_file}: expected format {FORMAT!r}, found {found!r}")
    if config.get("version") != VERSION:
        raise ValueError(f"{shown_file}: unsupported version {config.get('version')!r}; this bigdl_py reads version "
                         f"{VERSION}")
    if not isinstance(config.get("architecture"), dict):
        raise ValueError(f"{shown_file}: missing the 'architecture' section")
    return config


def read_weights(file):
    """{name: ndarray} from an .npz (path or URI), refusing pickled objects and non-numeric arrays."""
    shown_file = storage.redacted(file)
    if not storage.isfile(file):
        raise ValueError(f"{shown_file}: missing weights file")
    try:
        npz = np.load(io.BytesIO(storage.read_bytes(file)), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, expected an .npz archive")
        with npz:
            state = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{shown_file}: corrupt or unsafe weights file ({type(e).__name__}: {e})") from None
    for key, array in state.items():
        if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            what = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(f"{shown_file}: entry {key!r} is {what}, expected a numeric array")
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
    file = storage.redacted(storage.join(path, CONFIG_FILE))
    try:
        model = from_config(config["architecture"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{file}: cannot rebuild the architecture ({type(e).__name__}: {e})") from None
    weights = storage.join(path, WEIGHTS_FILE)
    state = read_weights(weights)
    try:
        model.load_state_dict(state)
    except ValueError as e:
        raise ValueError(f"{storage.redacted(weights)}: {e}") from None
    return model
