"""The large-batch recipe: its learning rates step by step, its optimizer, and that it trains."""
import numpy as np
import pytest

from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import LARS, MaxEpoch, Top1Accuracy, large_batch_recipe


def lrs(recipe, steps):
    return np.array([recipe.schedule(s, 0, recipe.learning_rate) for s in range(1, steps + 1)])


def test_lr_is_scaled_linearly_ramps_from_the_small_batch_lr_then_decays_to_zero_polynomially():
    # 8192 / 256 = 32x the base lr; 2 warm-up epochs of 4 steps, 6 epochs in all.
    recipe = large_batch_recipe(8192, base_lr=0.1, steps_per_epoch=4, epochs=6, warmup_epochs=2, power=2.0)
    assert recipe.learning_rate == pytest.approx(3.2)
    got = lrs(recipe, 24)
    # Warm-up: from 0.1 (the lr tuned at batch 256) by equal steps towards 3.2.
    factor = 256 / 8192
    ramp = 3.2 * (factor + (1 - factor) * np.arange(8) / 8)
    np.testing.assert_allclose(got[:8], ramp, rtol=1e-12)
    assert got[0] == pytest.approx(0.1)
    # Then 3.2 * (1 - t / 16) ** 2 for t = 0..15: the peak, then down to the last step.
    np.testing.assert_allclose(got[8:], 3.2 * (1 - np.arange(16) / 16) ** 2, rtol=1e-12)
    assert got[8] == pytest.approx(3.2) and got[-1] == pytest.approx(3.2 / 256)


def test_cosine_and_constant_decays_and_no_warmup():
    cosine = large_batch_recipe(512, 0.1, steps_per_epoch=5, epochs=2, warmup_epochs=0, decay="cosine")
    np.testing.assert_allclose(lrs(cosine, 10), 0.2 * (1 + np.cos(np.pi * np.arange(10) / 10)) / 2, rtol=1e-12)
    constant = large_batch_recipe(1024, 0.1, steps_per_epoch=5, epochs=2, warmup_epochs=0.4, decay="constant",
                                  start_factor=0.5)
    np.testing.assert_allclose(lrs(constant, 10), [0.2, 0.3] + [0.4] * 8, rtol=1e-12)


def test_optimizer_is_lars_with_the_given_hyperparameters_and_trust_zero_is_momentum_sgd():
    recipe = large_batch_recipe(4096, 0.1, 10, 3, momentum=0.8, trust_coefficient=0.002, weight_decay=1e-4)
    assert isinstance(recipe.optim_method, LARS)
    config = recipe.optim_method.get_config()["config"]
    assert (config["momentum"], config["trust_coefficient"], config["weight_decay"]) == (0.8, 0.002, 1e-4)
    # trust 0: the update is plain momentum SGD, step = lr * (g + wd * w)
    sgd = large_batch_recipe(256, 0.1, 10, 3, trust_coefficient=0.0, weight_decay=0.0, warmup_epochs=0).optim_method
    w, g = np.ones(4, np.float32), np.full(4, 2.0, np.float32)
    sgd.update(w, g, sgd.init_state(4), 0.1, 1)
    np.testing.assert_allclose(w, 1 - 0.1 * 2.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(decay="step"), "decay"),
    (dict(warmup_epochs=5), "warmup_epochs"),
    (dict(steps_per_epoch=0), "steps_per_epoch"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_arguments_name_the_argument(kwargs, message):
    args = dict(batch_size=1024, base_lr=0.1, steps_per_epoch=4, epochs=3)
    with pytest.raises(ValueError, match=message):
        large_batch_recipe(**{**args, **kwargs})


def test_recipe_trains_a_small_mlp_at_a_large_batch():
    # Two Gaussian blobs in 64-D, 4096 samples: batch 1024 is a quarter of the data set.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4096)
    x = (rng.normal(size=(4096, 64)) + 0.6 * (2 * y[:, None] - 1)).astype(np.float32)
    recipe = large_batch_recipe(1024, base_lr=1.0, steps_per_epoch=4, epochs=5, warmup_epochs=1)
    opt = LocalOptimizer(zoo.mlp(seed=0), CrossEntropyLoss(), x=x, y=y, batch_size=1024,
                         end_trigger=MaxEpoch(5), **recipe._asdict())
    opt.set_progress(False).set_validation(x, y, [Top1Accuracy()])
    opt.optimize()
    losses = [h["loss"] for h in opt.history]
    assert losses[-1] < 0.5 * losses[0]
    assert opt.history[-1]["Top1Accuracy"] > 0.95
    assert [h["lr"] for h in opt.history] == pytest.approx(list(lrs(recipe, 20)))
