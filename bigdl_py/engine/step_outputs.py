"""Where the driver reports each finished training step: the training log, progress bar and TensorBoard."""
from bigdl_py.engine.progress import TrainingProgress, progress_wanted
from bigdl_py.engine.tensorboard import TensorBoardWriter
from bigdl_py.engine.training_log import TrainingLog


class StepOutputs:
    """The outputs of one optimize() run, written after every iteration and closed at its end.

    Args:
        optimizer: the optimizer (its log path, progress and TensorBoard settings, end trigger,
            sampler and model).
        step, epoch, iteration: where the run starts (non-zero when resumed).

    Example:
        outputs = StepOutputs(opt, 0, 0, 0)
        try:
            outputs.write(entry, scores={})
        finally:
            outputs.close()
    """

    def __init__(self, optimizer, step, epoch, iteration):
        self.log = TrainingLog(optimizer.log_path)
        self.progress = None
        if progress_wanted(optimizer.progress):
            self.progress = TrainingProgress(optimizer.end_trigger, optimizer.sampler.iterations_per_epoch,
                                             step, epoch, iteration)
        self.board = None
        if optimizer.tensorboard is not None:
            names = [name for name, _, _ in optimizer.model.parameter_segments()]
            self.board = TensorBoardWriter(optimizer.tensorboard["log_dir"], names)

    def write(self, entry, scores):
        """Report one iteration's log entry; `scores` are its validation results ({} when none ran)."""
        self.log.write(**entry)
        if self.progress is not None:
            self.progress.update(entry)
        if self.board is not None:
            self.board.write_step(entry, scores)

    def write_norms(self, step, weight_squares, gradient_squares):
        """Per-parameter sums of squares of the weights and gradient of `step` (see TensorBoardWriter)."""
        if self.board is not None:
            self.board.write_norms(step, weight_squares, gradient_squares)

    def close(self):
        """Close each output even when another fails to (the first failure is raised after)."""
        error = None
        for output in (self.progress, self.board, self.log):
            try:
                if output is not None:
                    output.close()
            except Exception as e:  # the others must still flush their files
                error = error or e
        if error is not None:
            raise error
