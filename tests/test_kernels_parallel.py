"""Work sharing across threads (kernels/parallel.py) and the kernels that use it."""
import os
import threading
import time

import numpy as np
import pytest
from numba import njit
from threadpoolctl import threadpool_info

from bigdl_py.kernels import gemm, parallel, threads
from bigdl_py.kernels.conv import conv2d_backward, conv2d_forward, conv2d_output_shape
from bigdl_py.kernels.linear import linear_backward, linear_forward
from bigdl_py.kernels.norm import batchnorm_backward, batchnorm_forward_train
from bigdl_py.kernels.pool import maxpool2d_backward, maxpool2d_forward
from bigdl_py.kernels.rnn import lstm_backward, lstm_forward
from bigdl_py.kernels.activation import add_relu, relu_backward


@pytest.fixture
def two_threads():
    threads.set_num_threads(2)
    try:
        yield
    finally:
        threads.set_num_threads(1)


def test_every_task_runs_once_and_the_caller_takes_part(two_threads):
    seen, lock = [], threading.Lock()

    def task(i):
        with lock:
            seen.append((i, threading.current_thread().name))

    parallel.run_tasks(task, 50)
    assert sorted(i for i, _ in seen) == list(range(50))


def test_the_caller_does_not_wait_for_a_helper_that_never_starts(two_threads):
    """A busy pool thread stands in for one the OS has not scheduled: the caller runs
    every task itself and returns without it."""
    release = threading.Event()
    blocker = parallel._Job(lambda i: release.wait(60), 1)
    parallel._get_pool(1).post(blocker)
    try:
        assert parallel.spin.wait_until(blocker.running, 1, 10 ** 12)  # the pool thread is in it
        done = []
        parallel.run_tasks(lambda i: done.append(threading.current_thread().name), 10)
        assert done == [threading.current_thread().name] * 10
        assert blocker.running[0] == 1
    finally:
        release.set()
        parallel.spin.wait_until(blocker.running, 0, 10 ** 12)


@pytest.mark.parametrize("pause_s", [0.0, 0.05], ids=["spinning", "asleep"])
def test_a_pool_thread_takes_part_whether_spinning_or_asleep(two_threads, pause_s):
    # two tasks that each wait for the other: they finish only on two threads at once
    parallel.run_tasks(lambda i: None, 2)
    time.sleep(pause_s)  # past the spin: the pool thread sleeps on its condition
    meet = threading.Barrier(2, timeout=30)
    names = []
    parallel.run_tasks(lambda i: names.append((meet.wait(), threading.current_thread().name)), 2)
    assert len({name for _, name in names}) == 2


def test_spin_waits_end_at_their_budget_and_do_not_spin_without_one():
    word = np.zeros(1, np.int64)
    rate = parallel.spin.cycles_per_second()
    assert rate > 0  # x86 and arm64 have a cycle counter
    start = time.perf_counter()
    assert not parallel.spin.wait_while(word, 0, int(0.01 * rate), 0)
    assert 0.009 < time.perf_counter() - start < 1.0
    assert not parallel.spin.wait_until(word, 1, 0) and not parallel.spin.wait_while(word, 0, 0, 0)
    assert parallel.spin.wait_until(word, 0, 0) and parallel.spin.wait_while(word, 1, 0, 0)


@njit(nogil=True, cache=True)
def _work_then_set(word, n):
    s = 0.0
    for i in range(n):
        s += np.sqrt(i)
    word[0] = 1
    return s


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_spinning_thread_leaves_a_shared_cpu_to_the_thread_it_waits_for():
    """Two threads on one CPU (as a scheduler that packs a woken pool thread beside its
    waker leaves them): the spinner yields, so the worker it waits for gets the CPU,
    where a spinner holding the CPU for its time slices would take about half of it."""
    _work_then_set(np.zeros(1, np.int64), 10)
    start = time.perf_counter()
    _work_then_set(np.zeros(1, np.int64), 5_000_000)
    work = 0.05
    n = int(5_000_000 * work / (time.perf_counter() - start))
    rate = parallel.spin.cycles_per_second()
    parallel.spin.wait_until(np.ones(1, np.int64), 1, 0)  # compiled before it is measured
    cpu, old = min(os.sched_getaffinity(0)), os.sched_getaffinity(0)
    word = np.zeros(1, np.int64)

    def worker():
        os.sched_setaffinity(0, {cpu})  # this thread only
        _work_then_set(word, n)

    os.sched_setaffinity(0, {cpu})
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        spent = time.thread_time()
        assert parallel.spin.wait_until(word, 1, int(60 * rate))
        spent = time.thread_time() - spent
        thread.join()
    finally:
        os.sched_setaffinity(0, old)
    assert spent < 0.4 * work, f"the spinner took {spent * 1e3:.1f} ms of CPU while the other worked {work * 1e3:.0f} ms"


