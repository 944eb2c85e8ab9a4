"""Repeated stratified k-fold comparison of the network and the baselines.

One 60/20/20 split of the loans table tests on ~22 bad loans: the ROC AUC of a single
test split then has a standard error of ~0.05, larger than the differences between
the models (seed 0 to 2 of the same split rule gave MLlib's GBT 0.77, 0.60 and 0.70).
Cross-validation tests every row once per repeat, so the comparison rests on all the
bad loans: for each fold, the features and every model are fitted on the other folds
(one of them validating the network's early stopping) and scored on it, exactly as
the pipeline does on its single split (`pipeline.train_and_score`).
"""
import numpy as np

from bigdl_py.atomic import atomic_write_json
from bigdl_py.pipelines.risk_scoring import data, evaluate
from bigdl_py.pipelines.risk_scoring.pipeline import targets, train_and_score, wanted_baselines


def cross_validate(spark, dataset="loans", folds=5, repeats=1, seed=0, quick=False, mllib_baselines=None,
                   output_path=None):
    """Test ROC AUC of every model on each of `folds` x `repeats` held-out folds.

    Args:
        spark: a SparkSession.
        dataset: "credit_data" or "loans".
        folds: k (>= 3); fold k tests, fold k+1 validates, the other k-2 train.
        repeats: how many fold assignments (seeds seed, seed+1, ...).
        quick, mllib_baselines: as run_risk_pipeline.
        output_path: where to write the summary as JSON (optional).
    Returns:
        dict with `folds` (per fold: seed, fold, rows, test AUC and fit seconds per model,
        the network's best validation AUC), `models` (per model: mean, sd, min, max of
        the test AUC, mean fit seconds), `network_minus` (per baseline: the paired
        difference of test AUCs, mean and sd, and in how many folds the network was at
        least as good), `targets` (the issue's targets on the mean AUCs) and `table`.
    """
    wanted_baselines(mllib_baselines)  # fail before any work
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats: expected an integer >= 1, received {repeats!r}")
    per_fold = []
    for repeat in range(repeats):
        for fold in range(folds):
            spec, df = data.load_dataframe(spark, dataset, seed=seed + repeat, split_by="fold", fold=fold, folds=folds)
            fitted = train_and_score(spark, dataset, spec, df, quick, seed + repeat, mllib_baselines)
            per_fold.append(dict(seed=seed + repeat, fold=fold, rows=fitted["rows"],
                                 network_validation_auc=fitted["validation_auc"],
                                 test_auc={m: evaluate.roc_auc(*s) for m, s in fitted["scores"].items()},
                                 train_s=fitted["seconds"]))
    summary = summarize_folds(per_fold)
    summary.update(dataset=dataset, folds_per_repeat=folds, repeats=repeats, seed=seed, quick=quick)
    if output_path is not None:
        atomic_write_json(output_path, summary)
    return summary


def summarize_folds(per_fold):
    """Mean/sd per model and the network's paired differences, from cross_validate's fold records."""
    names = list(per_fold[0]["test_auc"])
    auc = {m: np.array([f["test_auc"][m] for f in per_fold]) for m in names}
    sd = (lambda a: float(a.std(ddof=1)) if a.size > 1 else 0.0)
    models = {}
    for m in names:
        fits = [f["train_s"][m] for f in per_fold if f["train_s"][m] is not None]
        models[m] = dict(mean_auc=float(auc[m].mean()), sd_auc=sd(auc[m]), min_auc=float(auc[m].min()),
                         max_auc=float(auc[m].max()), mean_train_s=float(np.mean(fits)) if fits else None)
    validation = [f["network_validation_auc"] for f in per_fold if f["network_validation_auc"] is not None]
    models["network"]["mean_validation_auc"] = float(np.mean(validation)) if validation else None
    network_minus = {}
    for m in names:
        if m != "network":
            diff = auc["network"] - auc[m]
            network_minus[m] = dict(mean=float(diff.mean()), sd=sd(diff), network_at_least_as_good=int((diff >= 0).sum()),
                                    of=int(diff.size))
    rows = [dict(model=m, roc_auc=v["mean_auc"], train_s=v["mean_train_s"]) for m, v in models.items()]
    return dict(folds=per_fold, models=models, network_minus=network_minus, targets=targets(rows),
                table=format_cv_table(models, network_minus))


def format_cv_table(models, network_minus):
    lines = [f"{'model':<28}{'mean AUC':>9}{'sd':>8}{'min':>8}{'max':>8}{'net - it':>10}{'train s':>9}"]
    for m, v in models.items():
        diff = f"{network_minus[m]['mean']:+.4f}" if m in network_minus else "-"
        t = "-" if v["mean_train_s"] is None else f"{v['mean_train_s']:.1f}"
        lines.append(f"{m:<28}{v['mean_auc']:>9.4f}{v['sd_auc']:>8.4f}{v['min_auc']:>8.4f}{v['max_auc']:>8.4f}"
                     f"{diff:>10}{t:>9}")
    return "\n".join(lines)
