"""Spark MLlib baselines on the same split and features: logistic regression,
gradient-boosted trees and a multilayer perceptron, each fit timed on the driver."""
import time

from pyspark.ml.classification import GBTClassifier, LogisticRegression, MultilayerPerceptronClassifier
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

FEATURES = "features_onehot"
NAMES = ("mllib_logistic_regression", "mllib_gbt", "mllib_mlp")  # the keys of mllib_estimators


def mllib_estimators(num_features, hidden, seed=0, quick=False):
    """{name: unfitted estimator}; the MLP gets the network's hidden sizes (a like-for-like peer).
    quick (tests, notebooks) cuts the boosting rounds and MLP iterations as it cuts the network's epochs."""
    common = dict(featuresCol=FEATURES, labelCol="label")
    return {
        "mllib_logistic_regression": LogisticRegression(maxIter=100, regParam=0.01, **common),
        "mllib_gbt": GBTClassifier(maxIter=20 if quick else 50, maxDepth=4, stepSize=0.1, seed=seed, **common),
        "mllib_mlp": MultilayerPerceptronClassifier(layers=[num_features, *hidden, 2], maxIter=50 if quick else 100,
                                                    blockSize=128, seed=seed, **common),
    }


def fit_timed(estimator, train):
    """(fitted model, fit wall seconds)."""
    start = time.perf_counter()
    model = estimator.fit(train)
    return model, time.perf_counter() - start


def bad_probability(model, df, col="probability"):
    """pandas (score = P(bad), label) of a fitted classifier on df."""
    out = model.transform(df).select(vector_to_array(F.col(col))[1].alias("score"), "label")
    return out.toPandas()
