"""run_risk_pipeline: load, engineer features, train the network and the baselines,
evaluate on the test split, save the scoring PipelineModel, batch-score synthetic rows.

Everything one run produces goes under `output_dir`:
    model/                 fitted PipelineModel (features + network) + risk_scoring.json
    marginals.json         the training table's marginals (for synthetic scoring)
    metrics.json           the summary returned by run_risk_pipeline
    roc.png, calibration.png
    scored.parquet         the synthetic rows with their score and row_issues
"""
import os

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import functions as F

from bigdl_py.atomic import atomic_write_json
from bigdl_py.ml import NNClassifier
from bigdl_py.nn import CrossEntropyLoss
from bigdl_py.optim.optimizers import AdamW
from bigdl_py.pipelines.risk_scoring import baselines, data, evaluate, features, plots, scoring, synthetic
from bigdl_py.pipelines.risk_scoring.memory import ProcessTreePeak
from bigdl_py.pipelines.risk_scoring.network import class_weights, risk_network
from bigdl_py.pipelines.risk_scoring.rules import rule_score_column
from bigdl_py.shipping import ensure_importable_on_executors

# Network settings per table (chosen on the validation split; the test split is only scored).
# credit_data: wide & deep lifted the best validation AUC from 0.8758 to 0.8782.
NETWORK = {
    "credit_data": dict(hidden=(32, 16), dropout=0.2, wide=True, weight_decay=0.0, learning_rate=3e-3, batch_size=256,
                        max_epoch=20, patience=4),
    "loans": dict(hidden=(16,), dropout=0.3, wide=False, weight_decay=0.1, learning_rate=3e-3, batch_size=256,
                  max_epoch=12, patience=4),
}
QUICK_EPOCHS = 6
AUC_MARGIN = 0.005  # the target: network AUC >= best MLlib AUC - margin


def network_estimator(dataset, cardinalities, num_numeric, weights, quick=False, seed=0):
    """The NNClassifier of `dataset`: class-weighted cross-entropy, early stopping on validation AUC."""
    cfg = NETWORK[dataset]
    model = risk_network(cardinalities, num_numeric, cfg["hidden"], cfg["dropout"], seed=seed, wide=cfg["wide"])
    return NNClassifier(model=model, criterion=CrossEntropyLoss(weight=weights), featuresCol="features",
                        labelCol="label", batchSize=cfg["batch_size"],
                        maxEpoch=QUICK_EPOCHS if quick else cfg["max_epoch"],
                        optimizer=AdamW(weight_decay=cfg["weight_decay"]), learningRate=cfg["learning_rate"],
                        validationMetrics=["auc", "loss"], earlyStoppingMetric="auc",
                        earlyStoppingPatience=cfg["patience"], numPartitions=2, seed=seed,
                        inferenceBatchSize=16384, sync="ring")  # ~13 iterations an epoch: Spark jobs would dominate


def _test_scores(df, col):
    """(score, label) numpy arrays of a probability-vector column on the driver (the test split is small)."""
    from pyspark.ml.functions import vector_to_array

    pdf = df.select(vector_to_array(F.col(col))[1].alias("score"), "label").toPandas()
    return pdf["score"].to_numpy(), pdf["label"].to_numpy()


def _row(name, scores, label, train_s, probability=True):
    m = evaluate.summarize(scores, label, probability)
    return dict(model=name, roc_auc=m["roc_auc"], pr_auc=m["pr_auc"], ks=m["ks"], train_s=train_s,
                calibration=m.get("calibration"), deciles=m["deciles"])


def format_table(rows):
    """The metrics table as fixed-width text (ours first, then the baselines)."""
    lines = [f"{'model':<28}{'ROC AUC':>9}{'PR AUC':>9}{'KS':>8}{'train s':>9}"]
    for r in rows:
        t = "-" if r["train_s"] is None else f"{r['train_s']:.1f}"
        lines.append(f"{r['model']:<28}{r['roc_auc']:>9.4f}{r['pr_auc']:>9.4f}{r['ks']:>8.4f}{t:>9}")
    return "\n".join(lines)