def test_a_forked_child_starts_its_own_pool_threads(two_threads):
    parallel.run_tasks(lambda i: None, 2)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child (as a PySpark worker forked from its daemon): two threads must meet
        try:
            meet = threading.Barrier(2, timeout=30)
            parallel.run_tasks(lambda i: meet.wait(), 2)
            os._exit(0)
        except BaseException:  # noqa: BLE001 - reported through the exit status
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_task_exception_reaches_the_caller(two_threads):
    def task(i):
        if i == 7:
            raise KeyError("task 7")

    with pytest.raises(KeyError, match="task 7"):
        parallel.run_tasks(task, 20)


def test_tasks_submitted_from_a_task_finish(two_threads):
    out = np.zeros((4, 4))

    def inner(row):
        return lambda j: out.__setitem__((row, j), row * 4 + j)

    parallel.run_tasks(lambda i: parallel.run_tasks(inner(i), 4), 4)
    assert np.array_equal(out.ravel(), np.arange(16))


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_thread_count_must_be_a_positive_integer(n):
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        threads.set_num_threads(n)


def test_kernel_threads_keep_blas_at_one_thread(two_threads):
    assert threads.get_num_threads() == 2
    assert {i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"} == {1}


# (x shape NHWC, w shape HWIO, stride, padding): the im2col+GEMM paths, 1x1, dx by the
# flipped conv and by col2im, batches smaller than the task count, the direct
# one-channel conv and conv_direct.py's kernel.
CASES = {
    "3x3_same_16ch": ((10, 9, 8, 16), (3, 3, 16, 8), 1, 1),
    "3x3_stride2": ((9, 11, 10, 5), (3, 3, 5, 7), 2, 1),
    "5x5_valid": ((12, 12, 12, 6), (5, 5, 6, 16), 1, 0),
    "1x1": ((7, 6, 5, 12), (1, 1, 12, 9), 1, 0),
    "batch_3": ((3, 8, 8, 4), (3, 3, 4, 6), 1, 1),
    "one_channel_5x5": ((19, 28, 28, 1), (5, 5, 1, 6), 1, 0),  # LeNet-5's conv1, 8 uneven image blocks
    "direct_3x3_16_to_32": ((11, 7, 9, 16), (3, 3, 16, 32), 1, 1),  # conv_direct forward and dx, uneven blocks
}


@pytest.mark.parametrize("case", CASES)
def test_conv_gives_the_same_bits_on_one_and_two_threads(case):
    x_shape, w_shape, stride, padding = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[3], dtype=np.float32)
    gy = rng.standard_normal(conv2d_output_shape(x_shape, w_shape, stride, padding), dtype=np.float32)
    results = []
    for n in (1, 2):
        threads.set_num_threads(n)
        try:
            y = conv2d_forward(x, w, b, stride, padding, relu=True)
            results.append((y, *conv2d_backward(x, w, gy, stride, padding)))
        finally:
            threads.set_num_threads(1)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# split above 3M multiply-adds: all but 8x64x64 (1030x129x97 in odd halves, dW too)
@pytest.mark.parametrize("n, fin, fout", [(512, 64, 256), (512, 256, 128), (1030, 129, 97), (512, 128, 64),
                                          (8, 64, 64)])
def test_linear_gives_the_same_bits_on_one_and_two_threads(n, fin, fout):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, fin), dtype=np.float32)
    w = rng.standard_normal((fout, fin), dtype=np.float32)
    b = rng.standard_normal(fout, dtype=np.float32)
    gy = rng.standard_normal((n, fout), dtype=np.float32)
    results = []
    for threads_ in (1, 2):
        threads.set_num_threads(threads_)
        try:
            results.append((linear_forward(x, w, b), *linear_backward(x, w, gy)))
        finally:
            threads.set_num_threads(1)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(results[1][0], x.astype(np.float64) @ w.T.astype(np.float64) + b, rtol=1e-4, atol=1e-4)


# in_features not a multiple of 16: BLAS; else gemm's micro-kernels, each GEMM one task
@pytest.mark.parametrize("n, fin, fout, tasks", [(512, 250, 128, [4]), (512, 120, 64, [4]), (8, 60, 64, []),
                                                 (512, 256, 128, [2]), (512, 128, 64, [2]), (8, 64, 64, [])])
