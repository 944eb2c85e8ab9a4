"""The training progress bar on the driver: iterations, loss, samples/s and ETA (tqdm)."""
import sys

from bigdl_py.optim.triggers import MaxEpoch, MaxIteration


def progress_wanted(setting, stream=None):
    """Whether to show the bar: `setting` when True or False; None means auto.

    Auto is on when `stream` (default sys.stderr) is a terminal or when running in
    a Jupyter (IPython kernel) session, and off otherwise (logs, CI, spark-submit
    with redirected output).
    """
    if setting is not None:
        return bool(setting)
    stream = sys.stderr if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or _in_jupyter()


def _in_jupyter():
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


class TrainingProgress:
    """One tqdm bar for a whole optimize() run, updated after each iteration.

    With a MaxEpoch or MaxIteration end trigger the bar counts towards the run's
    last iteration; with any other trigger it counts the iterations of the current
    epoch and starts again at each epoch.

    Args:
        end_trigger: the optimizer's end trigger.
        iterations_per_epoch: iterations in one epoch.
        step, epoch, iteration: where the run starts (non-zero when resumed).

    Example:
        bar = TrainingProgress(MaxEpoch(2), 100, 0, 0, 0)
        bar.update(dict(epoch=0, loss=0.7, samples_s=5000.0))
        bar.close()
    """

    def __init__(self, end_trigger, iterations_per_epoch, step, epoch, iteration):
        from tqdm.auto import tqdm

        self.iterations_per_epoch = iterations_per_epoch
        self.max_epoch = end_trigger.config["n"] if isinstance(end_trigger, MaxEpoch) else None
        if isinstance(end_trigger, MaxIteration):
            self.per_epoch, total, done = False, end_trigger.config["n"], step
        elif self.max_epoch is not None:
            self.per_epoch, total, done = False, self.max_epoch * iterations_per_epoch, \
                epoch * iterations_per_epoch + iteration
        else:
            self.per_epoch, total, done = True, iterations_per_epoch, iteration
        self.epoch = epoch
        self.bar = tqdm(total=total, initial=min(done, total), desc=self._describe(epoch), unit="it",
                        dynamic_ncols=True, mininterval=0.5)

    def _describe(self, epoch):
        return f"epoch {epoch + 1}" + (f"/{self.max_epoch}" if self.max_epoch else "")

    def update(self, entry):
        """Count the iteration of log entry `entry` (its epoch, loss and samples/s)."""
        if entry["epoch"] != self.epoch:
            self.epoch = entry["epoch"]
            if self.per_epoch:
                self.bar.refresh()
                self.bar.reset(total=self.iterations_per_epoch)
            self.bar.set_description(self._describe(self.epoch), refresh=False)
        self.bar.set_postfix({"loss": f"{entry['loss']:.4f}", "samples/s": f"{entry['samples_s']:.0f}"},
                             refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()
