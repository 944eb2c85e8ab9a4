"""Module.infer: the forward used for prediction gives forward's output and keeps nothing for backward."""
import gc
import weakref

import numpy as np
import pytest

from bigdl_py.nn import Add, Concat, Input, Linear, Model, ReLU, Sequential, zoo


def _cases():
    rng = np.random.default_rng(0)
    return [
        ("lenet5", lambda: zoo.lenet5(seed=0), rng.normal(size=(3, 28, 28, 1))),
        ("mlp", lambda: zoo.mlp(dropout=0.3, seed=0), rng.normal(size=(5, 64))),
        ("resnet20", lambda: zoo.resnet20(seed=0), rng.normal(size=(2, 32, 32, 3))),
        ("efficientnet_lite0", lambda: zoo.efficientnet_lite0(num_classes=7, seed=0), rng.normal(size=(1, 64, 64, 3))),
        ("lstm_classifier", lambda: zoo.lstm_classifier(20, 8, 6, 3, seed=0), rng.integers(0, 20, size=(4, 9))),
    ]


@pytest.mark.parametrize("name,make,x", _cases(), ids=[c[0] for c in _cases()])
def test_infer_equals_eval_forward_and_leaves_nothing_for_backward(name, make, x):
    x = x.astype(np.float32)
    model = make().eval()
    expected = model.forward(x)
    out = model.infer(x)
    np.testing.assert_array_equal(out, expected)
    saved = [(path, attr) for path, m in model.named_modules() for attr in m.saved_for_backward
             if getattr(m, attr) is not None]
    assert saved == []
    with pytest.raises(ValueError, match="backward called before forward"):
        model.backward(x, np.ones_like(out))


def test_graph_infer_frees_a_value_after_its_last_consumer_and_keeps_outputs():
    inp = Input((4,), name="x")
    a = Linear(4, 4, name="a")(inp)
    b = ReLU(name="b")(a)
    c = Add(name="c")([a, b])  # a has two consumers
    d = Concat(name="d")([c, inp])
    model = Model(inp, [d, a]).eval()  # a is also an output
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    expected = model.forward(x)
    out = model.infer(x)
    for e, o in zip(expected, out):
        np.testing.assert_array_equal(o, e)


def test_sequential_infer_holds_one_activation_at_a_time():
    """Each layer's input is freed once the next one has run (forward keeps them all)."""
    alive = []

    class Probe(ReLU):
        def forward(self, x):
            y = super().forward(x)
            alive.append(weakref.ref(y))
            return y

    model = Sequential(*[Probe() for _ in range(4)]).eval()
    x = np.ones((2, 3), np.float32)
    model.forward(x)
    gc.collect()
    assert sum(r() is not None for r in alive) == 4
    alive.clear()
    out = model.infer(x)
    gc.collect()
    assert [r() is not None for r in alive] == [False, False, False, True] and alive[-1]() is out
