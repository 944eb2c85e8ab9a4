"""Risk-scoring pipeline parts: metrics vs sklearn, splits, synthetic marginals, the
feature vector, the network wiring, rules, and the bad-row scoring policy on Spark.

The end-to-end run (training, baselines, plots, targets) is the notebook's test.
"""
import json
import os

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from bigdl_py.pipelines.risk_scoring import data, evaluate, synthetic
from bigdl_py.pipelines.risk_scoring.network import class_weights, embedding_dim, risk_network


@pytest.fixture(scope="module")
def credit():
    return data.load_pandas(data.CREDIT_DATA)


# ---- metrics ------------------------------------------------------------------------
@pytest.mark.parametrize("rounding", [None, 1])  # 1 decimal: many ties, like a points score
def test_metrics_match_sklearn(rounding):
    rng = np.random.default_rng(3)
    y = rng.random(700) < 0.15
    s = rng.random(700) * 0.7 + y * 0.3
    s = s if rounding is None else np.round(s, rounding)
    assert evaluate.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert evaluate.pr_auc(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert evaluate.ks_statistic(s, y) == pytest.approx(np.max(tpr - fpr), abs=1e-12)


def test_deciles_and_calibration_add_up():
    rng = np.random.default_rng(4)
    p = rng.random(1003)
    y = rng.random(1003) < p  # calibrated by construction
    deciles = evaluate.decile_table(p, y)
    assert [d["count"] for d in deciles] == [101, 101, 101] + [100] * 7
    assert sum(d["bads"] for d in deciles) == y.sum() and deciles[-1]["cumulative_capture"] == 1.0
    assert deciles[0]["bad_rate"] > deciles[-1]["bad_rate"] and deciles[0]["min_score"] >= deciles[1]["max_score"]
    bins = evaluate.calibration_bins(p, y)
    assert sum(b["count"] for b in bins) == 1003
    assert all(abs(b["observed_rate"] - b["mean_predicted"]) < 0.15 for b in bins)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        evaluate.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="1 of 3 rows"):
        evaluate.roc_auc([0.1, np.nan, 0.3], [0, 1, 0])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        evaluate.calibration_bins([0.5, 1.5], [0, 1])


# ---- data ---------------------------------------------------------------------------
def test_tables_labels_and_no_outcome_columns(credit):
    assert len(credit) == 4454 and int(credit["label"].sum()) == 1254
    loans = data.load_pandas(data.LOANS)
    assert len(loans) == 10000 and int(loans["label"].sum()) == 111  # charged off + late: ~1%
    leaks = {"loan_status", "balance", "paid_total", "paid_principal", "paid_interest", "paid_late_fees"}
    assert not leaks & set(data.LOANS.numeric + data.LOANS.categorical)


def test_random_split_is_seeded_and_stratified(credit):
    a, b, c = (data.assign_splits(credit, seed=s)["split"] for s in (7, 7, 8))
    assert a.equals(b) and not a.equals(c)
    counts = a.value_counts()
    assert (counts["train"], counts["validation"], counts["test"]) == (2672, 891, 891)
    rates = credit.groupby(a)["label"].mean()
    assert rates.max() - rates.min() < 0.002


def test_time_split_follows_issue_month():
    loans = data.load_pandas(data.LOANS)
    split = data.assign_splits(loans, by="time", spec=data.LOANS)["split"]
    assert (split[loans["issue_month"] == "Jan-2018"] == "train").all()
    assert (split[loans["issue_month"] == "Mar-2018"] == "test").all()
    with pytest.raises(ValueError, match="no date column"):
        data.assign_splits(loans, by="time", spec=data.CREDIT_DATA)
    with pytest.raises(ValueError, match="expected one of"):
        data.get_spec("german")


