"""The interface between the training loop and where the steps run.

BaseOptimizer.run_training owns what every engine does the same way: the counters,
the learning rate, the log, validation, early stopping, the end and checkpoint
triggers. A backend owns the weights and the optimizer state and does the work:
the local engine in this process (engine/local.py), DistriOptimizer's block-manager
all-reduce (engine/blockmanager_backend.py) or its ring of barrier tasks
(engine/ring_driver.py).
"""
from dataclasses import dataclass


@dataclass
class StepResult:
    """What a backend reports of one training step.

    Args:
        loss: the mean loss over the step's samples.
        count: the step's samples.
        times: for a distributed backend, where the step's time went: {"compute", "data",
            "sync"} in seconds (slowest partition or rank) and "driver_bytes"; None otherwise.
    """
    loss: float
    count: int
    times: dict = None


class TrainingBackend:
    """Runs a training's steps; called by BaseOptimizer.run_training in this order:
    start, then step (validate, checkpoint)*, then weights; close always, last."""

    def start(self, source):
        """Load the weights and optimizer state of checkpoint `source`, or (None) start from the
        model's weights and a fresh optimizer state."""
        raise NotImplementedError(f"{type(self).__name__}.start")

    def step(self, step, epoch, iteration, lr, norms):
        """Train step number `step` (iteration `iteration` of `epoch`) at learning rate `lr`.

        norms: compute the weight and gradient norms of this step (see known_norms).
        Returns a StepResult.
        """
        raise NotImplementedError(f"{type(self).__name__}.step")

    def validate(self):
        """{metric name: value} of the validation metrics on the current weights."""
        raise NotImplementedError(f"{type(self).__name__}.validate")

    def checkpoint(self, root, meta, keep):
        """Write a committed checkpoint of the current weights and state with `meta` under `root`,
        keeping the newest `keep` there."""
        raise NotImplementedError(f"{type(self).__name__}.checkpoint")

    def weights(self):
        """The flat weight vector at the end of training."""
        raise NotImplementedError(f"{type(self).__name__}.weights")

    def known_norms(self):
        """[(step, weight squares, gradient squares)] that became known since the last call
        (a backend may learn a step's norms later than the step itself)."""
        raise NotImplementedError(f"{type(self).__name__}.known_norms")

    def close(self):
        """Release what the backend holds (connections, tasks), also after a failure."""
