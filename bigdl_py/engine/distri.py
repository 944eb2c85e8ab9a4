"""DistriOptimizer: exact synchronous SGD on Spark executors.

Each iteration, every training partition computes the gradient SUM over its share
of the global batch (chosen by the same PartitionedSampler the LocalOptimizer
uses), the block-manager all-reduce sums the pieces per slice on executors, divides
by the number of samples and runs the optimizer on each slice where its state
lives. With the same partition sizes and seed this reproduces LocalOptimizer's
weights to float32 round-off.
"""
import json
import os
import pickle
import time

import numpy as np

from bigdl_py.data.partitions import load_partition, materialize_dataframe
from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.base import (BaseOptimizer, TrainingError, metric_partials, metric_results, seed_for,
                                  sum_reduction)
from bigdl_py.engine.sampling import PartitionedSampler
from bigdl_py.engine.training_log import TrainingLog
from bigdl_py.nn.criterions import criterion_from_config
from bigdl_py.nn.module import from_config
from bigdl_py.optim.optimizers import optimizers_get
from bigdl_py.optim.schedules import schedules_get
from bigdl_py.shipping import ensure_importable_on_executors
from bigdl_py.sync.blockmanager import BlockManagerAllReduce, slice_bounds, to_bf16

_WORKER = {}  # per Python worker: run id -> (model, weights, grads, criterion)


def _replica(run_id, model_config, criterion_config, threads):
    """This worker's model replica for the run, built once from its config."""
    if run_id not in _WORKER:
        from bigdl_py.kernels.threads import set_num_threads

        set_num_threads(threads)
        model = from_config(json.loads(model_config))
        weights, grads = model.parameters_flat()
        model.set_input_grad_needed(False)  # nobody reads the gradient w.r.t. the data
        # Pieces are sums; the all-reduce divides once by the global sample count.
        criterion = sum_reduction(criterion_from_config(json.loads(criterion_config)))
        _WORKER.clear()  # one run at a time per worker: drop replicas of finished runs
        _WORKER[run_id] = (model, weights, grads, criterion)
    return _WORKER[run_id]


