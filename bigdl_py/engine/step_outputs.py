"""Where the driver reports each finished training step: the training log and the progress bar."""
from bigdl_py.engine.progress import TrainingProgress, progress_wanted
from bigdl_py.engine.training_log import TrainingLog


class StepOutputs:
    """The outputs of one optimize() run, written after every iteration and closed at its end.

    Args:
        optimizer: the optimizer (its log path, progress setting, end trigger and sampler).
        step, epoch, iteration: where the run starts (non-zero when resumed).

    Example:
        outputs = StepOutputs(opt, 0, 0, 0)
        try:
            outputs.write(entry)
        finally:
            outputs.close()
    """

    def __init__(self, optimizer, step, epoch, iteration):
        self.log = TrainingLog(optimizer.log_path)
        self.progress = None
        if progress_wanted(optimizer.progress):
            self.progress = TrainingProgress(optimizer.end_trigger, optimizer.sampler.iterations_per_epoch,
                                             step, epoch, iteration)

    def write(self, entry):
        """Report one iteration's log entry (with its validation scores, if any)."""
        self.log.write(**entry)
        if self.progress is not None:
            self.progress.update(entry)

    def close(self):
        try:
            if self.progress is not None:
                self.progress.close()
        finally:
            self.log.close()
