"""Work sharing across the minibatch: independent tasks spread over this process's threads.

The caller and (threads - 1) pool threads take task indices from one shared counter,
so whoever is running does the work. A helper that the OS has not scheduled by the
time the caller runs out of tasks is cancelled rather than waited for: on a loaded
machine (more runnable threads than cores) a second thread then costs at most the
one task it is running, where a BLAS or OpenMP team waits for every member at every
call (OpenBLAS at 2 threads made a ResNet-20 training step 23x slower than at 1 on
this 2-core machine under a load of 5, see docs/ARCHITECTURE.md).

Pool threads wait for the next job spinning on a word in compiled code, without the
GIL (kernels/spin.py), for _SPIN_SECONDS after their last job, and only then sleep on a
condition: waking a sleeping thread costs 25-100 us on a 2-vCPU VM (its idle vCPU
halts), more than many tasks take. Two 50 us tasks took 123 us on two threads with
sleeping pool threads, 85-94 us with spinning ones (96 us on one thread).

Tasks must write disjoint outputs (or per-task partials the caller reduces in task
order), so the result does not depend on which thread ran which task.
"""
import itertools
import os
import threading
import time

import numpy as np

from . import spin

_threads = 1

# How long a pool thread spins for the next job, and the caller for its helpers' last
# tasks, before sleeping: kernels of a training step follow each other within a few
# hundred microseconds of Python, so a pool thread that has just worked is usually
# awake for the next one.
_SPIN_SECONDS = 0.002
# A pool thread that sees a new job spins this much longer before it takes the GIL: the
# caller holds the GIL for the few microseconds from posting the job to entering its own
# first task's compiled code, and a thread that blocks on the GIL sleeps (a wake-up, as
# above). Two 200 us tasks took 263-284 us without this wait, 231-246 with it.
_GRACE_SECONDS = 15e-6
_spin_cycles = _grace_cycles = None  # in cycle-counter units, measured once


def set_threads(n):
    """Run tasks on n threads (the caller and n - 1 pool threads)."""
    global _threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, received {n!r}")
    _threads = n


def get_threads():
    return _threads


class _Job:
    """One run_tasks call: the tasks, the shared counter that hands them out, and how
    many taken tasks are unfinished (a word the caller can spin on)."""

    def __init__(self, task, n_tasks):
        self.task, self.n_tasks = task, n_tasks
        self.counter = itertools.count()  # next() on it is atomic under the GIL
        self.running = np.zeros(1, np.int64)  # taken and not yet finished
        self.error = None

    def work(self):
        """Take and run tasks until none is left (or one has failed)."""
        while self.error is None:
            # counted as running before it takes a number: the caller, once out of
            # numbers, waits for every task a thread may have taken
            self.running[0] += 1  # under the GIL, like every change of it
            try:
                i = next(self.counter)
                if i >= self.n_tasks:
                    return
                self.task(i)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                if self.error is None:
                    self.error = e
            finally:
                self.running[0] -= 1


class _Pool:
    """Pool threads that wait for the next job on a generation word: spinning without
    the GIL for _SPIN_SECONDS after their last job, then asleep on a condition."""

    def __init__(self):
        self.generation = np.zeros(1, np.int64)
        self.job = None
        self.size = 0
        self.sleepers = 0
        self.wake = threading.Condition()

    def grow(self, helpers):
        while self.size < helpers:
            threading.Thread(target=self._loop, name=f"bigdl_py-kernels-{self.size}", daemon=True).start()
            self.size += 1

    def post(self, job):
        self.job = job
        self.generation[0] += 1
        if self.sleepers:  # read after the generation moved: a thread going to sleep re-checks it
            with self.wake:
                self.wake.notify_all()

    def _loop(self):
        seen = self.generation[0]
        while True:
            if not spin.wait_while(self.generation, seen, _spin_cycles, _grace_cycles):
                with self.wake:
                    self.sleepers += 1
                    while self.generation[0] == seen:
                        self.wake.wait()
                    self.sleepers -= 1
            seen, job = self.generation[0], self.job
            job.work()


_pool = None
_pool_lock = threading.Lock()


