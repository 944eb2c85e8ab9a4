"""Spark ML Estimators and Models for bigdl_py networks (pyspark.ml API)."""
from bigdl_py.ml.declared_params import ParamValueError
from bigdl_py.ml.estimator import NNClassifier, NNEstimator, NNRegressor
from bigdl_py.ml.model import NNClassificationModel, NNModel
from bigdl_py.ml.predict_fn import make_predict_fn

__all__ = ["NNEstimator", "NNClassifier", "NNRegressor", "NNModel", "NNClassificationModel", "make_predict_fn",
           "ParamValueError"]
