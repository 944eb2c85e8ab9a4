"""TensorBoard event files written on the driver: step scalars, validation metrics, weight and gradient norms."""
import numpy as np

from bigdl_py import storage
from bigdl_py.mirror import Mirror

# Log-entry keys written as scalars each iteration, and their tags.
STEP_SCALARS = {"loss": "train/loss", "lr": "train/lr", "samples_s": "train/samples_s",
                "compute_ms": "time/compute_ms", "sync_ms": "time/sync_ms", "data_ms": "time/data_ms",
                "overhead_ms": "time/overhead_ms"}


def segment_squares(vector, starts):
    """Sum of squares of each segment of `vector`, the segments beginning at `starts` (float64).

    Example:
        segment_squares(np.ones(5, np.float32), [0, 2])  # array([2., 3.])
    """
    v = np.asarray(vector, dtype=np.float64)
    return np.add.reduceat(v * v, np.asarray(starts, dtype=np.int64)) if v.size else np.zeros(len(starts))


def merged_squares(step, parts):
    """(step, weight squares, gradient squares) per parameter, in flat-vector order, from the
    {parameter start: (weight squares, gradient squares)} of every slice."""
    merged = {}
    for part in parts:
        merged.update(part)
    starts = sorted(merged)
    return step, [merged[k][0] for k in starts], [merged[k][1] for k in starts]


class TensorBoardWriter:
    """Writes one run's TensorBoard events under `log_dir` (tensorboardX), from the driver only.

    Tags: train/loss, train/lr, train/samples_s and, for DistriOptimizer, time/compute_ms,
    time/sync_ms, time/data_ms, time/overhead_ms every iteration; validation/<metric name>
    at each validation; norms/weights and norms/gradients (global L2 norms) and
    weights_norm/<parameter>, gradients_norm/<parameter> at the iterations norms are given for.

    Args:
        log_dir: folder of the event files (created if missing), a local path or a storage
            URI (hdfs://, s3://): remote folders get the files written locally and copied
            every `interval` seconds and at close (see bigdl_py.mirror).
        segment_names: the parameter name of each segment of the flat vector, in order.
        interval: least seconds between two copies to remote storage.

    Example:
        board = TensorBoardWriter("output/tensorboard", ["0.weight", "0.bias"])
        board.write_step(dict(step=1, loss=0.7, lr=0.1, samples_s=900.0), {"Top1Accuracy": 0.5})
        board.close()
    """

    def __init__(self, log_dir, segment_names, interval=30.0):
        from tensorboardX import SummaryWriter

        self.segment_names = list(segment_names)
        local = storage.local_path(log_dir)
        self.mirror = None if local is not None else Mirror(log_dir, interval)
        self.writer = SummaryWriter(local if local is not None else self.mirror.local)

    def write_step(self, entry, scores):
        """The iteration's scalars from its log entry, and its validation `scores` ({name: value})."""
        step = entry["step"]
        for key, tag in STEP_SCALARS.items():
            if key in entry:
                self.writer.add_scalar(tag, entry[key], step)
        for name, value in scores.items():
            self.writer.add_scalar(f"validation/{name}", value, step)
        if self.mirror is not None:
            self.writer.flush()
            self.mirror.sync()

    def write_norms(self, step, weight_squares, gradient_squares):
        """L2 norms from per-segment sums of squares of the weights and the gradient after `step`."""
        for kind, squares in (("weights", weight_squares), ("gradients", gradient_squares)):
            squares = np.asarray(squares, dtype=np.float64)
            if len(squares) != len(self.segment_names):
                raise ValueError(f"{kind} squares: expected one per parameter ({len(self.segment_names)}), "
                                 f"received {len(squares)}")
            self.writer.add_scalar(f"norms/{kind}", float(np.sqrt(squares.sum())), step)
            for name, value in zip(self.segment_names, squares):
                self.writer.add_scalar(f"{kind}_norm/{name}", float(np.sqrt(value)), step)

    def close(self):
        self.writer.close()
        if self.mirror is not None:
            self.mirror.close()