def targets(rows):
    """The issue's targets, checked on the test metrics of this run (None: the baseline did not run)."""
    by = {r["model"]: r for r in rows}
    ours, mlp = by["network"], by.get("mllib_mlp")
    best = max((r["roc_auc"] for r in rows if r["model"].startswith("mllib_")), default=None)
    return dict(best_mllib_auc=best, auc_within_margin=None if best is None else ours["roc_auc"] >= best - AUC_MARGIN,
                beats_mllib_mlp=None if mlp is None else ours["roc_auc"] > mlp["roc_auc"],
                faster_than_mllib_mlp=None if mlp is None else ours["train_s"] <= mlp["train_s"])


def run_risk_pipeline(spark, dataset="credit_data", output_dir="output/risk_scoring", quick=False, seed=0,
                      split_by="random", score_rows=None, score_partitions=None, mllib_baselines=None):
    """Train, compare and score; returns the summary dict (also written to metrics.json).

    Args:
        spark: a SparkSession.
        dataset: "credit_data" or "loans".
        output_dir: folder for the model, metrics, plots and scored Parquet.
        quick: fewer epochs (and boosting rounds / MLP iterations for the baselines) and a
            small scoring run (tests, notebooks).
        seed: split, initialisation and synthetic-data seed.
        split_by: "random" (stratified 60/20/20) or "time" (loans: by issue month).
        score_rows, score_partitions: synthetic rows to batch-score (default 20,000
            quick, 1,000,000 otherwise); 1% of them carry planted bad values.
        mllib_baselines: names of the MLlib baselines to run (default: all of
            `baselines.NAMES`; the notebooks' short tours run fewer).
    Returns:
        dict with `table` (rows: network, MLlib baselines, rules), `targets`, `scoring`,
        `history` (network per epoch) and `paths`.
    """
    wanted_baselines(mllib_baselines)  # fail before any work
    spec, df = data.load_dataframe(spark, dataset, seed=seed, split_by=split_by)
    fitted = train_and_score(spark, dataset, spec, df, quick, seed, mllib_baselines)
    scores, seconds, nn_model = fitted["scores"], fitted["seconds"], fitted["network"]
    os.makedirs(output_dir, exist_ok=True)
    rows = [_row(name, *scores[name], seconds[name], probability=name != "rules") for name in scores]
    paths = _save_model(output_dir, spec, fitted["prep_model"], nn_model, fitted["train_table"])
    paths["roc_png"] = plots.plot_roc({k: v[0] for k, v in scores.items()}, scores["network"][1],
                                      os.path.join(output_dir, "roc.png"), f"{dataset}: test ROC")
    paths["calibration_png"] = plots.plot_calibration(
        {r["model"]: r["calibration"] for r in rows if r["calibration"]},
        os.path.join(output_dir, "calibration.png"), f"{dataset}: test calibration")
    summary = dict(dataset=dataset, split_by=split_by, quick=quick, seed=seed, rows=fitted["rows"], table=rows,
                   targets=targets(rows), history=nn_model.history, metrics_table=format_table(rows))
    summary["scoring"] = score_synthetic(
        spark, paths, os.path.join(output_dir, "scored.parquet"), score_rows or (20_000 if quick else 1_000_000),
        score_partitions or 2 * spark.sparkContext.defaultParallelism, seed, bad_fraction=0.01)
    paths["scored_parquet"] = summary["scoring"]["output"]
    summary["paths"] = paths
    atomic_write_json(os.path.join(output_dir, "metrics.json"), summary)
    return summary


def wanted_baselines(names):
    """The MLlib baselines to run (None: all), checked against baselines.NAMES."""
    wanted = baselines.NAMES if names is None else tuple(names)
    if set(wanted) - set(baselines.NAMES):
        raise ValueError(f"mllib_baselines: unknown {sorted(set(wanted) - set(baselines.NAMES))}; expected names "
                         f"among {list(baselines.NAMES)}")
    return wanted