def test_fold_rotations_test_and_validate_every_row_once_stratified(credit):
    splits = [data.assign_splits(credit, seed=3, by="fold", fold=k, folds=5)["split"] for k in range(5)]
    assert all((sum(s == name for s in splits) == 1).all() for name in ("test", "validation"))
    counts = splits[0].value_counts()
    assert (counts["train"], counts["validation"], counts["test"]) == (2672, 891, 891)
    bads = [int(credit["label"][s == "test"].sum()) for s in splits]
    assert max(bads) - min(bads) <= 1 and sum(bads) == int(credit["label"].sum())
    assert data.assign_splits(credit, seed=3, by="fold", fold=2)["split"].equals(splits[2])
    assert not data.assign_splits(credit, seed=4, by="fold", fold=2)["split"].equals(splits[2])
    for bad in (dict(fold=5, folds=5), dict(fold=0, folds=2), dict(fold=-1)):
        with pytest.raises(ValueError, match="expected folds >= 3 and 0 <= fold < folds"):
            data.assign_splits(credit, by="fold", **bad)


def test_cross_validation_summary_means_and_paired_differences():
    from bigdl_py.pipelines.risk_scoring.cross_validation import summarize_folds

    net, gbt = [0.70, 0.80, 0.75], [0.72, 0.70, 0.74]
    folds = [dict(seed=0, fold=k, rows={}, network_validation_auc=0.6 + k / 10,
                  test_auc=dict(network=net[k], mllib_gbt=gbt[k], rules=0.5),
                  train_s=dict(network=1.0 + k, mllib_gbt=10.0, rules=None)) for k in range(3)]
    s = summarize_folds(folds)
    assert s["models"]["network"]["mean_auc"] == pytest.approx(0.75)
    assert s["models"]["network"]["sd_auc"] == pytest.approx(np.std(net, ddof=1))
    assert s["models"]["network"]["mean_validation_auc"] == pytest.approx(0.7)
    assert s["models"]["network"]["mean_train_s"] == pytest.approx(2.0)
    assert s["models"]["rules"]["mean_train_s"] is None
    diff = np.subtract(net, gbt)
    assert s["network_minus"]["mllib_gbt"] == dict(mean=pytest.approx(diff.mean()), sd=pytest.approx(diff.std(ddof=1)),
                                                    network_at_least_as_good=2, of=3)
    assert s["targets"]["best_mllib_auc"] == pytest.approx(np.mean(gbt)) and s["targets"]["auc_within_margin"]
    assert s["table"].splitlines()[1].split()[:3] == ["network", "0.7500", f"{np.std(net, ddof=1):.4f}"]


# ---- synthetic rows -----------------------------------------------------------------
def test_synthetic_rows_follow_the_marginals(credit):
    marginals = json.loads(json.dumps(synthetic.fit_marginals(credit, data.CREDIT_DATA)))  # JSON-able
    cols = synthetic.sample_batch(marginals, 40_000, np.random.default_rng(0))
    income = cols["Income"]
    assert np.isnan(income).mean() == pytest.approx(credit["Income"].isna().mean(), abs=0.01)
    real = credit["Income"].dropna().to_numpy()
    for q in (0.1, 0.5, 0.9):
        assert np.nanquantile(income, q) == pytest.approx(np.quantile(real, q), rel=0.05)
    assert np.all(cols["Age"][~np.isnan(cols["Age"])] % 1 == 0)  # whole numbers stay whole
    codes, values = cols["Home"]
    share = np.mean(np.array(values, dtype=object)[codes[codes >= 0]] == "owner")
    assert share == pytest.approx((credit["Home"] == "owner").sum() / credit["Home"].notna().sum(), abs=0.015)
    planted = synthetic.sample_batch(marginals, 10_000, np.random.default_rng(1), bad_fraction=0.05)
    assert np.mean(planted["Job"][0] == len(planted["Job"][1]) - 1) == pytest.approx(0.05, abs=0.01)
    table = synthetic.to_arrow(planted, marginals).to_pandas()
    assert (table["Job"] == synthetic.UNSEEN).mean() == pytest.approx(0.05, abs=0.01)


