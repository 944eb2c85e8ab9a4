"""DistriOptimizer's "blockmanager" sync backend: each step is one Spark job of two stages.

The training partitions compute their gradient sums on the current weights
(engine/replica.py), the pieces travel as Spark shuffle blocks to the slice owners,
which sum them and run the optimizer on their slice; the updated slices reach the
next step's tasks through Spark blocks (sync/blockmanager.py). The update of step t
runs in the job of step t + 1 (or of a checkpoint, validation or the final collect).
"""
import json
import pickle
import time

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.backend import StepResult, TrainingBackend
from bigdl_py.engine.base import metric_results
from bigdl_py.engine.replica import (apply_update, fresh_slices, gradient_step, metrics_step, replica,
                                     slices_from_checkpoint)
from bigdl_py.engine.tensorboard import merged_squares
from bigdl_py.sync.blockmanager import BlockManagerAllReduce, to_bf16
from bigdl_py.worker_heap import settle_heap


class BlockManagerBackend(TrainingBackend):
    """Steps of a DistriOptimizer run as block-manager all-reduce jobs.

    Args:
        opt: the DistriOptimizer (its Spark context, data, sampler, model, criterion,
            optimizer, clipping, validation and threads per task).
        options: the BlockManager config (engine/sync_config.py): gradient compression.
        run_id: names this run's model replicas on the executors.
        bounds: [(start, stop)] of each slice of the flat vector.
        boundaries: the start of each parameter in the flat vector.
    """

    def __init__(self, opt, options, run_id, bounds, boundaries):
        self.opt, self.options = opt, options
        self.run_id, self.bounds, self.boundaries = run_id, bounds, boundaries
        self.sync = BlockManagerAllReduce(opt.sc, bounds, opt.data.num_partitions, opt.data.tokens,
                                          opt.data.key_partitions)
        self.model_config = json.dumps(opt.model.get_config())
        self.criterion_config = json.dumps(opt.criterion.get_config())
        self.frozen = opt.model.frozen_ranges()  # read once, as the replicas are built from model_config
        self.upcoming = None  # (position, compute) of the next step, whose stages the driver built ahead
        self.norms = []

    def start(self, source):
        optim_config = self.opt.optim_method.get_config()
        self.sync.set_slices(slices_from_checkpoint(source, optim_config) if source
                             else fresh_slices(self.opt.model.parameters_flat()[0].copy(), optim_config))

    def _compute_at(self, epoch, iteration):
        opt = self.opt
        return _compute_fn(self.run_id, self.model_config, self.criterion_config, opt.data, opt.sampler, epoch,
                           iteration, self.bounds, self.options.compress, opt.threads_per_task, opt.seed)

    def step(self, step, epoch, iteration, lr, norms):
        opt = self.opt
        last = iteration == opt.sampler.iterations_per_epoch - 1
        next_pos = (epoch + 1, 0) if last else (epoch, iteration + 1)
        if self.upcoming is not None and self.upcoming[0] == (epoch, iteration):
            compute = self.upcoming[1]
        else:
            compute = self._compute_at(epoch, iteration)
        self.upcoming = (next_pos, self._compute_at(*next_pos))
        update = _update_fn(opt.optim_method.get_config(), lr, step, self.boundaries, self.bounds, opt.clip_value,
                            norms, self.frozen)
        reports, results = self.sync.step(compute, update, next_compute=self.upcoming[1])
        # The job of step t ran the update of step t - 1 (`results`; None when the weights came
        # from a start or a checkpoint): its norms, if it computed them, and its time as sync time.
        self.norms.extend(norms_in(results))
        count = sum(r["count"] for r in reports)
        update_s = max(r["update_s"] for r in results) if results else 0.0
        times = dict(compute=max(r["compute_s"] for r in reports), data=max(r["data_s"] for r in reports),
                     sync=update_s + max(r["assemble_s"] for r in reports),
                     driver_bytes=len(pickle.dumps((reports, results))))
        return StepResult(loss=sum(r["loss_sum"] for r in reports) / max(count, 1), count=count, times=times)

    def validate(self):
        opt, v = self.opt, self.opt.validation
        fn = _validate_fn(self.run_id, self.model_config, self.criterion_config, v["data"], v["metrics"],
                          v["batch_size"], self.bounds, opt.threads_per_task)
        per_partition = self.sync.per_training_partition(fn, v["data"].tokens).collect()
        return metric_results(v["metrics"], per_partition)

    def checkpoint(self, root, meta, keep):
        tmp = ckpt.begin(root, meta["step"])
        self.sync.foreach_slice(lambda s, lo, hi, w, state: ckpt.write_slice(tmp, s, lo, hi, w, state))
        path = ckpt.commit(tmp, root, dict(meta, slices=[list(b) for b in self.bounds]), self.opt.model, keep=keep)
        # Writing the checkpoint ran this step's update; the new start drops its results.
        self.norms.extend(norms_in(self.sync.update_results()))
        self.sync.set_slices(slices_from_checkpoint(path, self.opt.optim_method.get_config()))

    def weights(self):
        weights = self.sync.collect_weights()
        self.norms.extend(norms_in(self.sync.update_results()))  # the last update ran in that job
        return weights

    def known_norms(self):
        known, self.norms = self.norms, []
        return known


def norms_in(results):
    """[merged_squares] of the slices' update results when that update computed norms, else []."""
    if not results or "squares" not in results[0]:
        return []
    return [merged_squares(results[0]["step"], [r["squares"] for r in results])]


def _compute_fn(run_id, model_config, criterion_config, data, sampler, epoch, iteration, bounds, compress,
                threads, seed):
    location, shape = data.location, data.feature_shape

    def compute(p, gathered):
        t0 = time.perf_counter()
        model, weights, grads, criterion = replica(run_id, model_config, criterion_config, threads)
        for s, w in gathered:
            lo, hi = bounds[s]
            weights[lo:hi] = w
        assemble_s = time.perf_counter() - t0
        grads.fill(0.0)
        stats = gradient_step(model, criterion, location, shape, sampler, seed, epoch, iteration, p)
        settle_heap(run_id)  # after the first step's kernels loaded: later per-task gc.collect()s stay cheap
        stats["assemble_s"] = assemble_s
        pieces = [grads[lo:hi] for lo, hi in bounds]
        return [to_bf16(g) for g in pieces] if compress == "bf16" else [g.copy() for g in pieces], stats

    return compute


def _update_fn(optim_config, lr, step, boundaries, bounds, clip_value, norms, frozen):
    def update(s, weights, state, total, count):
        t0 = time.perf_counter()
        squares = apply_update(optim_config, weights, total, state, count, lr, step, boundaries, *bounds[s],
                               clip_value, norms, frozen)
        result = dict(update_s=time.perf_counter() - t0, step=step)
        if norms:
            result["squares"] = squares
        return weights, state, result

    return update


def _validate_fn(run_id, model_config, criterion_config, data, metrics, batch_size, bounds, threads):
    location, shape = data.location, data.feature_shape

    def validate(p, gathered):
        model, weights, _, criterion = replica(run_id, model_config, criterion_config, threads)
        for s, w in gathered:
            lo, hi = bounds[s]
            weights[lo:hi] = w
        yield metrics_step(model, criterion, location, shape, metrics, batch_size, p)
        settle_heap((run_id, "validate"))

    return validate
