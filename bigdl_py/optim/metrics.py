"""Validation metrics that merge: computed per partition on executors, combined anywhere.

Every metric has
    partial = metric.batch(output, target)   # small tuple of numbers (or arrays for AUC)
    partial = metric.merge(a, b)             # associative and commutative
    value   = metric.result(partial)         # float; nan when undefined (no samples)
and `metric.empty()`, the partial of no samples (for empty partitions and folds).
Class targets are 0-based integers (as in PyTorch), possibly stored as floats.
Binary metrics take scores of shape (N,) or (N, 1) (probabilities, threshold 0.5)
or two-class outputs (N, 2) (probabilities or logits; class 1 wins by argmax).
"""
import numpy as np

from bigdl_py.optim._config import Configurable, Registry

METRICS = Registry("metric")


def _output(output, what="output"):
    if not isinstance(output, np.ndarray) or not np.issubdtype(output.dtype, np.floating):
        got = output.dtype if isinstance(output, np.ndarray) else type(output).__name__
        raise ValueError(f"{what}: expected a float numpy array, received {got}")
    return output


def _labels(target, n, num_classes):
    """Integer class labels of shape (n,) from (n,) or (n, 1), checked against num_classes."""
    t = np.asarray(target)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != (n,):
        raise ValueError(f"target: expected class labels of shape ({n},) to match output, received {t.shape}")
    labels = t.astype(np.int64)
    if np.any(labels != t) or np.any(labels < 0) or np.any(labels >= num_classes):
        raise ValueError(f"target: expected integer labels in [0, {num_classes}), "
                         f"received values in [{t.min()}, {t.max()}]")
    return labels


def _binary(output, target):
    """(predicted positive: bool (N,), label: bool (N,), score: float (N,)) for binary metrics."""
    output = _output(output)
    if output.ndim == 2 and output.shape[1] == 2:
        score = output[:, 1].astype(np.float64) - output[:, 0]  # ranks like p1 for logits and probabilities
        positive = output[:, 1] > output[:, 0]
    elif output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1):
        score = output.reshape(-1).astype(np.float64)
        positive = score > 0.5
    else:
        raise ValueError(f"output: expected binary scores (N,), (N, 1) or two-class outputs (N, 2), "
                         f"received shape {output.shape}")
    return positive, _labels(target, len(score), 2).astype(bool), score


class Metric(Configurable):
    """Base class; `name` labels the metric in logs and `needs_class_labels` says whether
    targets must be whole-number class labels (accuracy, AUC, ...) rather than any value."""

    _registry = METRICS
    needs_class_labels = False

    @property
    def name(self):
        return type(self).__name__

    def empty(self):
        raise NotImplementedError

    def batch(self, output, target):
        raise NotImplementedError

    def merge(self, a, b):
        return tuple(x + y for x, y in zip(a, b))

    def result(self, partial):
        raise NotImplementedError

    def __call__(self, output, target):
        """The metric of one batch: result(batch(output, target))."""
        return self.result(self.batch(output, target))


def _ratio(num, den):
    return float(num) / den if den else float("nan")


@METRICS.register
class TopK(Metric):
    """Fraction of samples whose target class is among the k highest outputs.

    A sample counts when fewer than k classes score strictly higher than its target.
    For k=1 a single-column (or 1-D) output is binary: predicted 1 when > 0.5.
    Partial: (correct, count).
    """

    needs_class_labels = True

    def __init__(self, k=1):
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"Invalid k: expected an integer >= 1, received {k!r}")
        self.config = dict(k=int(k))

    @property
    def name(self):
        return f"Top{self.config['k']}Accuracy"

    def empty(self):
        return (0, 0)

    def batch(self, output, target):
        k, output = self.config["k"], _output(output)
        if k == 1 and (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
            positive, label, _ = _binary(output, target)
            return int(np.count_nonzero(positive == label)), len(label)
        if output.ndim != 2 or output.shape[1] < k:
            raise ValueError(f"output: expected shape (N, C) with C >= {k} for top-{k} accuracy, "
                             f"received {output.shape}")
        labels = _labels(target, output.shape[0], output.shape[1])
        target_score = output[np.arange(len(labels)), labels]
        higher = np.count_nonzero(output > target_score[:, None], axis=1)
        return int(np.count_nonzero(higher < k)), len(labels)

    def result(self, partial):
        return _ratio(*partial)


def Top1Accuracy():
    """TopK(k=1)."""
    return TopK(1)


def Top5Accuracy():
    """TopK(k=5)."""
    return TopK(5)


@METRICS.register
class Loss(Metric):
    """Mean loss over samples, whatever the criterion.

    `batch(loss_sum, count)` takes the criterion's sum over the batch (reduction="sum")
    and the batch's sample count. Partial: (loss sum, count).
    """

    def __init__(self):
        self.config = {}

    def empty(self):
        return (0.0, 0)

    def batch(self, loss_sum, count):
        if not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"count: expected the number of samples (an integer >= 0), received {count!r}")
        return float(loss_sum), int(count)

    def result(self, partial):
        return _ratio(*partial)


