"""LeNet-5 trained by the local engine learns real MNIST digits.

Both tests run scripts/train_mnist.py's train_lenet5, the function behind the
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
