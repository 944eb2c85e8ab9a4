"""The README's custom-layer example works as written: trains, checks, saves, loads."""
import os
import re

import numpy as np

from tests.gradcheck import numeric_grad

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_custom_layer():
    text = open(README).read()
    block = re.search(r"## Write your own layer in Python.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    return namespace["Scale"]


def test_custom_layer_backward_matches_finite_differences():
    Scale = readme_custom_layer()
    layer = Scale(3)
    layer.params["w"][:] = [0.5, -2.0, 3.0]
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    r = np.random.default_rng(1).standard_normal((4, 3))
    layer.forward(x)
    dx = layer.backward(x, r.astype(np.float32))
    np.testing.assert_allclose(dx, numeric_grad(lambda v: (v * layer.params["w"] * r).sum(), x), rtol=1e-3)
    w0 = layer.params["w"].astype(np.float64)
    np.testing.assert_allclose(layer.grads["w"], numeric_grad(lambda w: (x * w * r).sum(), w0), rtol=1e-3)


def test_custom_layer_trains_saves_and_loads_inside_a_model(tmp_path):
    from bigdl_py.engine.local import LocalOptimizer
    from bigdl_py.nn import Linear, MSELoss, Sequential, load_model, save_model
    from bigdl_py.optim import SGD, MaxIteration

    Scale = readme_custom_layer()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x * np.array([2.0, -1.0, 0.5], np.float32)
    model = Sequential(Scale(3), Linear(3, 3))
    before = float(MSELoss().forward(model.forward(x), y))
    LocalOptimizer(model, MSELoss(), SGD(), x, y, batch_size=16, end_trigger=MaxIteration(200),
                   learning_rate=0.05).set_progress(False).optimize()
    after = float(MSELoss().forward(model.forward(x), y))
    assert after < 0.1 * before
    save_model(model, str(tmp_path / "m"))
    np.testing.assert_array_equal(load_model(str(tmp_path / "m")).forward(x), model.forward(x))