class DistriOptimizer(BaseOptimizer):
    """Train `model` on a Spark DataFrame with synchronous data-parallel SGD.

    Args:
        model, criterion, optim_method, batch_size, end_trigger, learning_rate,
        schedule, seed: as LocalOptimizer (batch_size is the GLOBAL batch).
        df: DataFrame with a features column (vector, array, or a list of numeric
            columns) and a numeric label column.
        features_col, label_col, feature_shape: see data.partitions.materialize_dataframe.
        num_partitions: training partitions P (default: Spark's default parallelism).
        num_slices: slices of the flat vector (default P).
        bad_rows: "error" (default) or "skip".
        compress: None or "bf16" (gradient pieces sent as bfloat16, rounded to nearest).
        cache_root: folder for the converted partitions (must be readable by executors).
        lineage_every: cut the RDD lineage (write the slices and reload them) every
            this many iterations, so recovery replays at most that many.

    Example:
        opt = DistriOptimizer(lenet5(), CrossEntropyLoss(), SGD(momentum=0.9), df,
                              batch_size=256, feature_shape=(28, 28, 1))
        model = opt.optimize()
    """

    def __init__(self, model, criterion, optim_method, df, batch_size, end_trigger=None, learning_rate=0.01,
                 schedule=None, seed=0, features_col="features", label_col="label", feature_shape=None,
                 num_partitions=None, num_slices=None, bad_rows="error", compress=None, cache_root=None,
                 lineage_every=50, threads_per_task=1):
        super().__init__(model, criterion, optim_method, batch_size, end_trigger, learning_rate, schedule, seed)
        if compress not in (None, "bf16"):
            raise ValueError(f"compress: expected None or 'bf16', received {compress!r}")
        self.sc = df.sparkSession.sparkContext
        ensure_importable_on_executors(self.sc)
        self.data = materialize_dataframe(df, features_col, label_col, feature_shape, num_partitions,
                                          cache_root, bad_rows)
        self.data_spec = dict(features_col=features_col, label_col=label_col, feature_shape=feature_shape,
                              cache_root=cache_root, bad_rows=bad_rows)
        self.num_slices = num_slices or self.data.num_partitions
        self.compress = compress
        self.lineage_every = int(lineage_every)
        self.threads_per_task = int(threads_per_task)
        self.sampler = PartitionedSampler(self.data.sizes, self.batch_size, self.seed)
        self.metrics = []  # per-iteration timing breakdown

    def set_validation(self, df, metrics, trigger=None, batch_size=None):
        """Validate on a DataFrame, on the executors, whenever `trigger` fires."""
        spec = self.data_spec
        data = materialize_dataframe(df, spec["features_col"], spec["label_col"], spec["feature_shape"],
                                     self.data.num_partitions, spec["cache_root"], spec["bad_rows"])
        self.validation = dict(data=data, metrics=list(metrics), trigger=trigger or _every_epoch(),
                               batch_size=batch_size or max(self.batch_size, 256))
        return self

    def set_gradient_clipping(self, max_norm=None, value_range=None):
        if max_norm is not None:
            raise ValueError("max_norm: clipping by global norm is not supported by DistriOptimizer yet "
                             "(it needs the norm of the summed gradient across slices); use value_range")
        return super().set_gradient_clipping(max_norm, value_range)

    # ---- the training loop ----------------------------------------------------------
    def optimize(self, resume_from=None):
        model, sampler = self.model, self.sampler
        weights = model.parameters_flat()[0]
        boundaries = [start for _, start, _ in model.parameter_segments()]
        bounds = slice_bounds(weights.size, self.num_slices, boundaries)
        sync = BlockManagerAllReduce(self.sc, bounds, self.data.num_partitions)
        step, epoch, start_iter = 0, 0, 0
        if resume_from is not None:
            path = ckpt.latest(self.checkpoint["path"]) if resume_from == "latest" else ckpt.local_path(resume_from)
            if path is not None:
                meta = ckpt.read_meta(path)
                ckpt.check_size(path, meta, weights.size)
                step, epoch, start_iter = int(meta["step"]), int(meta["epoch"]), int(meta["iteration"])
                self.schedule = schedules_get(meta["schedule"])
                ckpt.load_buffers(path, model)
                sync.set_slices(_slices_from_checkpoint(path, self.optim_method.get_config()))
        if sync.W is None:
            sync.set_slices(_fresh_slices(weights.copy(), self.optim_method.get_config()))

        run_id = f"{os.path.basename(self.data.run_dir)}-{time.time_ns()}"
        model_config = json.dumps(model.get_config())
        criterion_config = json.dumps(self.criterion.get_config())
        log = TrainingLog(self.log_path)
        score = None
        done = False
        try:
            while not done:
                for i in range(start_iter, sampler.iterations_per_epoch):
                    t0 = time.perf_counter()
                    gathered = sync.all_gather()
                    compute = _compute_fn(run_id, model_config, criterion_config, self.data, sampler, epoch, i,
                                          bounds, self.compress, self.threads_per_task,
                                          self.forward_seed_base(epoch, i))
                    pieces = gathered.mapPartitionsWithIndex(compute)
                    lr = self.lr_at(step + 1, epoch)
                    update = _update_fn(self.optim_method.get_config(), lr, step + 1, boundaries, bounds,
                                        self.clip_value)
                    results = sync.reduce_scatter_update(pieces, update)
                    wall = time.perf_counter() - t0
                    step += 1
                    stats = results[0]
                    loss = stats["loss_sum"] / max(stats["count"], 1)
                    if not np.isfinite(loss):
                        raise TrainingError(f"step {step}: the loss is {loss} (training diverged); "
                                            f"the last good checkpoint is kept")
                    entry = self._timing(step, epoch, loss, lr, wall, stats, results)
                    epoch_finished = i == sampler.iterations_per_epoch - 1
                    state, score = self.finish_step(
                        log, entry, epoch, step, epoch_finished, loss, score,
                        lambda: self._validate(sync.all_gather(), run_id, model_config, criterion_config, bounds))
                    done = bool(self.end_trigger(state))
                    next_pos = (epoch + 1, 0) if epoch_finished else (epoch, i + 1)
                    user_ckpt = self.checkpoint and (done or self.checkpoint["trigger"](state))
                    if user_ckpt or step % self.lineage_every == 0:
                        root = self.checkpoint["path"] if user_ckpt else os.path.join(self.data.run_dir, "lineage")
                        path = self._write_checkpoint(sync, root, self.meta(step, *next_pos), bounds,
                                                      keep=self.checkpoint["keep"] if user_ckpt else 1)
                        sync.set_slices(_slices_from_checkpoint(path, self.optim_method.get_config()))
                    if done:
                        break
                epoch, start_iter = (epoch + 1, 0) if not done else (epoch, start_iter)
        finally:
            log.close()
        weights[:] = sync.collect_weights()
        return model

    def forward_seed_base(self, epoch, iteration):
        """forward_seed(epoch, iteration, p) = seed_for(base + [p]), computed on the executor."""
        return [self.seed, epoch, iteration]

    def _timing(self, step, epoch, loss, lr, wall, stats, results):
        """Where the iteration's wall time went (the slowest partition decides compute)."""
        compute = stats["compute_max"]
        data = stats["data_max"]
        sync = max(r["update_s"] for r in results) + stats["assemble_max"]
        driver_bytes = len(pickle.dumps(results))
        entry = dict(step=step, epoch=epoch, loss=loss, lr=lr, samples=stats["count"],
                     samples_s=stats["count"] / wall, wall_ms=wall * 1e3, compute_ms=compute * 1e3,
                     data_ms=data * 1e3, sync_ms=sync * 1e3,
                     overhead_ms=max(wall - compute - data - sync, 0.0) * 1e3, driver_bytes=driver_bytes)
        self.metrics.append(entry)
        return entry

    def _validate(self, gathered, run_id, model_config, criterion_config, bounds):
        v = self.validation
        fn = _validate_fn(run_id, model_config, criterion_config, v["data"], v["metrics"], v["batch_size"],
                          bounds, self.threads_per_task)
        per_partition = gathered.mapPartitionsWithIndex(fn).collect()
        return metric_results(v["metrics"], per_partition)

    def _write_checkpoint(self, sync, root, meta, bounds, keep):
        tmp = ckpt.begin(root)
        sync.foreach_slice(lambda s, lo, hi, w, state: ckpt.write_slice(tmp, s, lo, hi, w, state))
        return ckpt.commit(tmp, root, dict(meta, slices=[list(b) for b in bounds]), self.model, keep=keep)


