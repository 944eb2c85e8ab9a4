"""Thread counts for the kernels, set at the API boundary.

Kernels are single-threaded by default (one model replica per core, as BigDL
does). A Spark task that owns a whole executor calls set_num_threads(cores).

n threads split a minibatch into tasks (kernels/parallel.py); BLAS stays at one
thread inside each task. Letting OpenBLAS thread the GEMMs instead bought nothing
on a quiet machine (its GEMMs here are small: convolutions run in cache-sized
chunks) and collapsed on a loaded one, where every call waits for a thread the OS
has not scheduled (docs/ARCHITECTURE.md, "Threads").
"""
from threadpoolctl import threadpool_limits

from . import parallel

_blas_limit = None


def set_num_threads(n):
    """Use n threads for the kernels in this process (one BLAS thread per task)."""
    global _blas_limit
    parallel.set_threads(n)  # checks n
    _blas_limit = threadpool_limits(limits=1, user_api="blas")  # kept alive: the limit holds while referenced


def get_num_threads():
    return parallel.get_threads()