def train_and_score(spark, dataset, spec, df, quick=False, seed=0, mllib_baselines=None):
    """Fit the features and every model on df's train split, score its test split.

    df: the table with a `split` column (see data.load_dataframe). Returns a dict:
    `scores` {model: (score, label) on the test split} for the network, the MLlib
    baselines and the rules; `seconds` {model: fit wall time}; `network` (the fitted
    NNModel) and its `validation_auc` (best epoch); `prep_model`; `train_table` (the raw
    train rows, pandas); `rows` per split.
    """
    wanted = wanted_baselines(mllib_baselines)
    train_raw = df.filter(F.col("split") == "train")
    feats = Pipeline(stages=[features.prep_pipeline(spec), *features.baseline_stages(spec)]).fit(train_raw)
    prep_model = feats.stages[0]
    prepared = (features.network_features(spec, prep_model).transform(feats.transform(df))
                .select("features", baselines.FEATURES, "label", "split").cache())
    split = {name: prepared.filter(F.col("split") == name) for name in data.SPLITS}
    train_labels = np.array([r.label for r in split["train"].select("label").collect()])
    cards = features.cardinalities(prep_model, spec)
    num_numeric = len(features.numeric_names(spec))

    # Python workers start and load bigdl_py once per session, before any fit is timed (the JVM
    # already ran the feature stages, so MLlib's fits start warm too).
    ensure_importable_on_executors(spark.sparkContext)
    estimator = network_estimator(dataset, cards, num_numeric, class_weights(train_labels), quick, seed)
    estimator.setValidation(split["validation"])
    nn_model, nn_seconds = baselines.fit_timed(estimator, split["train"])  # timed like the baselines: fit only
    scores = {"network": _test_scores(nn_model.transform(split["test"]), "probability")}
    seconds = {"network": nn_seconds}

    num_onehot = len(split["train"].first()[baselines.FEATURES])
    for name, est in baselines.mllib_estimators(num_onehot, NETWORK[dataset]["hidden"], seed, quick).items():
        if name not in wanted:
            continue
        fitted, seconds[name] = baselines.fit_timed(est, split["train"])
        scores[name] = _test_scores(fitted.transform(split["test"]), "probability")
    rules = df.filter(F.col("split") == "test").select(rule_score_column(dataset).alias("score"), "label").toPandas()
    scores["rules"], seconds["rules"] = (rules["score"].to_numpy(), rules["label"].to_numpy()), None
    sizes = {s: int(split[s].count()) for s in data.SPLITS}
    prepared.unpersist()
    validation_auc = max((h["val_AUC"] for h in nn_model.history if "val_AUC" in h), default=None)
    return dict(scores=scores, seconds=seconds, network=nn_model, validation_auc=validation_auc,
                prep_model=prep_model, train_table=train_raw.toPandas(), rows=sizes)


def _save_model(output_dir, spec, prep_model, nn_model, train_table):
    """The scoring PipelineModel (features + network) with its policy info, and the marginals."""
    model_dir = os.path.join(output_dir, "model")
    PipelineModel(stages=[*features.scoring_stages(spec, prep_model), nn_model]).write().overwrite().save(model_dir)
    scoring.save_scoring_info(model_dir, spec, features.category_labels(prep_model, spec))
    marginals = os.path.join(output_dir, "marginals.json")
    atomic_write_json(marginals, synthetic.fit_marginals(train_table, spec))
    return dict(model=model_dir, marginals=marginals)


def score_synthetic(spark, paths, output, rows, partitions, seed=0, bad_fraction=0.0):
    """Generate `rows` synthetic applications on the executors, score them with the saved
    model into Parquet; the summary adds rows/s and the executor process tree's peak RSS."""
    import json

    with open(paths["marginals"]) as f:
        marginals = json.load(f)
    model = PipelineModel.load(paths["model"])
    info = scoring.load_scoring_info(paths["model"])
    df = synthetic.generate(spark, marginals, rows, partitions, seed=seed, bad_fraction=bad_fraction)
    with ProcessTreePeak(spark) as peak:
        summary = scoring.score_to_parquet(model, df, info, output)
    return dict(summary, partitions=partitions, bad_fraction=bad_fraction, peak_executor_rss_mb=peak.peak_mb)