def test_linear_backward_runs_dx_and_dw_as_the_tasks_of_one_split(two_threads, monkeypatch, n, fin, fout, tasks):
    """Both GEMMs (BLAS: in row blocks above 3M multiply-adds) share one hand-off; below 1.5M
    in all, none."""
    calls = []
    run_tasks = parallel.run_tasks

    def counted(task, n_tasks):
        calls.append(n_tasks)
        run_tasks(task, n_tasks)

    monkeypatch.setattr(parallel, "run_tasks", counted)
    monkeypatch.setattr(gemm, "run_tasks", counted)
    x, w, gy = np.ones((n, fin), np.float32), np.ones((fout, fin), np.float32), np.ones((n, fout), np.float32)
    dx, dw, _ = linear_backward(x, w, gy)
    assert calls == tasks
    np.testing.assert_array_equal(dx, np.full((n, fin), fout, np.float32))
    np.testing.assert_array_equal(dw, np.full((fout, fin), n, np.float32))


def test_lstm_gives_the_same_bits_on_one_and_two_threads():
    rng = np.random.default_rng(2)
    n, t, i, h = 40, 5, 16, 32  # two batch blocks, 32 + 8 rows
    f = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = f(n, t, i), f(n, h), f(n, h), f(4 * h, i), f(4 * h, h), f(4 * h), f(4 * h)
    grad_out, grad_h = f(n, t, h), f(n, h)
    results = []
    for threads_ in (1, 2):
        threads.set_num_threads(threads_)
        try:
            out, h_t, c_t, cache = lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
            results.append((out, h_t, c_t, *lstm_backward(cache, grad_out, grad_h)))
        finally:
            threads.set_num_threads(1)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_blocks_cover_the_rows_in_order_and_do_not_depend_on_threads(two_threads):
    assert parallel.blocks(10) == [(0, 10)]  # too small to split
    assert parallel.blocks(4096, 64) == [(0, 4096)]  # 256K values: less than a hand-off is worth
    bounds = parallel.blocks(16384, 128)
    assert len(bounds) == 4 and bounds[0][0] == 0 and bounds[-1][1] == 16384
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert len(parallel.blocks(16384, 128, min_elements=1 << 20)) == 2
    threads.set_num_threads(1)
    assert parallel.blocks(16384, 128) == bounds


def test_batchnorm_and_relu_over_blocks_match_float64_and_one_thread():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((64, 32, 32, 64)) * 3 + 5).astype(np.float32)  # BatchNorm in 8 blocks, ReLU in 2
    gamma, beta = rng.standard_normal(64, dtype=np.float32), rng.standard_normal(64, dtype=np.float32)
    gy = rng.standard_normal(x.shape, dtype=np.float32)
    results = []
    for n in (1, 2):
        threads.set_num_threads(n)
        try:
            y, mean, invstd = batchnorm_forward_train(x, gamma, beta, None, None, relu=True)
            results.append((y, mean, invstd, *batchnorm_backward(x, gamma, gy, mean, invstd, y=y),
                            relu_backward(x, None, gy), add_relu(x, gy)))
        finally:
            threads.set_num_threads(1)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    x64 = x.astype(np.float64).reshape(-1, 64)
    mean64, var64 = x64.mean(0), x64.var(0)
    y64 = np.maximum((x64 - mean64) / np.sqrt(var64 + 1e-5) * gamma + beta, 0)
    np.testing.assert_allclose(results[1][1], mean64, rtol=1e-6)
    np.testing.assert_allclose(results[1][0].reshape(-1, 64), y64, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(results[1][6], np.where(x > 0, gy, 0))
    np.testing.assert_array_equal(results[1][7], np.maximum(x + gy, 0))


def test_maxpool_over_image_blocks_matches_one_thread_and_a_reshape_max():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((128, 24, 24, 6), dtype=np.float32)  # LeNet-5's first pool: 3 image blocks
    gy = rng.standard_normal((128, 12, 12, 6), dtype=np.float32)
    results = []
    for n in (1, 2):
        threads.set_num_threads(n)
        try:
            y, arg = maxpool2d_forward(x, 2)
            results.append((y, arg, maxpool2d_backward(gy, arg, x.shape)))
        finally:
            threads.set_num_threads(1)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    y, _, dx = results[1]
    windows = x.reshape(128, 12, 2, 12, 2, 6)
    np.testing.assert_array_equal(y, windows.max(axis=(2, 4)))
    # each window's gradient lands on its max and nowhere else
    is_max = windows == y[:, :, None, :, None, :]
    np.testing.assert_array_equal(dx.reshape(windows.shape), np.where(is_max, gy[:, :, None, :, None, :], 0))


def test_maxpool_backward_names_an_out_of_range_argmax_in_any_block(two_threads):
    gy = np.ones((128, 12, 12, 6), np.float32)
    arg = np.zeros(gy.shape, np.int32)
    arg[-1, 0, 0, 0] = 24 * 24  # in the last image block only
    with pytest.raises(ValueError, match="argmax: expected indices in"):
        maxpool2d_backward(gy, arg, (128, 24, 24, 6))
