"""numba + BLAS CPU kernels on float32 numpy arrays (installed as bigdl_py.kernels).

Kernels never import bigdl_py and compile nothing at import: each jitted function
compiles on first use and is cached on disk, so every Spark Python worker on a
machine pays the compile cost at most once.
"""
import os

# Cache compiled kernels in one per-user folder rather than beside the sources, so
# that code shipped to executors as a read-only zip still gets a disk cache.
os.environ.setdefault(
    "NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "bigdl_py", "numba")
)
