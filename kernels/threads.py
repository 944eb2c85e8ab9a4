"""Thread counts for BLAS and numba, set at the API boundary.

Kernels are single-threaded by default (one model replica per core, as BigDL
does). A Spark task that owns a whole executor calls set_num_threads(cores).
"""
import numba
from threadpoolctl import threadpool_limits

_blas_limit = None


def set_num_threads(n):
    """Use n threads for BLAS calls and parallel numba kernels in this process."""
    global _blas_limit
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, received {n!r}")
    _blas_limit = threadpool_limits(limits=n)  # kept alive: the limit holds while referenced
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def get_num_threads():
    return numba.get_num_threads()
