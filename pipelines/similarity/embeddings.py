"""Embeddings from our models: a trained classifier minus its last layer, run on the executors.

The embedding of an image is the output of the classifier's penultimate layer
(for LeNet-5 the 84 ReLU features before the logits). Fine-tuning trains a new
classifier head on the catalogue's labels with DistriOptimizer and takes its
hidden layer as the new embedding.
"""
import numpy as np

from bigdl_py.nn import Sequential
from bigdl_py.nn.module import from_config
from bigdl_py.pipelines.similarity.blocks import unit_column
from bigdl_py.serving import ModelBroadcast, features_to_numpy, predict


def embedding_model(classifier):
    """A copy of a Sequential classifier without its last layer (the embedding network)."""
    if not isinstance(classifier, Sequential) or len(classifier) < 2:
        raise ValueError(f"embedding_model: expected a Sequential of at least 2 layers, received "
                         f"{type(classifier).__name__}")
    copy = from_config(classifier.get_config())
    copy.load_state_dict(classifier.state_dict())
    body = Sequential(*[copy[i] for i in range(len(copy) - 1)])
    return body.eval()


def embed_dataframe(spark, df, model, input_col, input_shape, keep_cols=(), batch_size=256):
    """Run `model` on the executors over `df[input_col]` -> DataFrame(keep_cols..., features array<float>).

    Args:
        model: a Module whose output rows are the embeddings (see embedding_model).
        input_col: array/vector column of flat inputs, reshaped to input_shape.
        keep_cols: columns copied through (ids, labels).
    Raises:
        ValueError with the count when rows have null, wrong-length or non-finite inputs.
    """
    import pyarrow as pa
    from pyspark.sql import functions as F

    missing = [c for c in (input_col, *keep_cols) if c not in df.columns]
    if missing:
        raise ValueError(f"embed_dataframe: columns {missing} not found; the DataFrame has {sorted(df.columns)}")
    broadcast = ModelBroadcast(spark.sparkContext, model)
    dim = int(np.prod(predict(model, np.zeros((1,) + tuple(input_shape), np.float32)).shape[1:]))

    def run(batches):
        net = broadcast.value()
        for batch in batches:
            x, bad = features_to_numpy(batch, input_col, input_shape)
            if bad.any():
                raise ValueError(f"input column {input_col!r}: {int(bad.sum())} of {len(bad)} row(s) are null, "
                                 f"not {int(np.prod(input_shape))} values long or not finite")
            y = predict(net, x, batch_size).reshape(len(x), dim)
            cols = {c: batch.column(c) for c in keep_cols}
            cols["features"] = pa.FixedSizeListArray.from_arrays(pa.array(y.ravel()), dim).cast(
                pa.list_(pa.float32()))
            yield pa.RecordBatch.from_pydict(cols)

    fields = [df.schema[c].simpleString() for c in keep_cols]
    schema = ", ".join([*fields, "features array<float>"])
    return df.select(F.col(input_col), *keep_cols).mapInArrow(run, schema)


def fine_tune(spark, embeddings, labels_col, num_classes, hidden=64, epochs=3, batch_size=256,
              learning_rate=0.05, id_col="id", seed=0):
    """New embeddings from a classifier head trained on the catalogue's labels.

    The head Linear(dim, hidden) -> ReLU -> Linear(hidden, num_classes) is trained
    with DistriOptimizer on the (L2-normalised) embeddings; its hidden ReLU
    features become the embeddings.

    Returns:
        (DataFrame(id_col, labels_col, features), the trained head).
    """
    from pyspark.sql import functions as F

    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss, zoo
    from bigdl_py.optim import SGD, MaxEpoch

    dim = len(embeddings.select("features").first()[0])
    unit = embeddings.select(id_col, F.col(labels_col).cast("double").alias(labels_col),
                             unit_column("features").alias("features"))
    head = zoo.mlp((dim, hidden, num_classes), seed=seed)
    trained = DistriOptimizer(head, CrossEntropyLoss(), SGD(momentum=0.9), unit, batch_size=batch_size,
                              learning_rate=learning_rate, end_trigger=MaxEpoch(epochs), label_col=labels_col,
                              seed=seed).optimize()
    return embed_dataframe(spark, unit, embedding_model(trained), "features", (dim,),
                           keep_cols=(id_col, labels_col)), trained

