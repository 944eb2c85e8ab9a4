"""Scorecard metrics on (score, label) arrays: ROC AUC, PR AUC, KS, calibration, deciles.

Scores are "higher = riskier" (probability of a bad loan, or a rule points total);
labels are 1 for bad. Ties are handled exactly (a tied pair counts one half), so
an integer rule score gets its true AUC.
"""
import numpy as np


def _check(score, label):
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    label = np.asarray(label, dtype=np.float64).reshape(-1)
    if score.shape != label.shape:
        raise ValueError(f"score and label: expected the same length, received {score.size} and {label.size}")
    bad = ~np.isfinite(score) | ~np.isin(label, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"score/label: expected finite scores and 0/1 labels; {int(bad.sum())} of "
                         f"{score.size} rows are not (first: score {score[bad][0]}, label {label[bad][0]})")
    if label.min(initial=1) == label.max(initial=0):
        raise ValueError(f"label: expected both classes, found only {label[:1].tolist()} in {label.size} rows")
    return score, label.astype(bool)


def _curve(score, label):
    """Cumulative (true positives, false positives) at each distinct threshold, high to low."""
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], label[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last row of each tie group
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64), s[last]


def roc_auc(score, label):
    """Area under the ROC curve (trapezoids between tie groups = Mann-Whitney with half ties)."""
    score, label = _check(score, label)
    tp, fp, _ = _curve(score, label)
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return float(np.trapezoid(tpr, fpr))


def roc_points(score, label):
    score, label = _check(score, label)
    tp, fp, _ = _curve(score, label)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def pr_auc(score, label):
    """Average precision: sum over thresholds of precision x recall step (as sklearn)."""
    score, label = _check(score, label)
    tp, fp, _ = _curve(score, label)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ks_statistic(score, label):
    """Kolmogorov-Smirnov: the largest gap between the bad and good score CDFs."""
    score, label = _check(score, label)
    tp, fp, _ = _curve(score, label)
    return float(np.max(np.abs(tp / tp[-1] - fp / fp[-1])))


def calibration_bins(prob, label, bins=10):
    """Equal-width probability bins: [{lo, hi, count, mean_predicted, observed_rate}] (empty bins left out)."""
    prob, label = _check(prob, label)
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError(f"prob: expected probabilities in [0, 1], found [{prob.min()}, {prob.max()}]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        m = which == b
        if m.any():
            rows.append(dict(lo=float(edges[b]), hi=float(edges[b + 1]), count=int(m.sum()),
                             mean_predicted=float(prob[m].mean()), observed_rate=float(label[m].mean())))
    return rows


def decile_table(score, label, groups=10):
    """Bad rate by score decile, riskiest first, with the cumulative share of bads captured."""
    score, label = _check(score, label)
    order = np.argsort(-score, kind="mergesort")
    total_bad = label.sum()
    rows, captured = [], 0
    for d, part in enumerate(np.array_split(order, groups), start=1):
        bads = int(label[part].sum())
        captured += bads
        rows.append(dict(decile=d, count=int(part.size), bads=bads, bad_rate=bads / part.size if part.size else 0.0,
                         min_score=float(score[part].min()), max_score=float(score[part].max()),
                         cumulative_capture=float(captured / total_bad)))
    return rows


def summarize(score, label, probability=True):
    """All metrics of one scorer; calibration only for probabilities."""
    out = dict(roc_auc=roc_auc(score, label), pr_auc=pr_auc(score, label), ks=ks_statistic(score, label),
               deciles=decile_table(score, label))
    if probability:
        out["calibration"] = calibration_bins(score, label)
    return out
