"""Training checkpoints: weights + optimizer state + counters, committed atomically, on any storage URI.

Layout of one checkpoint (a directory `ckpt-<step>` under the checkpoint root, a plain
path or a URI that bigdl_py.storage accepts: file://, hdfs://, s3:// or s3a://):
    checkpoint.json          counters, seed, architecture, optimizer/schedule config,
                             slice table
    buffers.npz              non-trainable model state (BatchNorm running stats)
    slices/slice-<k>.npz     flat range [start, stop) of slice k: weights and the
                             optimizer state arrays for that range
    _COMMITTED               the commit marker, written last

Weights and optimizer state are stored per slice so that the executors owning the
slices of a distributed run each write their own part straight to the root's storage,
and no process has to hold the whole vector. A reader asks for any range and gets it
assembled from the overlapping slices, so a checkpoint written with one slicing (or by
the local engine, as one slice) resumes under another.

Commit: where a folder renames atomically (local disks, NFS, HDFS) the checkpoint is
built under a temporary name and renamed into place; on object stores (S3) it is
written in place. Either way `_COMMITTED` is written last, and only folders holding it
are listed, so a crash leaves the previous checkpoint or a complete new one, never a
half one that looks valid; the next commit deletes what such a write left (temp
folders and marker-less `ckpt-<step>` of earlier steps). Sub-folders that are not `ckpt-<step>` (such as the
`lineage/` recovery points of DistriOptimizer) are never listed. Sampling is a pure
function of (seed, epoch, partition), so the counters are the whole random state.
No pickle: JSON and .npz read with allow_pickle=False.
"""
import io
import json
import re
import uuid
import zipfile

import numpy as np

from bigdl_py import storage
from bigdl_py.nn.module import from_config

FORMAT = "bigdl_py.checkpoint"
VERSION = 1
MARKER = "_COMMITTED"
LINEAGE_DIR = "lineage"
_NAME = re.compile(r"^ckpt-(\d{10})$")
_TEMP = re.compile(r"^\.tmp-ckpt-(\d{10})-[0-9a-f]{8}$")


def _name(step):
    return f"ckpt-{int(step):010d}"


def _npz(arrays):
    return lambda f: np.savez(f, **arrays)


def begin(root, step):
    """Create and return the folder (a URI under `root`) to write the checkpoint of `step` into.

    Args:
        root: the checkpoint root, a path or storage URI reachable by every executor.
        step: the step the checkpoint is taken after.

    Example:
        tmp = begin("s3://bucket/ckpt", 12)
        write_slice(tmp, 0, 0, w.size, w, state)
        commit(tmp, "s3://bucket/ckpt", meta, model)
    """
    storage.makedirs(root)
    if storage.renames_atomically(root):
        tmp = storage.join(root, f".tmp-{_name(step)}-{uuid.uuid4().hex[:8]}")
    else:
        tmp = storage.join(root, _name(step))
        storage.remove_tree(tmp, first=MARKER)
    storage.makedirs(storage.join(tmp, "slices"))
    return tmp


def write_slice(tmp_dir, index, start, stop, weights, state):
    """Write slice `index`: weights[start:stop] and its optimizer state arrays."""
    if "weights" in state or "_range" in state:
        raise ValueError(f"optimizer state names 'weights' and '_range' are reserved, received {sorted(state)}")
    storage.write_bytes(storage.join(tmp_dir, "slices", f"slice-{index:05d}.npz"),
                        _npz(dict(_range=np.array([start, stop], dtype=np.int64), weights=weights, **state)))


def commit(tmp_dir, root, meta, model, keep=3):
    """Add metadata, buffers and the commit marker, and move the folder to `ckpt-<step>` where it can.

    `model` supplies the architecture and buffers (its weights come from the slices).
    Keeps the newest `keep` checkpoints. Returns the checkpoint's path or URI.
    """
    buffers = dict(model.named_buffers())
    storage.write_bytes(storage.join(tmp_dir, "buffers.npz"), _npz(buffers))
    meta = dict(meta, format=FORMAT, version=VERSION, architecture=model.get_config())
    storage.write_bytes(storage.join(tmp_dir, "checkpoint.json"), json.dumps(meta, indent=1).encode())
    storage.write_bytes(storage.join(tmp_dir, MARKER), b"")
    final = storage.join(root, _name(meta["step"]))
    if tmp_dir != final:
        storage.remove_tree(final, first=MARKER)
        storage.move(tmp_dir, final)
    for old in list_checkpoints(root)[:-keep] + _abandoned(root, int(meta["step"])):
        storage.remove_tree(old, first=MARKER)
    return final


def _abandoned(root, step):
    """Folders of writes cut short before `step`'s commit: temp names and marker-less `ckpt-<s>`, s < step."""
    found = []
    for name in storage.listdir(root):
        temp, final = _TEMP.match(name), _NAME.match(name)
        if temp and int(temp.group(1)) < step:
            found.append(storage.join(root, name))
        elif final and int(final.group(1)) < step and not storage.isfile(storage.join(root, name, MARKER)):
            found.append(storage.join(root, name))
    return found


def save(root, meta, model, state, keep=3):
    """Write a whole checkpoint from one process (the local engine): one slice."""
    tmp = begin(root, meta["step"])
    weights = model.parameters_flat()[0]
    write_slice(tmp, 0, 0, weights.size, weights, state)
    return commit(tmp, root, dict(meta, slices=[[0, int(weights.size)]]), model, keep=keep)


def list_checkpoints(root):
    """Committed checkpoints under root, oldest first (temp and marker-less folders are never listed)."""
    names = [n for n in storage.listdir(root) if _NAME.match(n)]
    return [storage.join(root, n) for n in names if storage.isfile(storage.join(root, n, MARKER))]


def latest(root):
    """The newest committed checkpoint under `root`, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_meta(path):
    meta_file = storage.join(path, "checkpoint.json")
    try:
        meta = json.loads(storage.read_bytes(meta_file))
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
        raise ValueError(f"{path}: the checkpoint holds {stored} parameters, "
                         f"the model has {size} (a checkpoint of another model?)")


def load_range(path, start, stop):
    """(weights, optimizer state) for flat range [start, stop), assembled from the slices."""
    folder = storage.join(path, "slices")
    arrays, covered = None, 0
    for name in storage.listdir(folder):
        file = storage.join(folder, name)
        try:
            with np.load(io.BytesIO(storage.read_bytes(file)), allow_pickle=False) as z:
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


def restore_state(path, state, stored):
    """Copy optimizer state `stored` (load_range of checkpoint `path`) into `state`, checking every array is there."""
    for k, v in state.items():
        if k not in stored:
            raise ValueError(f"{path}: optimizer state {k!r} missing from the checkpoint")
        v[:] = stored[k]


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
    buffers_file = storage.join(path, "buffers.npz")
    try:
        with np.load(io.BytesIO(storage.read_bytes(buffers_file)), allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{buffers_file}: damaged buffers in checkpoint ({e})") from None
    targets = dict(model.named_buffers())
    if set(stored) != set(targets):
        raise ValueError(f"{buffers_file}: expected buffers {sorted(targets)}, received {sorted(stored)}")
    for k, v in targets.items():
        np.copyto(v, stored[k])
