"""LeNet-5 learns real MNIST digits: the local engine, and DistriOptimizer from a DataFrame.

The local tests run scripts/train_mnist.py's train_lenet5, the function behind the
issue's goal (>= 98.5% test accuracy in at most 3 epochs).
"""
import importlib.util
import os

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "train_mnist.py")


def _train_mnist():
    spec = importlib.util.spec_from_file_location("train_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_epoch_on_6000_digits_reaches_90_percent_on_2000_test_digits():
    # Seeds 0, 1, 2 reach 0.936, 0.9275, 0.934; chance is 0.1.
    epochs = []
    result = _train_mnist().train_lenet5(epochs=1, batch_size=16, learning_rate=0.02, seed=0,
                                         train_samples=6000, test_samples=2000, emit=epochs.append)
    assert (result["train_samples"], result["test_samples"]) == (6000, 2000)
    assert result["test_accuracy"] >= 0.90, result
    assert [e["epoch"] for e in epochs] == [1]
    assert epochs[0]["test_accuracy"] == result["test_accuracy"]
    assert epochs[0]["train_loss"] < 1.0, epochs  # the epoch mean; ln(10) = 2.30 untrained (0.64 measured)
    assert result["train_samples_s"] > 0 and result["wall_s"] > 0


@pytest.mark.slow
def test_three_epochs_on_full_mnist_reach_98_5_percent():
    epochs = []
    result = _train_mnist().train_lenet5(emit=epochs.append)  # the script's defaults: the full run
    assert (result["train_samples"], result["test_samples"]) == (60000, 10000)
    assert result["epochs"] <= 3 and len(epochs) == result["epochs"]
    assert result["test_accuracy"] >= 0.985, epochs


def mnist_parquet_df(spark, path, x, y):
    """A DataFrame of (features array<float>, label) read from a Parquet file written by pyarrow."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = x.reshape(len(x), -1).astype(np.float32)
    features = pa.ListArray.from_arrays(pa.array(np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32)),
                                        pa.array(flat.ravel()))
    pq.write_table(pa.table({"features": features, "label": pa.array(y.astype(np.float64))}), str(path))
    return spark.read.parquet(str(path))


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("sync", ["blockmanager", "ring"])
def test_distributed_lenet5_from_a_dataframe_reaches_98_5_percent_in_3_epochs(spark, tmp_path, sync):
    from bigdl_py.data.mnist import load_mnist, normalize_mnist
    from bigdl_py.engine.distri import DistriOptimizer
    from bigdl_py.nn import CrossEntropyLoss, zoo
    from bigdl_py.optim import Adam, MaxEpoch, MaxScore, Poly, Top1Accuracy, Warmup

    x_train, y_train, x_test, y_test = load_mnist()
    train = mnist_parquet_df(spark, tmp_path / "train.parquet", normalize_mnist(x_train), y_train)
    test = mnist_parquet_df(spark, tmp_path / "test.parquet", normalize_mnist(x_test), y_test)
    # Batch 512 keeps the block-manager run to 354 iterations (batch 64 took ~10 min). Adam 0.01, a
    # 3-step warm-up and linear decay: the local engine reaches 0.9712 / 0.9856 / 0.9894 (seed 0).
    # "In at most 3 epochs": training stops at the first validation above 98.5%.
    batch, steps = 512, 3 * -(-len(x_train) // 512)
    opt = DistriOptimizer(zoo.lenet5(seed=0), CrossEntropyLoss(), Adam(betas=(0.8, 0.98)), train,
                          batch_size=batch, end_trigger=MaxEpoch(3) | MaxScore(0.985), learning_rate=0.01,
                          schedule=Warmup(3, then=Poly(1.0, steps - 3), start_factor=0.1),
                          feature_shape=(28, 28, 1), num_partitions=2, sync=sync)
    opt.set_validation(test, [Top1Accuracy()])
    opt.optimize()
    accuracies = [h["Top1Accuracy"] for h in opt.history if "Top1Accuracy" in h]
    assert len(accuracies) <= 3 and accuracies[-1] >= 0.985, accuracies
    assert all(a <= 0.985 for a in accuracies[:-1]), accuracies  # it stopped at the first one above