@METRICS.register
class MAE(Metric):
    """Mean absolute error over all output elements. Partial: (sum |output - target|, count)."""

    def __init__(self):
        self.config = {}

    def empty(self):
        return (0.0, 0)

    def batch(self, output, target):
        output, target = _output(output), np.asarray(target)
        if target.size != output.size or target.shape[:1] != output.shape[:1]:
            raise ValueError(f"target: expected shape {output.shape} (as output), received {target.shape}")
        diff = output.reshape(-1).astype(np.float64) - target.reshape(-1)
        return float(np.abs(diff).sum()), diff.size

    def result(self, partial):
        return _ratio(*partial)


@METRICS.register
class AUC(Metric):
    """Exact area under the ROC curve for binary targets (ties count one half).

    Exact rather than binned: partials keep every (score, label), 9 bytes per sample
    (e.g. 9 MB for a million validation samples), and `result` sorts them once.
    Partial: (scores float64 array, labels bool array).
    """

    needs_class_labels = True

    def __init__(self):
        self.config = {}

    def empty(self):
        return (np.zeros(0, np.float64), np.zeros(0, bool))

    def batch(self, output, target):
        _, label, score = _binary(output, target)
        return score, label

    def merge(self, a, b):
        return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])

    def result(self, partial):
        scores, labels = partial
        n_pos = int(np.count_nonzero(labels))
        n_neg = len(labels) - n_pos
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        # Mann-Whitney U with average ranks for tied scores.
        order = np.argsort(scores, kind="stable")
        sorted_scores = scores[order]
        starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        ends = np.r_[starts[1:], len(scores)]
        ranks = np.empty(len(scores))
        ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
        u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
        return float(u / (n_pos * n_neg))


class _BinaryCounts(Metric):
    """Partial: (true positives, false positives, false negatives)."""

    needs_class_labels = True

    def __init__(self):
        self.config = {}

    def empty(self):
        return (0, 0, 0)

    def batch(self, output, target):
        positive, label, _ = _binary(output, target)
        return (int(np.count_nonzero(positive & label)), int(np.count_nonzero(positive & ~label)),
                int(np.count_nonzero(~positive & label)))


@METRICS.register
class Precision(_BinaryCounts):
    """tp / (tp + fp) for the positive class (nan when nothing is predicted positive)."""

    def result(self, partial):
        tp, fp, _ = partial
        return _ratio(tp, tp + fp)


@METRICS.register
class Recall(_BinaryCounts):
    """tp / (tp + fn) for the positive class (nan when there are no positives)."""

    def result(self, partial):
        tp, _, fn = partial
        return _ratio(tp, tp + fn)


METRICS.alias("top1", TopK, k=1)
METRICS.alias("top1accuracy", TopK, k=1)
METRICS.alias("top5", TopK, k=5)
METRICS.alias("top5accuracy", TopK, k=5)
METRICS.alias("accuracy", TopK, k=1)


def metrics_get(identifier, **kwargs):
    """Resolve "top1" / "top5" / "loss" / "mae" / "auc" / ..., a config dict or an instance."""
    return METRICS.get(identifier, **kwargs)
