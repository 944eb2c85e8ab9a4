"""MNIST catalogue: LeNet-5 trained with LocalOptimizer, its penultimate features as embeddings.

`mnist_catalogue` writes the 70k digits' embeddings as Parquet (id, label,
features) computed on the executors, and returns what the recommender needs for
image queries (the embedding model and its preprocessing).
"""
import os

import numpy as np

from bigdl_py.data.mnist import MNIST_MEAN, MNIST_STD, load_mnist, normalize_mnist
from bigdl_py.nn import save_model

PREPROCESS = dict(input_shape=[28, 28, 1], mean=MNIST_MEAN, std=MNIST_STD)


def mnist_images(limit=None):
    """(images (N, 28, 28, 1) in [0, 1], labels): the 60k training then the 10k test digits."""
    x_train, y_train, x_test, y_test = load_mnist()
    x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
    return (x[:limit], y[:limit]) if limit else (x, y)


def train_lenet5(epochs=1, train_samples=None, seed=0, batch_size=64, learning_rate=0.02):
    """LeNet-5 trained on (the first train_samples of) the 60k training digits, cosine-annealed SGD."""
    from bigdl_py.engine.local import LocalOptimizer
    from bigdl_py.nn import CrossEntropyLoss, zoo
    from bigdl_py.optim import SGD, Cosine, MaxEpoch

    x, y, _, _ = load_mnist()
    if train_samples:
        x, y = x[:train_samples], y[:train_samples]
    x = normalize_mnist(x)
    steps = epochs * -(-len(x) // batch_size)
    return LocalOptimizer(zoo.lenet5(seed=seed), CrossEntropyLoss(), SGD(momentum=0.9), x, y,
                          batch_size=batch_size, learning_rate=learning_rate, schedule=Cosine(steps),
                          end_trigger=MaxEpoch(epochs), seed=seed).optimize()


def mnist_catalogue(spark, output_dir, classifier=None, limit=None, epochs=1, train_samples=None):
    """Embed MNIST digits with LeNet-5's penultimate layer on the executors and write them as Parquet.

    Args:
        classifier: a trained LeNet-5 (Module), a saved-model directory, or None to train one.
        limit: only the first `limit` of the 70k digits (train then test).
    Returns:
        dict(embeddings=parquet path, model_dir=embedding model dir, preprocess=dict).
    """
    import pandas as pd

    from bigdl_py.nn import load_model
    from bigdl_py.pipelines.similarity.embeddings import embed_dataframe, embedding_model

    if classifier is None:
        classifier = train_lenet5(epochs=epochs, train_samples=train_samples)
    elif isinstance(classifier, str):
        classifier = load_model(classifier)
    body = embedding_model(classifier)
    x, y = mnist_images(limit)
    pixels = normalize_mnist(x).reshape(len(x), -1)
    frame = pd.DataFrame({"id": np.arange(len(x), dtype=np.int64), "label": y.astype(np.int64),
                          "pixels": list(pixels)})
    parts = spark.sparkContext.defaultParallelism
    df = spark.createDataFrame(frame, "id long, label long, pixels array<float>").repartition(parts)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "mnist_embeddings.parquet")
    embed_dataframe(spark, df, body, "pixels", (28, 28, 1), keep_cols=("id", "label")).write.mode(
        "overwrite").parquet(path)
    model_dir = os.path.join(output_dir, "lenet5_embedding")
    save_model(body, model_dir)
    return dict(embeddings=path, model_dir=model_dir, preprocess=PREPROCESS)
