"""The risk network: an embedding per categorical/bucket column plus an MLP over numerics.

Spark ML gives the model one vector [indices..., scaled numerics...]; Narrow layers
cut it into per-column index inputs (each feeding its own Embedding) and the numeric
block, which are concatenated and fed to a small MLP ending in two logits (good, bad).
"""
import numpy as np

from bigdl_py import nn

# Small initial embeddings: N(0, 1) rows would swamp the standardised numerics at the start.
EMBED_INIT = {"name": "normal", "std": 0.1}


def embedding_dim(cardinality):
    """The usual rule of thumb: grows slowly with the number of categories, capped."""
    return int(min(8, max(2, round(1.6 * cardinality ** 0.56))))


def risk_network(cardinalities, num_numeric, hidden=(32, 16), dropout=0.0, seed=0, wide=False):
    """Graph Model over a vector of len(cardinalities) indices followed by num_numeric values.

    Args:
        cardinalities: embedding table size of each index column, in vector order.
        num_numeric: width of the scaled numeric block that follows the indices.
        hidden: MLP widths after the concatenation.
        dropout: drop probability after the concatenation (regularises small tables).
        seed: initialisation seed.
        wide: also a linear path from the concatenated embeddings + numerics to the logits
            ("wide & deep"): the network then contains a logistic regression on the same inputs.
    Shape: (N, len(cardinalities) + num_numeric) -> (N, 2) logits.
    """
    if num_numeric < 1 or not cardinalities or min(cardinalities) < 1:
        raise ValueError(f"risk_network: expected >= 1 index column with positive sizes and >= 1 numeric, "
                         f"received cardinalities={list(cardinalities)} num_numeric={num_numeric}")
    k = len(cardinalities)
    x = nn.Input((k + num_numeric,), name="features")
    parts = []
    for i, card in enumerate(cardinalities):
        idx = nn.Narrow(1, i, 1, name=f"index_{i}")(x)
        parts.append(nn.Flatten(name=f"flat_{i}")(nn.Embedding(card, embedding_dim(card), weight_init=EMBED_INIT, name=f"embed_{i}")(idx)))
    parts.append(nn.Narrow(1, k, num_numeric, name="numeric")(x))
    joined = nn.Concat(name="concat")(parts)
    h = nn.Dropout(dropout, name="dropout")(joined) if dropout else joined
    width = joined_width = sum(embedding_dim(c) for c in cardinalities) + num_numeric
    for j, units in enumerate(hidden):
        h = nn.ReLU(name=f"relu_{j}")(nn.Linear(width, units, name=f"dense_{j}")(h))
        width = units
    logits = nn.Linear(width, 2, name="logits")(h)
    if wide:
        logits = nn.Add(name="wide_and_deep")([logits, nn.Linear(joined_width, 2, name="wide")(joined)])
    model = nn.Model(x, logits, name="risk_network")
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters(rng)
    return model


def class_weights(labels):
    """Balanced class weights [w_good, w_bad] = n / (2 n_class) for the cross-entropy."""
    labels = np.asarray(labels)
    n_bad = float((labels == 1).sum())
    n_good = float(labels.size - n_bad)
    if n_bad == 0 or n_good == 0:
        raise ValueError(f"label: expected both classes in the training split, found {int(n_good)} good and "
                         f"{int(n_bad)} bad of {labels.size} rows")
    return [labels.size / (2 * n_good), labels.size / (2 * n_bad)]