# ---- network ------------------------------------------------------------------------
def test_network_reads_indices_and_numerics_from_one_vector():
    model = risk_network([4, 3], 5, hidden=(6,), seed=1).eval()
    x = np.c_[np.array([[3, 0], [1, 2]], np.float32), np.random.default_rng(0).standard_normal((2, 5))]
    out = model.forward(x.astype(np.float32))
    assert out.shape == (2, 2)
    table = model._children["embed_0"].params["weight"]
    assert table.shape == (4, embedding_dim(4))
    x2 = x.copy()
    x2[0, 0] = 2  # another category changes only that row
    out2 = model.forward(x2.astype(np.float32))
    assert not np.allclose(out2[0], out[0]) and np.allclose(out2[1], out[1])
    assert class_weights(np.array([0, 0, 0, 1])) == [4 / 6, 2.0]
    with pytest.raises(ValueError, match="both classes"):
        class_weights(np.zeros(5))


def test_wide_path_is_a_linear_model_of_the_embeddings_and_numerics():
    model = risk_network([4, 3], 5, hidden=(6,), seed=1, wide=True).eval()
    layers = model._children
    layers["logits"].params["weight"][:] = 0  # silence the deep path
    layers["logits"].params["bias"][:] = 0
    x = np.c_[np.array([[3, 0], [1, 2]], np.float32), np.random.default_rng(0).standard_normal((2, 5))]
    x = x.astype(np.float32)
    joined = np.c_[layers["embed_0"].params["weight"][x[:, 0].astype(int)],
                   layers["embed_1"].params["weight"][x[:, 1].astype(int)], x[:, 2:]]
    wide = layers["wide"].params
    np.testing.assert_allclose(model.forward(x), joined @ wide["weight"].T + wide["bias"], rtol=1e-5, atol=1e-6)


def test_unknown_baseline_names_fail_before_any_work(tmp_path):
    from bigdl_py.pipelines.risk_scoring.pipeline import run_risk_pipeline

    with pytest.raises(ValueError, match=r"mllib_baselines: unknown \['svm'\]"):
        run_risk_pipeline(None, "credit_data", str(tmp_path / "out"), mllib_baselines=["mllib_gbt", "svm"])
    assert not (tmp_path / "out").exists()


# ---- Spark: features, rules, scoring policy -----------------------------------------
@pytest.fixture(scope="module")
def scoring_model(spark, tmp_path_factory):
    """Features fitted on the credit training split + an untrained network, saved and reloaded."""
    from pyspark.ml import PipelineModel

    from bigdl_py.ml import NNClassificationModel
    from bigdl_py.pipelines.risk_scoring import features, scoring

    spec, df = data.load_dataframe(spark, "credit_data")
    train = df.filter("split = 'train'")
    prep = features.prep_pipeline(spec).fit(train)
    net = NNClassificationModel(model=risk_network(features.cardinalities(prep, spec),
                                                   len(features.numeric_names(spec)), seed=0))
    model_dir = str(tmp_path_factory.mktemp("risk") / "model")
    PipelineModel(stages=[*features.scoring_stages(spec, prep), net]).write().overwrite().save(model_dir)
    scoring.save_scoring_info(model_dir, spec, features.category_labels(prep, spec))
    return spec, df, prep, model_dir


@pytest.mark.spark
def test_feature_array_holds_indices_then_the_scalers_numerics(scoring_model):
    from pyspark.ml.functions import vector_to_array

    from bigdl_py.pipelines.risk_scoring import features

    spec, df, prep, _ = scoring_model
    out = features.network_features(spec, prep).transform(prep.transform(df.filter("split = 'train'")))
    pdf = out.select("features", vector_to_array("num_scaled").alias("scaled")).toPandas()
    x = np.array(pdf["features"].tolist(), dtype=np.float64)
    cards = features.cardinalities(prep, spec)
    k = len(cards)
    assert x.shape == (2672, k + len(features.numeric_names(spec)))
    assert np.all(x[:, :k] == np.round(x[:, :k])) and np.all(x[:, :k] < np.array(cards))
    np.testing.assert_allclose(x[:, k:].mean(axis=0), 0, atol=1e-5)  # of float32 values
    np.testing.assert_allclose(x[:, k:].std(axis=0, ddof=1), 1, atol=1e-5)
    # The SQL expression gives the fitted StandardScaler's numbers (as float32).
    np.testing.assert_allclose(x[:, k:], np.array(pdf["scaled"].tolist()), rtol=1e-6, atol=1e-6)


