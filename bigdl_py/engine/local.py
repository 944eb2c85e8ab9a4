"""LocalOptimizer: single-process training on numpy arrays.

It is the oracle for the distributed optimizer: given the same partition sizes it
visits the same samples in the same iterations (see sampling.py) and applies the
same optimizer update to the whole flat vector.
"""
import numpy as np

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.backend import StepResult, TrainingBackend
from bigdl_py.engine.base import BaseOptimizer, TrainingError, metric_partials, metric_results, sum_reduction
from bigdl_py.engine.sampling import PartitionedSampler
from bigdl_py.engine.tensorboard import segment_squares
from bigdl_py.optim.frozen import update_trainable


def _as_batchable(name, a):
    if isinstance(a, (list, tuple)):
        return [np.asarray(v) for v in a]
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array (or a list of arrays for a multi-input model), "
                         f"received {type(a).__name__}")
    return a


def take(a, idx):
    """Rows idx of an array, or of each array of a multi-input list."""
    return [v[idx] for v in a] if isinstance(a, list) else a[idx]


def num_rows(a):
    return len(a[0]) if isinstance(a, list) else len(a)


def check_finite(name, a, step):
    for v in a if isinstance(a, list) else [a]:
        if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
            bad = int((~np.isfinite(v.reshape(len(v), -1))).any(axis=1).sum())
            raise TrainingError(f"step {step}: {bad} sample(s) in the {name} batch hold NaN or Inf")


class LocalOptimizer(BaseOptimizer):
    """Train `model` on (x, y) in this process.

    Args:
        model: a bigdl_py.nn Module.
        criterion: a bigdl_py.nn criterion (reduction "mean").
        optim_method: an optimizer from bigdl_py.optim (e.g. SGD(momentum=0.9)).
        x, y: training inputs (an array, or a list of arrays for several inputs) and targets.
        batch_size: samples per iteration (the last batch of an epoch may be short).
        end_trigger: when to stop (default MaxEpoch(1)).
        learning_rate, schedule: base rate and a schedule(step, epoch, base_lr).
        seed: sampling and dropout seed.
        partition_sizes: order samples as the distributed engine does over partitions
            of these sizes (x concatenated partition by partition); default one partition.

    Example:
        opt = LocalOptimizer(lenet5(), CrossEntropyLoss(), SGD(momentum=0.9),
                             x_train, y_train, batch_size=128, learning_rate=0.05)
        model = opt.optimize()
    """

    def __init__(self, model, criterion, optim_method, x, y, batch_size, end_trigger=None,
                 learning_rate=0.01, schedule=None, seed=0, partition_sizes=None):
        super().__init__(model, criterion, optim_method, batch_size, end_trigger, learning_rate, schedule, seed)
        self.x = _as_batchable("x", x)
        self.y = _as_batchable("y", y)
        if num_rows(self.x) != num_rows(self.y):
            raise ValueError(f"x and y: expected the same number of rows, received {num_rows(self.x)} and {num_rows(self.y)}")
        sizes = partition_sizes if partition_sizes is not None else [num_rows(self.x)]
        if sum(sizes) != num_rows(self.x):
            raise ValueError(f"partition_sizes: expected sizes summing to {num_rows(self.x)} rows, received {list(sizes)}")
        self.sampler = PartitionedSampler(sizes, self.batch_size, self.seed)
        # Mirroring several partitions: reduce per partition as the distributed engine does.
        self.sum_criterion = sum_reduction(criterion) if len(sizes) > 1 else None

    def optimize(self, resume_from=None):
        """Train until the end trigger fires; returns the model.

        resume_from: a checkpoint directory, or "latest" for the newest one under the
        checkpoint path; training then continues exactly where that run stopped.
        """
        position, source = self.resume(resume_from)
        return self.run_training(_LocalBackend(self), position, source)

    def validate(self):
        """Metrics over the validation set, in eval mode, merged batch by batch."""
        v = self.validation
        partials = metric_partials(self.model, self.criterion, v["metrics"], v["x"], v["y"], v["batch_size"])
        return metric_results(v["metrics"], [partials])


