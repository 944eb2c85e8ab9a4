"""The large-batch recipe: LARS, linear learning-rate scaling and gradual warm-up in one call.

Goyal et al. 2017 (linear scaling + warm-up) and You et al. 2017 (LARS) let a batch
many times larger than the tuned one reach the same accuracy in the same number of
epochs: the lr grows with the batch, ramps up over the first epochs so the early,
large gradients do not blow the weights apart, and LARS scales each layer's step to
its weight norm so no layer outruns the others.
"""
import typing

from bigdl_py.optim.optimizers import LARS, Optimizer
from bigdl_py.optim.schedules import Constant, Cosine, Poly, Schedule, Warmup, linear_scaling_lr

_DECAYS = ("poly", "cosine", "constant")


class Recipe(typing.NamedTuple):
    """What an engine needs; the field names are the engines' keyword arguments."""
    optim_method: Optimizer
    learning_rate: float
    schedule: Schedule


def large_batch_recipe(batch_size, base_lr, steps_per_epoch, epochs, base_batch=256, warmup_epochs=1.0,
                       momentum=0.9, trust_coefficient=0.001, weight_decay=5e-4, decay="poly", power=2.0,
                       start_factor=None, exclude=()):
    """LARS + linear lr scaling + gradual warm-up, then a decay to 0 at the last step.

    Args:
        batch_size: the global batch size to train with.
        base_lr: the lr that works at `base_batch`; scaled to base_lr * batch_size / base_batch.
        steps_per_epoch, epochs: training length (the decay reaches 0 at the last step).
        warmup_epochs: epochs of linear ramp (may be fractional; 0 for none).
        momentum, trust_coefficient, weight_decay: LARS's (trust_coefficient=0 turns LARS
            into momentum SGD, i.e. Goyal et al.'s recipe alone).
        decay: after warm-up, "poly" (You et al.), "cosine" or "constant".
        power: exponent of the poly decay.
        start_factor: fraction of the scaled lr at step 1; default base_batch / batch_size,
            so the ramp starts at the small-batch lr (Goyal et al.).
        exclude: flat-vector ranges that skip LARS's trust ratio and weight decay;
            `lars_exclude(model)` gives a model's biases and BatchNorm parameters.

    Returns:
        Recipe(optim_method, learning_rate, schedule), to pass as keyword arguments:
        LocalOptimizer(model, criterion, x=x, y=y, batch_size=b, **recipe._asdict()).

    Example:
        recipe = large_batch_recipe(8192, base_lr=0.05, steps_per_epoch=8, epochs=10)
    """
    if decay not in _DECAYS:
        raise ValueError(f"decay: expected one of {_DECAYS}, received {decay!r}")
    for label, value in (("steps_per_epoch", steps_per_epoch), ("epochs", epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{label}: expected an integer >= 1, received {value!r}")
    if not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"warmup_epochs: expected a number in [0, epochs={epochs}], received {warmup_epochs!r}")
    lr = linear_scaling_lr(base_lr, batch_size, base_batch)
    total = steps_per_epoch * epochs
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
    after = total - warmup
    then = {"poly": lambda: Poly(power, after), "cosine": lambda: Cosine(after),
            "constant": Constant}[decay]()
    if warmup == 0:
        schedule = then
    else:
        factor = min(1.0, base_batch / batch_size) if start_factor is None else start_factor
        schedule = Warmup(warmup, then=then, start_factor=factor)
    optimizer = LARS(momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                     exclude=exclude)
    return Recipe(optimizer, lr, schedule)