@pytest.mark.spark
def test_rule_points(spark):
    from bigdl_py.pipelines.risk_scoring.rules import rule_score_column

    rows = [("yes", "partime", 950.0, 1000.0, 1.0, 50.0), ("no", "fixed", 100.0, 1000.0, 10.0, 300.0),
            ("no", "fixed", 100.0, 0.0, None, None)]
    df = spark.createDataFrame(rows, "Records string, Job string, Amount double, Price double, "
                                     "Seniority double, Income double")
    assert [r[0] for r in df.select(rule_score_column("credit_data")).collect()] == [6, 0, 0]


@pytest.mark.spark
def test_bad_rows_are_scored_and_counted_not_fatal(spark, scoring_model, tmp_path):
    """Unknown category, null category, NaN numeric and an unparseable string numeric:
    every row gets a finite score and the summary counts each issue."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from bigdl_py.pipelines.risk_scoring import scoring

    spec, df, _, model_dir = scoring_model
    base = df.filter("split = 'test'").drop("label", "split").limit(40)
    n = F.monotonically_increasing_id()
    bad = (base.withColumn("i", n)
           .withColumn("Home", F.when(F.col("i") % 10 == 1, F.lit("castle")).otherwise(F.col("Home")))
           .withColumn("Job", F.when(F.col("i") % 10 == 2, F.lit(None)).otherwise(F.col("Job")))
           .withColumn("Age", F.when(F.col("i") % 10 == 3, F.lit(float("nan"))).otherwise(F.col("Age")))
           .withColumn("Debt", F.when(F.col("i") % 10 == 4, F.lit("n/a")).otherwise(F.col("Debt").cast("string")))
           .drop("i"))
    src = str(tmp_path / "in.parquet")
    bad.write.parquet(src)
    inp = spark.read.parquet(src)
    truth = inp.toPandas()
    info = scoring.load_scoring_info(model_dir)
    summary = scoring.score_to_parquet(PipelineModel.load(model_dir), inp, info, str(tmp_path / "out.parquet"))
    missing = truth[list(spec.numeric) + list(spec.categorical)].isna().any(axis=1)  # "n/a" is not missing
    assert summary["rows"] == 40 and summary["unscored"] == 0
    assert summary["unknown_category"] == int((truth["Home"] == "castle").sum()) == 4
    assert summary["wrong_type"] == int((truth["Debt"] == "n/a").sum()) == 4
    assert summary["missing"] == int(missing.sum()) >= 8
    out = spark.read.parquet(str(tmp_path / "out.parquet")).toPandas()
    assert out["score"].between(0, 1).all() and list(out.columns[:len(inp.columns)]) == inp.columns
    with pytest.raises(ValueError, match=r"input columns \['Income'\]"):
        scoring.score(PipelineModel.load(model_dir), inp.drop("Income"), info)


@pytest.mark.spark
def test_synthetic_rows_generated_on_executors_and_scored(spark, credit, scoring_model, tmp_path):
    """The job's scoring path: generated rows (with planted bad values) through the
    saved model via the `score` command of job.py, and the generator is reproducible."""
    from bigdl_py.pipelines.risk_scoring import job

    _, _, _, model_dir = scoring_model
    marginals = synthetic.fit_marginals(credit, data.CREDIT_DATA)
    gen = synthetic.generate(spark, marginals, 3000, 3, seed=5, bad_fraction=0.02)
    assert gen.rdd.getNumPartitions() == 3
    first = gen.toPandas()
    assert len(first) == 3000 and first.equals(synthetic.generate(spark, marginals, 3000, 3, seed=5,
                                                                  bad_fraction=0.02).toPandas())
    src = str(tmp_path / "synthetic.parquet")
    gen.write.parquet(src)
    summary = job.main(["score", "--model", model_dir, "--input", src, "--output", str(tmp_path / "s.parquet")])
    assert summary["rows"] == 3000 and summary["unscored"] == 0
    assert summary["unknown_category"] == int(first[list(data.CREDIT_DATA.categorical)]
                                              .eq(synthetic.UNSEEN).any(axis=1).sum()) > 0
    assert os.path.isdir(str(tmp_path / "s.parquet"))
    with pytest.raises(ValueError, match="rows >= 1"):
        synthetic.generate(spark, marginals, 0, 3)


@pytest.mark.spark
def test_cross_validation_fits_every_fold_and_tests_every_row_once(spark, tmp_path):
    from bigdl_py.pipelines.risk_scoring.cross_validation import cross_validate

    out = tmp_path / "cv.json"
    s = cross_validate(spark, "credit_data", folds=3, quick=True, mllib_baselines=["mllib_logistic_regression"],
                       output_path=str(out))
    assert [(f["seed"], f["fold"]) for f in s["folds"]] == [(0, 0), (0, 1), (0, 2)]
    assert sum(f["rows"]["test"] for f in s["folds"]) == 4454
    assert set(s["models"]) == {"network", "mllib_logistic_regression", "rules"}
    assert all(0.6 < f["test_auc"]["network"] < 1 and f["network_validation_auc"] > 0.6 for f in s["folds"])
    assert json.loads(out.read_text())["models"] == s["models"]
    with pytest.raises(ValueError, match="repeats: expected an integer >= 1"):
        cross_validate(spark, "credit_data", repeats=0)


@pytest.mark.spark
def test_job_cv_command_runs_cross_validation_into_the_output_folder(spark, tmp_path, monkeypatch, capsys):
    from bigdl_py.pipelines.risk_scoring import cross_validation, job

    calls = []

    def fake(spark_, dataset, folds, repeats, seed, quick, output_path):
        calls.append((dataset, folds, repeats, seed, quick, output_path))
        return dict(table="TABLE", targets={"auc_within_margin": True}, network_minus={})

    monkeypatch.setattr(cross_validation, "cross_validate", fake)
    job.main(["cv", "--dataset", "loans", "--folds", "4", "--repeats", "2", "--seed", "3", "--output",
              str(tmp_path / "cv")])
    assert calls == [("loans", 4, 2, 3, False, str(tmp_path / "cv" / "cv.json"))]
    assert (tmp_path / "cv").is_dir() and capsys.readouterr().out.startswith("TABLE")


@pytest.mark.spark
@pytest.mark.slow
def test_job_runs_under_spark_submit(scoring_model, credit, tmp_path):
    """job.py as spark-submit runs it (a plain script): the score command on generated rows."""
    import subprocess
    import sys

    _, _, _, model_dir = scoring_model
    marginals = synthetic.fit_marginals(credit, data.CREDIT_DATA)
    rows = synthetic.sample_batch(marginals, 500, np.random.default_rng(2), bad_fraction=0.05)
    src = str(tmp_path / "in.parquet")
    synthetic.to_arrow(rows, marginals).to_pandas().to_parquet(src)
    script = os.path.join(os.path.dirname(__file__), "..", "pipelines", "risk_scoring", "job.py")
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "spark-submit"), "--master", "local[2]",
                          "--conf", "spark.driver.host=127.0.0.1", script, "score", "--model", model_dir,
                          "--input", src, "--output", str(tmp_path / "out.parquet")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 500 and summary["unscored"] == 0 and summary["unknown_category"] > 0