def _forget_pool():
    """In a forked child (a PySpark worker) the parent's pool threads do not exist."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _get_pool(helpers):
    """The shared pool, grown to at least `helpers` threads."""
    global _pool, _spin_cycles, _grace_cycles
    with _pool_lock:
        if _pool is None:
            rate = spin.cycles_per_second()
            _spin_cycles, _grace_cycles = int(_SPIN_SECONDS * rate), int(_GRACE_SECONDS * rate)
            _pool = _Pool()
        _pool.grow(helpers)
        return _pool


def run_tasks(task, n_tasks):
    """Call task(i) once for every i in range(n_tasks), on up to get_threads() threads.

    Returns when all tasks are done; an exception from a task is raised here.
    """
    helpers = min(_threads, n_tasks) - 1
    if helpers <= 0:
        for i in range(n_tasks):
            task(i)
        return
    job = _Job(task, n_tasks)
    _get_pool(helpers).post(job)
    job.work()
    # every task is taken now: wait for the ones pool threads are still running
    # (spinning, then polling, which leaves the core to them on a loaded machine)
    if job.running[0] and not spin.wait_until(job.running, 0, _spin_cycles):
        while job.running[0]:
            time.sleep(50e-6)
    if job.error is not None:
        raise job.error


# Row-block tasks of memory-bound passes: at least this many elements each (2 MB of
# float32) unless the caller says otherwise (BatchNorm and the ReLU passes set smaller
# blocks), and at most _MAX_BLOCKS. It dates from pool threads that slept between jobs,
# when a hand-off cost ~100 us (docs/ARCHITECTURE.md); to a spinning one it costs a few us.
_MIN_BLOCK_ELEMENTS = 1 << 19
_MAX_BLOCKS = 8


def blocks(rows, row_size=1, min_elements=_MIN_BLOCK_ELEMENTS):
    """[(start, stop)]: rows cut into contiguous blocks of >= min_elements for tasks.
    The count depends on the sizes only, never on the thread count, so sums of
    per-block partials (taken in block order) are the same bits at any thread count."""
    n = max(1, min(_MAX_BLOCKS, rows, rows * row_size // min_elements))
    step = -(-rows // n)
    return [(i * step, min(rows, (i + 1) * step)) for i in range(n)]


def sum_in_order(partials):
    """partials[0] + partials[1] + ... as a fresh array, added in that order: per-task partials
    reduced with a fixed rounding, whichever thread computed each."""
    total = partials[0].copy()
    for partial in partials[1:]:
        total += partial
    return total


def for_blocks(fn, rows, row_size=1, min_elements=_MIN_BLOCK_ELEMENTS):
    """fn(start, stop) for every block of blocks(rows, row_size, min_elements), as tasks."""
    bounds = blocks(rows, row_size, min_elements)
    run_tasks(lambda i: fn(*bounds[i]), len(bounds))


# A GEMM is split only above this many multiply-adds (~60 us on one core here). With pool
# threads that sleep between jobs the bar was 12M (a hand-off cost 60-100 us); with
# spinning ones, splitting the MLP's 4-8M multiply-add GEMMs as well took its two-thread
# training from 289k/291k to 298k/311k samples/s (docs/ARCHITECTURE.md).
_MIN_SPLIT_MACS = 3_000_000


# A split GEMM is cut into this many row blocks at every thread count: one per core of the
# machine (at most 8). OpenBLAS's edge kernels give the last rows of a call other bits than
# the same rows inside a taller call (Haswell sgemm: the last 4 rows of each call), so the
# cut must not follow the threads in use, or one and two threads would train differently.
_GEMM_BLOCKS = max(1, min(os.cpu_count() or 1, 8))


# Independent GEMMs (a layer's dx and dW) run as tasks of one run_tasks when together they
# hold at least this many multiply-adds: one hand-off for both, and the second thread takes
# the other GEMM whole, so a late start costs at most the one it took.
_MIN_TASK_MACS = _MIN_SPLIT_MACS // 2


def _row_blocks(a, b, out):
    """[(rows of a, rows of out)] of out = a @ b: the whole product below _MIN_SPLIT_MACS,
    else _GEMM_BLOCKS blocks of >= 32 rows."""
    rows = out.shape[0]
    parts = min(_GEMM_BLOCKS, rows // 32)
    if parts <= 1 or rows * a.shape[1] * b.shape[1] < _MIN_SPLIT_MACS:
        return [(a, out)]
    block = -(-rows // parts)
    return [(a[r : r + block], out[r : r + block]) for r in range(0, rows, block)]


def matmuls(*products):
    """out = a @ b for every (a, b, out), the row blocks of all of them as the tasks of one
    run_tasks (of none below _MIN_TASK_MACS in all).

    One block per core, at any thread count: on this 2-core machine, 8 blocks on 2 threads
    cost 355 us for the 16.8M-multiply-add GEMM, 2 blocks 250 (each extra hand-off costs
    more than a thread the OS delays holds back). The blocks do not depend on the thread
    count, so neither do the bits.
    """
    gemms = [(a_rows, b, out_rows) for a, b, out in products for a_rows, out_rows in _row_blocks(a, b, out)]
    if sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in products) < _MIN_TASK_MACS:
        for a, b, out in gemms:
            np.matmul(a, b, out=out)
        return
    run_tasks(lambda i: np.matmul(gemms[i][0], gemms[i][1], out=gemms[i][2]), len(gemms))


def matmul_rows(a, b, out):
    """out = a @ b, in row blocks computed as tasks (see matmuls)."""
    matmuls((a, b, out))
