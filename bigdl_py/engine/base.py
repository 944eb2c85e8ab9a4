"""What the local and the distributed optimizer share: settings, bookkeeping and the training loop.

Both engines train the same way: a deterministic PartitionedSampler picks the
samples, the flat gradient of each global batch is averaged over its samples, one
optimizer update runs on the flat weights, and triggers decide when to validate,
checkpoint and stop. That loop is `BaseOptimizer.run_training`; only where the
gradient is summed and the update runs differs, behind a TrainingBackend (backend.py).
"""
import contextlib
import logging
import time

import numpy as np

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.step_outputs import StepOutputs
from bigdl_py.nn.criterions import criterion_from_config
from bigdl_py.optim import clipping
from bigdl_py.optim.metrics import Loss, metrics_get
from bigdl_py.optim.schedules import Constant, schedules_get
from bigdl_py.optim.triggers import EveryEpoch, MaxEpoch, TrainingState


_LOG = logging.getLogger("bigdl_py")


class TrainingError(RuntimeError):
    """Training stopped on bad data or divergence; the message names the step."""


class BaseOptimizer:
    def __init__(self, model, criterion, optim_method, batch_size, end_trigger=None,
                 learning_rate=0.01, schedule=None, seed=0):
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, received {batch_size!r}")
        if not float(learning_rate) > 0:
            raise ValueError(f"Invalid learning rate: {learning_rate}")
        self.model = model
        self.criterion = criterion
        self.optim_method = optim_method
        self.batch_size = int(batch_size)
        self.end_trigger = end_trigger or MaxEpoch(1)
        self.learning_rate = float(learning_rate)
        self.schedule = schedule or Constant()
        self.seed = int(seed)
        self.validation = None
        self.checkpoint = None
        self.clip_norm = None
        self.clip_value = None
        self.log_path = None
        self.tensorboard = None  # dict(log_dir, weights_every) once set
        self.progress = None  # None: auto (on for a terminal or a Jupyter kernel)
        self.history = []  # one dict per iteration (also written to the training log)
        # ms the last optimize() spent outside its iterations: starting the backend (data to the
        # executors, the ring's barrier stage), validations, checkpoints, collecting the weights.
        self.outside_ms = {}
        self.early_stopping = None  # dict(metric, mode, best, best_epoch, since_best) once set

    # ---- configuration (chainable) ----------------------------------------------
    def set_validation(self, x, y, metrics, trigger=None, batch_size=None):
        """Validate on (x, y) with mergeable metrics whenever `trigger` fires."""
        self.validation = dict(x=x, y=y, metrics=list(metrics), trigger=trigger or EveryEpoch(),
                               batch_size=batch_size or max(self.batch_size, 256))
        return self

    def set_checkpoint(self, path, trigger=None, keep=3):
        """Write a checkpoint under `path` whenever `trigger` fires (and at the end); keep the newest `keep`."""
        if not isinstance(keep, (int, np.integer)) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"keep: expected an integer >= 1 (checkpoints to keep), received {keep!r}")
        self.checkpoint = dict(path=path, trigger=trigger or EveryEpoch(), keep=keep)
        return self

    def resume_path(self, resume_from):
        """The checkpoint `resume_from` names; for "latest" the newest committed one under the
        checkpoint path, or None (training starts from scratch, and the log says so)."""
        if resume_from != "latest":
            return resume_from
        if not self.checkpoint:
            raise ValueError('resume_from="latest": no checkpoint path; call set_checkpoint(path) first '
                             'or pass a checkpoint directory')
        path = ckpt.latest(self.checkpoint["path"])
        if path is None:
            _LOG.warning('resume_from="latest": no committed checkpoint under %s; training starts from scratch',
                         self.checkpoint["path"])
        return path

    def set_gradient_clipping(self, max_norm=None, value_range=None):
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm: expected a positive number, received {max_norm!r}")
        if value_range is not None and not value_range[0] < value_range[1]:
            raise ValueError(f"value_range: expected (min, max) with min < max, received {value_range!r}")
        self.clip_norm, self.clip_value = max_norm, value_range
        return self

    def set_early_stopping(self, metric, mode=None):
        """Track the best validation value of `metric` (a name such as "auc" or "loss").

        `mode` is "max" or "min" (default: "min" for the loss, "max" otherwise). Each
        validation sets `TrainingState.since_best`, so an end trigger such as
        `MaxEpoch(n) | NoImprovement(patience)` stops training; `best_epoch` tells which
        epoch's checkpoint holds the best weights.
        """
        name = metrics_get(metric).name
        mode = mode or ("min" if name == Loss().name else "max")
        if mode not in ("max", "min"):
            raise ValueError(f"mode: expected 'max' or 'min', received {mode!r}")
        self.early_stopping = dict(metric=name, mode=mode, best=None, best_epoch=None, since_best=None)
        return self

    def _track_best(self, scores, epoch):
        es = self.early_stopping
        if es["metric"] not in scores:
            raise ValueError(f"early stopping metric {es['metric']!r} is not among the validation metrics "
                             f"{sorted(scores)}")
        value = scores[es["metric"]]
        better = es["best"] is None or (value > es["best"] if es["mode"] == "max" else value < es["best"])
        if better and np.isfinite(value):
            es.update(best=value, best_epoch=epoch, since_best=0)
        else:
            es["since_best"] = (es["since_best"] or 0) + 1

    def set_training_log(self, path):
        self.log_path = path
        return self

    def set_tensorboard(self, log_dir, weights_every=10):
        """Write TensorBoard event files under `log_dir`, from the driver (open with `tensorboard --logdir`).

        Every iteration: train/loss, train/lr, train/samples_s (and for DistriOptimizer the
        time split time/compute_ms, time/sync_ms, time/data_ms, time/overhead_ms); at each
        validation: validation/<metric name>. Every `weights_every` iterations: the L2 norms
        of the weights after the update and of the gradient it applied (norms/weights,
        norms/gradients, and per parameter weights_norm/<name>, gradients_norm/<name>).
        DistriOptimizer computes these sums of squares on the executors, where each slice's
        summed gradient lives, and sends only one number per parameter to the driver.

        Args:
            log_dir: folder for the event files (on a cluster, one the driver can write).
            weights_every: iterations between weight and gradient norms (a positive integer).

        Example:
            opt.set_tensorboard("output/tensorboard", weights_every=50)
        """
        if not isinstance(weights_every, (int, np.integer)) or isinstance(weights_every, bool) or weights_every < 1:
            raise ValueError(f"weights_every: expected a positive integer (iterations between weight and "
                             f"gradient norms), received {weights_every!r}")
        self.tensorboard = dict(log_dir=str(log_dir), weights_every=int(weights_every))
        return self

    def norms_due(self, step):
        """Whether the weight and gradient norms of `step` go to TensorBoard."""
        return self.tensorboard is not None and step % self.tensorboard["weights_every"] == 0

    def set_progress(self, enabled):
        """Show a progress bar on the driver (iteration, loss, samples/s, ETA) on stderr.

        Args:
            enabled: True (always), False (never) or None (auto, the default: on when
                stderr is a terminal or in a Jupyter kernel).
        """
        if enabled not in (None, True, False):
            raise ValueError(f"enabled: expected True, False or None (auto), received {enabled!r}")
        self.progress = enabled
        return self

    # ---- the training loop -----------------------------------------------------------
    def resume(self, resume_from):
        """((step, epoch, iteration), checkpoint path) to start from; ((0, 0, 0), None) for a fresh start.

        Restores the schedule and the model's buffers from the checkpoint; its weights and
        optimizer state are the backend's to load (TrainingBackend.start).
        """
        path = None if resume_from is None else self.resume_path(resume_from)
        if path is None:
            return (0, 0, 0), None
        meta = ckpt.read_meta(path)
        ckpt.check_size(path, meta, self.model.parameters_flat()[0].size)
        self.schedule = schedules_get(meta["schedule"])
        ckpt.load_buffers(path, self.model)
        return (int(meta["step"]), int(meta["epoch"]), int(meta["iteration"])), path

    def run_training(self, backend, position, source):
        """Train on `backend` from `position` (step, epoch, iteration) and checkpoint `source` until
        the end trigger fires; the model gets the final weights. Returns the model."""
        step, epoch, iteration = position
        score = None
        with contextlib.ExitStack() as cleanup:  # closes the outputs, then the backend, whatever fails
            cleanup.callback(backend.close)
            outputs = self.open_outputs(step, epoch, iteration)
            cleanup.callback(outputs.close)
            self.outside_ms = dict(start=0.0, validation=0.0, checkpoints=0.0, final_weights=0.0)
            with self._outside("start"):
                backend.start(source)
            # A resumed run may already be finished (resumed from its final checkpoint).
            done = bool(self.end_trigger(self.make_state(epoch, step, False, None, None)))
            while not done:
                lr = self.lr_at(step + 1, epoch)
                t0 = time.perf_counter()
                result = backend.step(step + 1, epoch, iteration, lr, self.norms_due(step + 1))
                wall = time.perf_counter() - t0
                step += 1
                if not np.isfinite(result.loss):
                    raise TrainingError(f"step {step}: the loss is {result.loss} (training diverged); "
                                        f"the last good checkpoint is kept")
                epoch_finished = iteration == self.sampler.iterations_per_epoch - 1
                entry = self.step_entry(step, epoch, result.loss, lr, wall, result.count, result.times)
                state, score = self.finish_step(outputs, entry, epoch, step, epoch_finished, result.loss, score,
                                                backend.validate, backend.known_norms())
                done = bool(self.end_trigger(state))
                epoch, iteration = (epoch + 1, 0) if epoch_finished else (epoch, iteration + 1)
                with self._outside("checkpoints"):
                    if self.checkpoint and (done or self.checkpoint["trigger"](state)):
                        backend.checkpoint(self.checkpoint["path"], self.meta(step, epoch, iteration),
                                           self.checkpoint["keep"])
                    elif self.recovery_due(step):
                        backend.checkpoint(self.recovery_root(), self.meta(step, epoch, iteration), keep=1)
                for known in backend.known_norms():
                    outputs.write_norms(*known)
            with self._outside("final_weights"):
                self.model.parameters_flat()[0][:] = backend.weights()
            for known in backend.known_norms():
                outputs.write_norms(*known)
        return self.model

    @contextlib.contextmanager
    def _outside(self, phase):
        """Add the block's wall time to outside_ms[phase]."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.outside_ms[phase] += (time.perf_counter() - t0) * 1e3

    def recovery_due(self, step):
        """Whether a recovery checkpoint (not the user's) is due after `step`; none in this process."""
        return False

    def recovery_root(self):
        """Where recovery checkpoints go (see recovery_due)."""
        raise NotImplementedError(f"{type(self).__name__} writes no recovery checkpoints")

    def step_entry(self, step, epoch, loss, lr, wall, count, times):
        """The log entry of one step of `wall` seconds; `times` (StepResult.times) adds where that time went."""
        entry = dict(step=step, epoch=epoch, loss=loss, lr=lr, samples=count, samples_s=count / max(wall, 1e-9))
        if times is not None:
            busy = times["compute"] + times["data"] + times["sync"]
            entry.update(wall_ms=wall * 1e3, compute_ms=times["compute"] * 1e3, data_ms=times["data"] * 1e3,
                         sync_ms=times["sync"] * 1e3, overhead_ms=max(wall - busy, 0.0) * 1e3,
                         driver_bytes=times["driver_bytes"])
        return entry

    # ---- shared steps --------------------------------------------------------------
    def lr_at(self, step, epoch):
        return float(self.schedule(step, epoch, self.learning_rate))

    def forward_seed(self, epoch, iteration, partition):
        """Seed for dropout masks: a pure function of where we are in training."""
        return seed_for([self.seed, epoch, iteration, partition])

    def clip_gradient(self, grads):
        if self.clip_value is not None:
            clipping.clip_by_value(grads, *self.clip_value)
        if self.clip_norm is not None:
            clipping.clip_by_global_norm(grads, self.clip_norm)

    def meta(self, step, epoch, iteration):
        """Counters and configs a checkpoint needs to resume exactly."""
        return dict(step=step, epoch=epoch, iteration=iteration, seed=self.seed,
                    batch_size=self.batch_size, learning_rate=self.learning_rate,
                    optimizer=self.optim_method.get_config(), schedule=self.schedule.get_config())

    def make_state(self, epoch, step, epoch_finished, loss, score):
        since_best = self.early_stopping["since_best"] if self.early_stopping else None
        return TrainingState(epoch=epoch, iteration=step, epoch_finished=epoch_finished, loss=loss, score=score,
                             since_best=since_best)

    def open_outputs(self, step, epoch, iteration):
        """The log, progress bar and TensorBoard writer of a run starting at (step, epoch, iteration); close() it."""
        return StepOutputs(self, step, epoch, iteration)

    def finish_step(self, outputs, entry, epoch, step, epoch_finished, loss, score, validate, norms=()):
        """Validate when the trigger fires, feed the score to the schedule, report the step to `outputs`.

        norms: (step, weight squares, gradient squares) per parameter, for each step whose
        norms are known now (see set_tensorboard).
        Returns (TrainingState, latest validation score) for the end and checkpoint triggers.
        """
        state = self.make_state(epoch + epoch_finished, step, epoch_finished, loss, score)
        scores = {}
        if self.validation and self.validation["trigger"](state):
            t0 = time.perf_counter()
            scores = validate()
            entry["validation_ms"] = (time.perf_counter() - t0) * 1e3
            self.outside_ms["validation"] += entry["validation_ms"]
            score = next(iter(scores.values()))
            entry.update(scores)
            if self.early_stopping:
                self._track_best(scores, epoch + epoch_finished)
            state = self.make_state(epoch + epoch_finished, step, epoch_finished, loss, score)
            self.schedule.observe(score)
        self.history.append(entry)
        outputs.write(entry, scores)
        for known in norms:
            outputs.write_norms(*known)
        return state, score


def seed_for(words):
    """One 32-bit seed from a list of integers (same on driver and executors)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0])


def sum_reduction(criterion):
    """A copy of `criterion` that sums over the batch instead of averaging."""
    config = criterion.get_config()
    config["config"] = dict(config.get("config", {}), reduction="sum")
    return criterion_from_config(config)


def _rows(a):
    return len(a[0]) if isinstance(a, list) else len(a)


def _take(a, idx):
    return [v[idx] for v in a] if isinstance(a, list) else a[idx]


def metric_partials(model, criterion, metrics, x, y, batch_size):
    """Mergeable partial results of each metric over (x, y), in eval mode.

    Runs wherever the data is (the driver for the local engine, each executor for
    the distributed one); the partials are small and merge exactly.
    """
    partials = [m.empty() for m in metrics]
    was_training = model.training
    model.eval()
    try:
        n = _rows(x)
        for lo in range(0, n, batch_size):
            idx = slice(lo, min(lo + batch_size, n))
            out, yb = model.infer(_take(x, idx)), _take(y, idx)
            for j, m in enumerate(metrics):
                if isinstance(m, Loss):
                    count = idx.stop - idx.start
                    per_batch = count if criterion.reduction == "mean" else 1
                    p = m.batch(float(criterion.forward(out, yb)) * per_batch, count)
                else:
                    p = m.batch(out, yb)
                partials[j] = m.merge(partials[j], p)
    finally:
        model.train(was_training)
    return partials


def metric_results(metrics, partials_per_part):
    """Merge per-partition partials and return {metric name: value}."""
    out = {}
    for j, m in enumerate(metrics):
        merged = m.empty()
        for parts in partials_per_part:
            merged = m.merge(merged, parts[j])
        out[m.name] = float(m.result(merged))
    return out
