"""Where converted datasets live."""
import os


def cache_dir():
    """$BIGDL_PY_CACHE, else ~/.cache/bigdl_py/datasets (created on demand)."""
    path = os.environ.get("BIGDL_PY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "bigdl_py", "datasets")
    os.makedirs(path, exist_ok=True)
    return path
