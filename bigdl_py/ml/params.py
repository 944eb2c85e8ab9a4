"""pyspark.ml Params shared by the NN estimators and models (JSON values only, so they persist)."""
import json

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol,
                                     HasSeed)

BAD_ROW_POLICIES = ("error", "skip")


def _columns(value):
    """featuresCol: one column name, or a list of numeric column names."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"featuresCol: expected a column name or a list of column names, received {value!r}")


def _shape(value):
    if value is None:
        return None
    dims = [value] if isinstance(value, int) else list(value)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise TypeError(f"featureShape: expected positive integers such as [28, 28, 1], received {value!r}")
    return dims


def _int_at_least(name, minimum):
    def convert(value):
        v = TypeConverters.toInt(value)
        if v < minimum:
            raise TypeError(f"{name}: expected an integer >= {minimum}, received {value!r}")
        return v
    return convert


def _positive_int(name):
    return _int_at_least(name, 1)


def _optional_positive_int(name):
    check = _positive_int(name)
    return lambda value: None if value is None else check(value)


def _non_negative_int(name):
    return _int_at_least(name, 0)


def _config_or_name(name):
    """A registry name ("adam") or a config dict; objects with get_config() are stored as their config."""
    def convert(value):
        if value is None or isinstance(value, str):
            return value
        if hasattr(value, "get_config"):
            value = value.get_config()
        if isinstance(value, dict):
            json.dumps(value)  # must persist as JSON
            return value
        raise TypeError(f"{name}: expected a name, a config dict or an object with get_config(), "
                        f"received {type(value).__name__}")
    return convert


def _fraction(value):
    v = TypeConverters.toFloat(value)
    if not 0.0 <= v < 1.0:
        raise TypeError(f"validationFraction: expected a number in [0, 1), received {value!r}")
    return v


def _bad_rows(value):
    if value not in BAD_ROW_POLICIES:
        raise TypeError(f"badRows: expected one of {BAD_ROW_POLICIES}, received {value!r}")
    return value


SYNC_BACKENDS = ("blockmanager", "ring", "auto")


def _sync(value):
    if value not in SYNC_BACKENDS:
        raise TypeError(f"sync: expected one of {SYNC_BACKENDS}, received {value!r}")
    return value


def _progress(value):
    if value not in (None, True, False):
        raise TypeError(f"progress: expected True, False or None (auto), received {value!r}")
    return value


def _optional_string(value):
    return None if value is None else TypeConverters.toString(value)


def _p(name, doc, converter):
    return Param(Params._dummy(), name, doc, typeConverter=converter)


class HasFeaturesCols(Params):
    featuresCol = _p("featuresCol", "features column (vector or array), or a list of numeric columns", _columns)

    def getFeaturesCol(self):
        return self.getOrDefault(self.featuresCol)


class NNInferenceParams(HasFeaturesCols, HasPredictionCol):
    """What transform needs: feature layout, batch size and the bad-row policy."""

    featureShape = _p("featureShape", "per-row shape the flat features are reshaped to, e.g. [28, 28, 1]",
                      _shape)
    inferenceBatchSize = _p("inferenceBatchSize", "rows per forward call in transform",
                            _positive_int("inferenceBatchSize"))
    badRows = _p("badRows", "bad feature rows: 'error' fails, 'skip' gives a null prediction and counts them",
                 _bad_rows)

    def __init__(self):
        super().__init__()
        self._setDefault(featuresCol="features", predictionCol="prediction", featureShape=None,
                         inferenceBatchSize=256, badRows="error")

    def getFeatureShape(self):
        return self.getOrDefault(self.featureShape)

    def getInferenceBatchSize(self):
        return self.getOrDefault(self.inferenceBatchSize)

    def getBadRows(self):
        return self.getOrDefault(self.badRows)

    def setFeaturesCol(self, value):
        return self._set(featuresCol=value)

    def setPredictionCol(self, value):
        return self._set(predictionCol=value)

    def setFeatureShape(self, value):
        return self._set(featureShape=value)

    def setInferenceBatchSize(self, value):
        return self._set(inferenceBatchSize=value)

    def setBadRows(self, value):
        return self._set(badRows=value)


class NNClassifierParams(HasProbabilityCol, HasRawPredictionCol):
    def __init__(self):
        super().__init__()
        self._setDefault(probabilityCol="probability", rawPredictionCol="rawPrediction")

    def setProbabilityCol(self, value):
        return self._set(probabilityCol=value)

    def setRawPredictionCol(self, value):
        return self._set(rawPredictionCol=value)


class NNTrainingParams(HasLabelCol, HasSeed):
    """How fit trains: batch, epochs, optimizer, validation, early stopping, checkpoints."""

    batchSize = _p("batchSize", "global training batch size", _positive_int("batchSize"))
    maxEpoch = _p("maxEpoch", "training epochs", _positive_int("maxEpoch"))
    optimizer = _p("optimizer", "optimizer name ('adam', 'sgd', ...) or config", _config_or_name("optimizer"))
    learningRate = _p("learningRate", "base learning rate", TypeConverters.toFloat)
    schedule = _p("schedule", "learning-rate schedule name or config (None: constant)", _config_or_name("schedule"))
    validationFraction = _p("validationFraction", "fraction of the rows held out for validation", _fraction)
    validationMetrics = _p("validationMetrics", "metric names computed on the validation data",
                           TypeConverters.toListString)
    earlyStoppingMetric = _p("earlyStoppingMetric", "validation metric whose best epoch is kept (e.g. 'auc')",
                             _optional_string)
    earlyStoppingPatience = _p("earlyStoppingPatience", "epochs without improvement before stopping",
                               _optional_positive_int("earlyStoppingPatience"))
    checkpointPath = _p("checkpointPath", "folder or URI (file://, hdfs://, s3://) every host can write, for "
                                          "training checkpoints (None: none kept)", _optional_string)
    cacheRoot = _p("cacheRoot", "executor-local folder for the converted training partitions (None: the "
                                "executors' temp folder)", _optional_string)
    lineageEvery = _p("lineageEvery", "iterations between recovery checkpoints that cut the lineage (0: never)",
                      _non_negative_int("lineageEvery"))
    lineageRoot = _p("lineageRoot", "folder or URI every host can write, for the recovery checkpoints (None: "
                                    "checkpointPath/lineage, else the SparkContext checkpoint dir, else a local "
                                    "temp folder on local masters)", _optional_string)
    numPartitions = _p("numPartitions", "training partitions (None: Spark's default parallelism)",
                       _optional_positive_int("numPartitions"))
    sync = _p("sync", "gradient all-reduce: 'blockmanager' (Spark blocks), 'ring' (one barrier stage, TCP) "
                      "or 'auto' (chosen from model size and compute time)", _sync)
    tensorboardDir = _p("tensorboardDir", "folder for TensorBoard event files of fit (None: none written)",
                        _optional_string)
    progress = _p("progress", "progress bar on the driver during fit: True, False or None (auto: on for a "
                              "terminal or a Jupyter kernel)", _progress)

    def __init__(self):
        super().__init__()
        self._setDefault(labelCol="label", batchSize=256, maxEpoch=5, optimizer="adam", learningRate=1e-3,
                         schedule=None, validationFraction=0.0, validationMetrics=["top1", "loss"],
                         earlyStoppingMetric=None, earlyStoppingPatience=None, checkpointPath=None,
                         cacheRoot=None, lineageEvery=50, lineageRoot=None,
                         numPartitions=None, seed=0, sync="blockmanager", tensorboardDir=None,
                         progress=None)


def _accessors(cls, names):
    """Add setX/getX for each param name (pyspark.ml style chained setters)."""
    for name in names:
        cap = name[0].upper() + name[1:]
        if not hasattr(cls, "set" + cap):
            setattr(cls, "set" + cap, lambda self, value, _n=name: self._set(**{_n: value}))
        if not hasattr(cls, "get" + cap):
            setattr(cls, "get" + cap, lambda self, _n=name: self.getOrDefault(_n))


_accessors(NNTrainingParams, ["labelCol", "batchSize", "maxEpoch", "optimizer", "learningRate", "schedule",
                              "validationFraction", "validationMetrics", "earlyStoppingMetric",
                              "earlyStoppingPatience", "checkpointPath", "cacheRoot", "lineageEvery",
                              "lineageRoot", "numPartitions", "seed", "sync",
                              "tensorboardDir", "progress"])
