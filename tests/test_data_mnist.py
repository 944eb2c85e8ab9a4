"""MNIST's shared helpers: the pixel normalisation and the DataFrame every MNIST job trains from."""
import numpy as np
import pytest

from bigdl_py.data.mnist import MNIST_MEAN, MNIST_STD, load_mnist, mnist_dataframe, normalize_mnist


def test_normalised_training_pixels_have_mean_0_and_std_1():
    x_train = load_mnist()[0]
    z = normalize_mnist(x_train)
    assert z.dtype == np.float32 and z.shape == x_train.shape
    assert abs(float(z.mean(dtype=np.float64))) < 0.01
    assert abs(float(z.std(dtype=np.float64)) - 1) < 0.01


def test_normalize_mnist_is_mean_and_std_in_float32():
    x = np.array([[0.0, MNIST_MEAN, 1.0]], dtype=np.float32)
    expected = (x.astype(np.float64) - MNIST_MEAN) / MNIST_STD
    np.testing.assert_allclose(normalize_mnist(x), expected, rtol=1e-6, atol=1e-6)
    assert normalize_mnist(x).dtype == np.float32


@pytest.mark.spark
def test_mnist_dataframe_holds_the_normalised_flat_digits_and_double_labels(spark):
    x, y = load_mnist()[:2]
    x, y = x[:50], y[:50]
    df = mnist_dataframe(spark, x, y, 3)
    assert df.rdd.getNumPartitions() == 3
    assert dict(df.dtypes) == {"features": "array<float>", "label": "double"}
    rows = df.collect()
    got = {tuple(np.float32(r.features)): r.label for r in rows}
    want = {tuple(f): float(label) for f, label in zip(normalize_mnist(x.reshape(50, 784)), y)}
    assert len(rows) == 50 and got == want
