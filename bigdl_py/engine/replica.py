"""What an executor does for DistriOptimizer, whichever sync backend moves the slices.

A Python worker keeps one model replica per run (built once from its config); on it
the gradient step sums the criterion over a partition's share of the global batch,
the metrics step computes mergeable metric partials over a validation partition,
and `apply_update` runs the optimizer on one slice of the flat vector where that
slice's state lives. The slice makers give each slice its first weights and
optimizer state, from the initial weights or from a checkpoint.
"""
import json
import time

import numpy as np

from bigdl_py.data.partitions import load_partition
from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.base import metric_partials, seed_for, sum_reduction
from bigdl_py.engine.tensorboard import segment_squares
from bigdl_py.nn.criterions import criterion_from_config
from bigdl_py.nn.module import from_config
from bigdl_py.optim.frozen import update_trainable
from bigdl_py.optim.optimizers import optimizers_get

_WORKER = {}  # per Python worker: run id -> (model, weights, grads, criterion)


def replica(run_id, model_config, criterion_config, threads):
    """This worker's (model, weights, grads, summed criterion) for the run, built once from its config."""
    if run_id not in _WORKER:
        from bigdl_py.kernels.threads import set_num_threads

        set_num_threads(threads)
        model, criterion = _build(model_config, criterion_config)
        weights, grads = model.parameters_flat()
        _WORKER.clear()  # one run at a time per worker: drop replicas of finished runs
        _WORKER[run_id] = (model, weights, grads, criterion)
    return _WORKER[run_id]


def _build(model_config, criterion_config):
    """A model (no input gradient: nobody reads the gradient w.r.t. the data) and its summed
    criterion (pieces are sums; the all-reduce divides once by the global sample count)."""
    model = from_config(json.loads(model_config))
    model.set_input_grad_needed(False)
    return model, sum_reduction(criterion_from_config(json.loads(criterion_config)))


def warm_up(model_config, criterion_config, feature_shape, threads):
    """Load (or compile) the kernels a training step calls, on a throwaway copy of the model.

    One forward and backward of a zero batch of two samples with label 0, so the first real
    step finds the numba kernels loaded; nothing of the run's replica, seeds or data is touched.
    Best effort: returns False when the model or criterion cannot take that batch (the first
    step then loads the kernels itself), True otherwise.
    """
    from bigdl_py.kernels.threads import set_num_threads

    try:
        set_num_threads(threads)
        model, criterion = _build(model_config, criterion_config)  # as the replica: no kernel the run skips
        x = np.zeros((2, *feature_shape), np.float32)
        _, grad_out = criterion.forward_backward(model.forward(x), np.zeros(2))
        model.backward(x, grad_out)
        return True
    except Exception:  # noqa: BLE001 - any model/criterion pair; the real step reports real errors
        return False


def gradient_step(model, criterion, location, feature_shape, sampler, seed, epoch, iteration, p, backward=None):
    """Add partition p's summed gradient over its share of the iteration's batch to the model's grads.

    The share is read in sorted order, as the local oracle reads it; dropout is seeded
    by (seed, epoch, iteration, p). `backward(x, grad_out)` replaces model.backward
    (the ring backend's overlapped backward). Returns dict(loss_sum, count, data_s, compute_s).
    """
    t0 = time.perf_counter()
    x, y = load_partition(location, p, feature_shape)
    idx = np.sort(sampler.local_indices(p, epoch, iteration))
    xb, yb = np.ascontiguousarray(x[idx], dtype=np.float32), np.asarray(y[idx])
    t1 = time.perf_counter()
    loss_sum = 0.0
    if len(idx):
        model.set_forward_seed(seed_for([seed, epoch, iteration, p]))
        out = model.forward(xb)
        loss, grad_out = criterion.forward_backward(out, yb)
        loss_sum = float(loss)
        (backward or model.backward)(xb, grad_out)
    return dict(loss_sum=loss_sum, count=len(idx), data_s=t1 - t0, compute_s=time.perf_counter() - t1)


def metrics_step(model, criterion, location, feature_shape, metrics, batch_size, p):
    """Mergeable metric partials over validation partition p, in eval mode."""
    x, y = load_partition(location, p, feature_shape)
    return metric_partials(model, criterion, metrics, np.asarray(x, dtype=np.float32), np.asarray(y), batch_size)


def apply_update(optim_config, weights, total, state, count, lr, step, boundaries, lo, hi, clip_value,
                 norms=False, frozen=()):
    """One slice's optimizer step from its gradient SUM over `count` samples.

    `frozen`: the model's frozen [start, stop) ranges of the flat vector (its
    `frozen_ranges()`), left unchanged with their optimizer state. With `norms`,
    returns {start of each parameter in the slice: (sum of squares of its weights
    after the update, of the gradient applied)}, else None.
    """
    segs = np.array([b - lo for b in boundaries if lo <= b < hi] + [hi - lo])
    g = np.zeros_like(weights)
    if count:
        g = total / np.float32(count)
        if clip_value is not None:
            np.clip(g, clip_value[0], clip_value[1], out=g)
        update_trainable(optimizers_get(optim_config), weights, g, state, lr, step, segs, offset=lo, frozen=frozen)
    if norms:
        starts = segs[:-1]
        return dict(zip((lo + starts).tolist(), zip(segment_squares(weights, starts).tolist(),
                                                      segment_squares(g, starts).tolist())))
    return None


def fresh_slices(initial_weights, optim_config):
    """make_slice(s, lo, hi) -> (weights, optimizer state) for the first iteration.

    The initial weights pass the driver once.
    """
    def make(s, lo, hi):
        opt = optimizers_get(optim_config)
        return initial_weights[lo:hi].copy(), opt.init_state(hi - lo)
    return make


def slices_from_checkpoint(path, optim_config):
    """make_slice(s, lo, hi) -> (weights, optimizer state) read from a checkpoint, on the executor."""
    def make(s, lo, hi):
        weights, stored = ckpt.load_range(path, lo, hi)
        state = optimizers_get(optim_config).init_state(hi - lo)
        ckpt.restore_state(path, state, stored)
        return weights, state
    return make
