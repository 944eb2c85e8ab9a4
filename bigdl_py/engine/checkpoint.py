"""Training checkpoints: weights + optimizer state + counters, written atomically.

Layout of one checkpoint (a directory `ckpt-<step>` under the checkpoint root):
    checkpoint.json          counters, seed, architecture, optimizer/schedule config,
                             slice table
    buffers.npz              non-trainable model state (BatchNorm running stats)
    slices/slice-<k>.npz     flat range [start, stop) of slice k: weights and the
                             optimizer state arrays for that range

Weights and optimizer state are stored per slice so that the executors owning the
slices of a distributed run each write their own part, and no process has to hold
the whole vector. A reader asks for any range and gets it assembled from the
overlapping slices, so a checkpoint written with one slicing (or by the local
engine, as one slice) resumes under another. Everything is written under a
temporary name and renamed into place last: a crash leaves the previous checkpoint
or a complete new one, never a half one that looks valid. Sampling is a pure
function of (seed, epoch, partition), so the counters are the whole random state.
No pickle: JSON and .npz read with allow_pickle=False.
"""
import json
import os
import re
import shutil
import tempfile
import zipfile

import numpy as np

from bigdl_py.nn.module import from_config

FORMAT = "bigdl_py.checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{10})$")


def local_path(uri):
    """Accept plain paths and file:// URIs (the Hadoop-compatible form tests use)."""
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _fsynced_write(path, write):
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def begin(root):
    """Create and return a temporary directory for a checkpoint under `root`."""
    root = local_path(root)
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=root)
    os.makedirs(os.path.join(tmp, "slices"))
    return tmp


def write_slice(tmp_dir, index, start, stop, weights, state):
    """Write slice `index`: weights[start:stop] and its optimizer state arrays."""
    if "weights" in state or "_range" in state:
        raise ValueError(f"optimizer state names 'weights' and '_range' are reserved, received {sorted(state)}")
    path = os.path.join(tmp_dir, "slices", f"slice-{index:05d}.npz")
    _fsynced_write(path, lambda f: np.savez(
        f, _range=np.array([start, stop], dtype=np.int64), weights=weights, **state))


def commit(tmp_dir, root, meta, model, keep=3):
    """Add metadata and buffers, then rename the temp dir to ckpt-<step>.

    `model` supplies the architecture and buffers (its weights come from the slices).
    Keeps the newest `keep` checkpoints. Returns the checkpoint's path.
    """
    root = local_path(root)
    buffers = dict(model.named_buffers())
    _fsynced_write(os.path.join(tmp_dir, "buffers.npz"), lambda f: np.savez(f, **buffers))
    meta = dict(meta, format=FORMAT, version=VERSION, architecture=model.get_config())
    _fsynced_write(os.path.join(tmp_dir, "checkpoint.json"), lambda f: f.write(json.dumps(meta, indent=1).encode()))
    final = os.path.join(root, f"ckpt-{int(meta['step']):010d}")
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp_dir, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save(root, meta, model, state, keep=3):
    """Write a whole checkpoint from one process (the local engine): one slice."""
    tmp = begin(root)
    weights = model.parameters_flat()[0]
    write_slice(tmp, 0, 0, weights.size, weights, state)
    return commit(tmp, root, dict(meta, slices=[[0, int(weights.size)]]), model, keep=keep)


def list_checkpoints(root):
    """Complete checkpoints under root, oldest first (temp dirs are never listed)."""
    root = local_path(root)
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if _NAME.match(n))
    return [os.path.join(root, n) for n in names]


def latest(root):
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_meta(path):
    path = local_path(path)
    meta_file = os.path.join(path, "checkpoint.json")
    try:
        with open(meta_file) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: not a checkpoint (no checkpoint.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{meta_file}: damaged checkpoint metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else meta
        raise ValueError(f"{meta_file}: expected format {FORMAT} version {VERSION}, received {found!r}")
    return meta


def check_size(path, meta, size):
    """Raise a ValueError unless the checkpoint's slices hold exactly `size` parameters."""
    stored = max((int(hi) for _, hi in meta.get("slices", [])), default=0)
    if stored != size:
        raise ValueError(f"{local_path(path)}: the checkpoint holds {stored} parameters, "
                         f"the model has {size} (a checkpoint of another model?)")


def load_range(path, start, stop):
    """(weights, optimizer state) for flat range [start, stop), assembled from the slices."""
    folder = os.path.join(local_path(path), "slices")
    arrays, covered = None, 0
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
        file = os.path.join(folder, name)
        try:
            with np.load(file, allow_pickle=False) as z:
                lo, hi = (int(v) for v in z["_range"])
                a, b = max(lo, start), min(hi, stop)
                if a >= b:
                    continue
                if arrays is None:
                    arrays = {k: np.empty(stop - start, dtype=np.float32) for k in z.files if k != "_range"}
                for k in arrays:
                    v = z[k]
                    if v.shape != (hi - lo,):
                        raise ValueError(f"array {k!r} has shape {v.shape}, its range [{lo}, {hi}) needs ({hi - lo},)")
                    arrays[k][a - start:b - start] = v[a - lo:b - lo]
                covered += b - a
        # A truncated .npz fails as a zip file (its directory sits at the end).
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{file}: damaged slice in checkpoint ({e})") from None
    if covered != stop - start:
        raise ValueError(f"{folder}: the slices cover {covered} of the {stop - start} values in [{start}, {stop})")
    weights = arrays.pop("weights") if arrays else np.empty(0, np.float32)
    return weights, arrays or {}


def load_model(path):
    """The model stored in a checkpoint: architecture, weights and buffers."""
    meta = read_meta(path)
    model = from_config(meta["architecture"])
    flat = model.parameters_flat()[0]
    flat[:] = load_range(path, 0, flat.size)[0]
    load_buffers(path, model)
    return model


def load_buffers(path, model):
    """Copy the checkpoint's buffers (BatchNorm running stats) into `model` in place."""
    buffers_file = os.path.join(local_path(path), "buffers.npz")
    try:
        with np.load(buffers_file, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{buffers_file}: damaged buffers in checkpoint ({e})") from None
    targets = dict(model.named_buffers())
    if set(stored) != set(targets):
        raise ValueError(f"{buffers_file}: expected buffers {sorted(targets)}, received {sorted(stored)}")
    for k, v in targets.items():
        np.copyto(v, stored[k])
