"""Where converted datasets live, and how they are written (atomically)."""
import os
import tempfile

import numpy as np


def cache_dir():
    """$BIGDL_PY_CACHE, else ~/.cache/bigdl_py/datasets (created on demand)."""
    path = os.environ.get("BIGDL_PY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "bigdl_py", "datasets")
    os.makedirs(path, exist_ok=True)
    return path


def atomic_save_npz(path, **arrays):
    """Write an .npz under a temporary name, fsync it, then rename into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