class _LocalBackend(TrainingBackend):
    """The whole batch's gradient and the optimizer update on the flat vector, in this process."""

    def __init__(self, opt):
        self.opt, self.model = opt, opt.model
        self.flat_weights, self.flat_grads = self.model.parameters_flat()
        self.segments = np.array([s for _, s, _ in self.model.parameter_segments()] + [self.flat_weights.size])
        self.state = opt.optim_method.init_state(self.flat_weights.size)
        self.frozen = self.model.frozen_ranges()
        self.batches = None  # (epoch, its batches: per iteration, the sample indices of each partition)
        self.norms = []

    def start(self, source):
        if source is not None:
            stored_weights, stored_state = ckpt.load_range(source, 0, self.flat_weights.size)
            ckpt.restore_state(source, self.state, stored_state)
            self.flat_weights[:] = stored_weights
        self.model.set_input_grad_needed(False)  # nobody reads the gradient w.r.t. the data
        self.model.train()

    def step(self, step, epoch, iteration, lr, norms):
        if self.batches is None or self.batches[0] != epoch:
            self.batches = (epoch, list(self.opt.sampler.partition_batches(epoch)))
        shares = self.batches[1][iteration]
        idx = np.concatenate(shares)
        self.flat_grads.fill(0.0)
        loss = self._accumulate_gradient(shares if self.opt.sum_criterion else [idx], step, epoch, iteration)
        self.opt.clip_gradient(self.flat_grads)
        update_trainable(self.opt.optim_method, self.flat_weights, self.flat_grads, self.state, lr, step,
                         self.segments, frozen=self.frozen)
        # A finite loss can still give an update that overflows; stop before such weights
        # reach a checkpoint.
        if not np.isfinite(self.flat_weights).all():
            bad = int((~np.isfinite(self.flat_weights)).sum())
            raise TrainingError(f"step {step}: the update made {bad} weight(s) NaN or Inf "
                                f"(training diverged at lr {lr:g}); the last good checkpoint is kept")
        if norms:  # the gradient this update applied (after clipping)
            starts = self.segments[:-1]
            self.norms.append((step, segment_squares(self.flat_weights, starts),
                               segment_squares(self.flat_grads, starts)))
        return StepResult(loss=loss, count=len(idx))

    def _accumulate_gradient(self, shares, step, epoch, iteration):
        """Accumulate the batch gradient into the flat gradient vector; return the mean loss.

        With several partitions the gradient is reduced exactly as DistriOptimizer does:
        a summed gradient per partition, added in partition order, divided once by the
        sample count. The two engines then agree bit for bit, even under Adam, which
        magnifies round-off on near-zero gradients.
        """
        opt = self.opt
        criterion = opt.sum_criterion or opt.criterion
        loss = 0.0
        for partition, share in enumerate(shares):
            if len(share) == 0:
                continue
            # Dropout masks seeded per partition, as on the executors.
            self.model.set_forward_seed(opt.forward_seed(epoch, iteration, partition))
            xb, yb = take(opt.x, share), take(opt.y, share)
            check_finite("input", xb, step)
            check_finite("target", yb, step)  # else a NaN target reads as divergence
            out = self.model.forward(xb)
            try:
                batch_loss, grad_out = criterion.forward_backward(out, yb)
            except ValueError as e:
                raise TrainingError(f"step {step}: {e}") from None
            loss += float(batch_loss)
            if not np.isfinite(loss):
                raise TrainingError(f"step {step}: the loss is {loss} (training diverged); "
                                    f"the last good checkpoint is kept")
            self.model.backward(xb, grad_out)
        if opt.sum_criterion:
            count = sum(len(share) for share in shares)
            self.flat_grads /= np.float32(count)
            loss /= count
        return loss

    def validate(self):
        return self.opt.validate()

    def checkpoint(self, root, meta, keep):
        ckpt.save(root, meta, self.model, self.state, keep=keep)

    def weights(self):
        return self.flat_weights

    def known_norms(self):
        known, self.norms = self.norms, []
        return known
