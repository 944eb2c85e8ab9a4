"""ROC and calibration charts as PNG (matplotlib, Agg: no display needed), written atomically."""
import io

from bigdl_py.atomic import atomic_write_bytes
from bigdl_py.pipelines.risk_scoring.evaluate import roc_auc, roc_points


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_roc(curves, label, path, title):
    """curves: {name: scores} on the same test rows; one ROC line each with its AUC."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for name, score in curves.items():
        fpr, tpr = roc_points(score, label)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(score, label):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate (goods flagged)", ylabel="true positive rate (bads caught)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return path


def plot_calibration(bins_by_model, path, title):
    """bins_by_model: {name: calibration_bins(...)}; predicted vs observed bad rate per bin."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for name, bins in bins_by_model.items():
        ax.plot([b["mean_predicted"] for b in bins], [b["observed_rate"] for b in bins], marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="mean predicted P(bad)", ylabel="observed bad rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)
    return path
