"""Keep the garbage collection PySpark runs after every task cheap.

A reused PySpark worker calls gc.collect() after each task (pyspark/daemon.py). Once
numba has loaded a model's kernels the worker's heap holds ~127,000 tracked objects
(70,000 after the imports, 56,000 more from the first forward/backward), and that
full collection took ~45 ms. The next task on the worker waited for it: in the
block-manager backend that was ~50 ms before each of a step's two tasks, as long as
LeNet-5's whole forward/backward of 512 digits.

settle_heap() moves what is alive after a worker's first task of a run into the
permanent generation (gc.freeze), out of every later collection. Frozen objects are
still freed by reference counting; reference cycles among them (a model's layers
form some) are collected when the next run settles, which unfreezes first.
"""
import gc

_SETTLED = set()  # keys already settled in this process


def settle_heap(key):
    """Once per `key` in a Spark task's Python worker: collect, then freeze what survives.

    Call it after the task's work, when the kernels it needs are loaded. Outside a
    Spark task (driver, LocalOptimizer) it does nothing.
    """
    if key in _SETTLED:
        return
    from pyspark import TaskContext

    if TaskContext.get() is None:
        return
    _SETTLED.add(key)
    gc.unfreeze()  # what an earlier run froze and has since dropped (its replica) is collectable again
    gc.collect()
    gc.freeze()
