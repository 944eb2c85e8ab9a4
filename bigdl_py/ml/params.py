"""The Spark ML params of the NN estimators and models, each declared once: name, doc, kind, default.

Classes take them with `@declare_params(INFERENCE, CLASSIFIER, TRAINING)` (ml/declared_params.py),
which generates, for every param here, the class's pyspark Param, a getter and a chained
setter (`sync` gives `getSync()` and `setSync(value)`, `featuresCol` gives `getFeaturesCol()` and
`setFeaturesCol(value)`, ...), the keyword-only arguments of `__init__` and `setParams`, and
the "Params" section of the class docstring. A value a param's kind refuses raises
ParamValueError when it is set, however it is set.

    INFERENCE   what transform needs (estimators pass them on to the model they fit)
    CLASSIFIER  the class-score output columns of NNClassifier and NNClassificationModel
    TRAINING    how fit trains
"""
from bigdl_py.data.partitions import POLICIES as BAD_ROW_POLICIES
from bigdl_py.ml.declared_params import ParamSpec
from bigdl_py.ml.param_kinds import (COLUMN, COLUMNS, METRIC_NAMES, OPTIMIZER, SCHEDULE, SHAPE, STRING, SYNC,
                                     integer, number, one_of)

INFERENCE = (
    ParamSpec("featuresCol", "features column (vector or array), or a list of numeric columns", COLUMNS,
              "features"),
    ParamSpec("predictionCol", "prediction column (\"\": not computed)", COLUMN, "prediction"),
    ParamSpec("featureShape", "per-row shape the flat features are reshaped to, e.g. [28, 28, 1]",
              SHAPE.or_none("flat, or the model's input shape"), None),
    ParamSpec("inferenceBatchSize", "rows per forward call in transform", integer(1), 256),
    ParamSpec("badRows", "bad feature rows: 'error' fails, 'skip' drops them (transform: a null prediction) "
                         "and counts them", one_of(*BAD_ROW_POLICIES), "error"),
)

CLASSIFIER = (
    ParamSpec("probabilityCol", "class probabilities column (\"\": not computed)", COLUMN, "probability"),
    ParamSpec("rawPredictionCol", "raw class scores (logits) column (\"\": not computed)", COLUMN,
              "rawPrediction"),
)

TRAINING = (
    ParamSpec("labelCol", "label column: numeric, 0-based class labels for classifiers", COLUMN, "label"),
    ParamSpec("batchSize", "global training batch size", integer(1), 256),
    ParamSpec("maxEpoch", "training epochs", integer(1), 5),
    ParamSpec("optimizer", "optimizer name ('adam', 'sgd', ...) or config", OPTIMIZER, "adam"),
    ParamSpec("learningRate", "base learning rate", number(0.0), 1e-3),
    ParamSpec("schedule", "learning-rate schedule name or config", SCHEDULE.or_none("constant"), None),
    ParamSpec("validationFraction", "fraction of the rows held out for validation", number(0.0, below=1.0), 0.0),
    ParamSpec("validationMetrics", "metric names computed on the validation data", METRIC_NAMES, ("top1", "loss")),
    ParamSpec("earlyStoppingMetric", "validation metric whose best epoch is kept (e.g. 'auc')",
              STRING.or_none("the first validation metric"), None),
    ParamSpec("earlyStoppingPatience", "epochs without improvement before stopping",
              integer(1).or_none("no early stopping"), None),
    ParamSpec("checkpointPath", "folder or URI (file://, hdfs://, s3://) every host can write, for training "
                                "checkpoints", STRING.or_none("none kept"), None),
    ParamSpec("cacheRoot", "executor-local folder for the converted training partitions",
              STRING.or_none("the executors' temp folder"), None),
    ParamSpec("lineageEvery", "iterations between recovery checkpoints that cut the lineage (0: never)",
              integer(0), 50),
    ParamSpec("lineageRoot", "folder or URI every host can write, for the recovery checkpoints",
              STRING.or_none("checkpointPath/lineage, else the SparkContext checkpoint dir, else a local temp "
                             "folder on local masters"), None),
    ParamSpec("numPartitions", "training partitions", integer(1).or_none("Spark's default parallelism"), None),
    ParamSpec("seed", "random seed of the initial shuffle, sampling and validation split", integer(0), 0),
    ParamSpec("sync", "gradient all-reduce: 'blockmanager' (Spark blocks), 'ring' (one barrier stage, TCP) or "
                      "'auto' (chosen from model size and compute time), or a config with that backend's options "
                      "such as Ring(timeout=60) (bigdl_py.engine)", SYNC, "blockmanager"),
    ParamSpec("tensorboardDir", "folder for TensorBoard event files of fit", STRING.or_none("none written"), None),
    ParamSpec("progress", "progress bar on the driver during fit",
              one_of(True, False, None, expected="True, False or None (auto: on for a terminal or a Jupyter "
                                                 "kernel)"), None),
)
