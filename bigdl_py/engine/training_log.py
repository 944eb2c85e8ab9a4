"""Training log as JSON lines, and a plot of its curves."""
import json
import os

from bigdl_py import storage
from bigdl_py.mirror import Mirror


class TrainingLog:
    """Appends one JSON object per line to `path`, a local path or a storage URI.

    A local file is flushed line by line, so a crash keeps every line. On remote storage
    (hdfs://, s3://) the file is written locally and copied there every `interval` seconds
    and at close (see bigdl_py.mirror); lines already at the URI are kept.

    Args:
        path: the log file, or None to keep the records in memory only.
        interval: least seconds between two copies to remote storage.

    Example:
        log = TrainingLog("s3://bucket/runs/7/train.jsonl")
        log.write(step=1, loss=0.7)
        log.close()
    """

    def __init__(self, path, interval=30.0):
        self.path = path
        self.records = []
        self._file = self._mirror = None
        if not path:
            return
        local = storage.local_path(path)
        if local is None:
            self._mirror = Mirror(storage.dirname(path), interval)
            local = os.path.join(self._mirror.local, storage.basename(path))
            if storage.isfile(path):
                with open(local, "wb") as f:
                    f.write(storage.read_bytes(path))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        self._file = open(local, "a")

    def write(self, **record):
        self.records.append(record)
        if self._file:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            if self._mirror:
                self._mirror.sync()

    def close(self):
        if self._file:
            self._file.close()
            self._file = None
        if self._mirror:
            self._mirror.close()
            self._mirror = None


def read_log(path):
    """The records of a log file (local path or storage URI)."""
    return [json.loads(line) for line in storage.read_bytes(path).decode("utf-8").splitlines() if line.strip()]


def plot_training_log(log_path, png_path, keys=("loss",)):
    """Plot each key against the step (records without the key are skipped) to a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
        if points:
            ax.plot(*zip(*points), marker="." if len(points) < 50 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