def _every_epoch():
    from bigdl_py.optim.triggers import EveryEpoch
    return EveryEpoch()


def _fresh_slices(initial_weights, optim_config):
    """make_slice for the first iteration. The initial weights pass the driver once."""
    def make(s, lo, hi):
        opt = optimizers_get(optim_config)
        return initial_weights[lo:hi].copy(), opt.init_state(hi - lo)
    return make


def _slices_from_checkpoint(path, optim_config):
    """make_slice that reads each slice's range from a checkpoint, on the executor."""
    def make(s, lo, hi):
        weights, stored = ckpt.load_range(path, lo, hi)
        state = optimizers_get(optim_config).init_state(hi - lo)
        for k, v in state.items():
            if k not in stored:
                raise ValueError(f"{path}: optimizer state {k!r} missing from the checkpoint")
            v[:] = stored[k]
        return weights, state
    return make


def _compute_fn(run_id, model_config, criterion_config, data, sampler, epoch, iteration, bounds, compress,
                threads, seed_base):
    run_dir, shape = data.run_dir, data.feature_shape

    def compute(p, gathered):
        t0 = time.perf_counter()
        model, weights, grads, criterion = _replica(run_id, model_config, criterion_config, threads)
        for _, (s, w) in gathered:
            lo, hi = bounds[s]
            weights[lo:hi] = w
        t1 = time.perf_counter()
        x, y = load_partition(run_dir, p, shape)
        idx = np.sort(sampler.local_indices(p, epoch, iteration))  # sorted, as the local oracle reads it
        xb, yb = np.ascontiguousarray(x[idx], dtype=np.float32), np.asarray(y[idx])
        t2 = time.perf_counter()
        grads.fill(0.0)
        loss_sum = 0.0
        if len(idx):
            model.set_forward_seed(seed_for(seed_base + [p]))
            out = model.forward(xb)
            loss_sum = float(criterion.forward(out, yb))
            model.backward(xb, criterion.backward(out, yb))
        t3 = time.perf_counter()
        stats = dict(loss_sum=loss_sum, count=len(idx), compute_s=t3 - t2, data_s=t2 - t1, assemble_s=t1 - t0)
        for s, (lo, hi) in enumerate(bounds):
            piece = grads[lo:hi]
            piece = to_bf16(piece) if compress == "bf16" else piece.copy()
            yield s, (p, piece, stats)

    return compute


def _update_fn(optim_config, lr, step, boundaries, bounds, clip_value):
    def update(s, weights, state, total, stats):
        t0 = time.perf_counter()
        count = sum(st["count"] for st in stats)
        lo, hi = bounds[s]
        if count:
            g = total / np.float32(count)
            if clip_value is not None:
                np.clip(g, clip_value[0], clip_value[1], out=g)
            segs = np.array([b - lo for b in boundaries if lo <= b < hi] + [hi - lo])
            optimizers_get(optim_config).update(weights, g, state, lr, step, segs)
        result = dict(update_s=time.perf_counter() - t0)
        if s == 0:  # one slice reports the iteration's statistics
            result.update(loss_sum=sum(st["loss_sum"] for st in stats), count=count,
                          compute_max=max(st["compute_s"] for st in stats),
                          data_max=max(st["data_s"] for st in stats),
                          assemble_max=max(st["assemble_s"] for st in stats))
        return weights, state, result

    return update


def _validate_fn(run_id, model_config, criterion_config, data, metrics, batch_size, bounds, threads):
    run_dir, shape = data.run_dir, data.feature_shape

    def validate(p, gathered):
        model, weights, _, criterion = _replica(run_id, model_config, criterion_config, threads)
        for _, (s, w) in gathered:
            lo, hi = bounds[s]
            weights[lo:hi] = w
        x, y = load_partition(run_dir, p, shape)
        yield metric_partials(model, criterion, metrics, np.asarray(x, dtype=np.float32), np.asarray(y),
                              batch_size)

    return validate
