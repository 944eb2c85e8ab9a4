"""Initialisers: names, fans for our layouts, distributions vs torch, seeding."""
import json
import math

import numpy as np
import pytest
import torch

from bigdl_py import nn
from bigdl_py.nn import init


@pytest.mark.parametrize("kh, kw, cin, cout", [(3, 3, 4, 8), (1, 1, 16, 2), (5, 3, 2, 7)])
def test_conv_fans_equal_torch_for_the_same_weight(kh, kw, cin, cout):
    hwio = np.zeros((kh, kw, cin, cout))
    oihw = torch.zeros(cout, cin, kh, kw)
    assert init.fans(hwio.shape, "hwio") == torch.nn.init._calculate_fan_in_and_fan_out(oihw)


def test_grouped_conv_fans_count_only_connected_channels():
    # (KH, KW, Cin/groups, Cout) with groups=4: each output sees 2*9 inputs, each input feeds 3*9 outputs.
    assert init.fans((3, 3, 2, 12), "hwio", groups=4) == (18, 27)


def test_linear_fans_and_bad_layouts():
    assert init.fans((8, 5), "oi") == (5, 8)
    with pytest.raises(ValueError, match="layout"):
        init.fans((8, 5), "io")
    with pytest.raises(ValueError, match="shape"):
        init.fans((8, 5), "hwio")


FAN_IN, FAN_OUT = 30, 20
# (name, kind, expected half-width for uniform or std for normal)
LAWS = [
    ("xavier_uniform", "uniform", math.sqrt(6 / 50)),
    ("glorot_uniform", "uniform", math.sqrt(6 / 50)),
    ("xavier_normal", "normal", math.sqrt(2 / 50)),
    ("kaiming_uniform", "uniform", math.sqrt(6 / FAN_IN)),
    ("he_normal", "normal", math.sqrt(2 / FAN_IN)),
    ("kaiming_normal", "normal", math.sqrt(2 / FAN_IN)),
    ("torch_default", "uniform", 1 / math.sqrt(FAN_IN)),
    ("normal", "normal", 1.0),
    ({"name": "kaiming_uniform", "a": math.sqrt(5)}, "uniform", 1 / math.sqrt(FAN_IN)),
    ({"name": "kaiming_normal", "mode": "fan_out"}, "normal", math.sqrt(2 / FAN_OUT)),
]


@pytest.mark.parametrize("name, kind, scale", LAWS, ids=[json.dumps(law[0]) for law in LAWS])
def test_initialiser_distributions(name, kind, scale):
    w = init.get(name)((200, 300), FAN_IN, FAN_OUT, np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == (200, 300)
    assert abs(w.mean()) < 0.02 * scale
    if kind == "uniform":
        assert np.abs(w).max() <= scale and np.abs(w).max() > 0.999 * scale
        assert w.std() == pytest.approx(scale / math.sqrt(3), rel=0.02)
    else:
        assert w.std() == pytest.approx(scale, rel=0.02)


def test_constant_initialisers():
    assert not init.get("zeros")((3, 2), 1, 1).any()
    assert np.all(init.get("ones")((3,), 1, 1) == 1)
    assert np.all(init.get({"name": "constant", "value": 0.5})((2,), 1, 1) == 0.5)
    u = init.get({"name": "uniform", "low": 2.0, "high": 3.0})((1000,), 1, 1)
    assert u.min() >= 2.0 and u.max() < 3.0


@pytest.mark.parametrize("ours, theirs", [
    (lambda: nn.Linear(300, 200), lambda: torch.nn.Linear(300, 200)),
    (lambda: nn.Conv2d(16, 32, 3, groups=2), lambda: torch.nn.Conv2d(16, 32, 3, groups=2)),
    (lambda: nn.LSTM(40, 50), lambda: torch.nn.LSTM(40, 50)),
    (lambda: nn.Embedding(300, 40), lambda: torch.nn.Embedding(300, 40)),
])
def test_default_initialisation_has_torchs_distribution(ours, theirs):
    torch.manual_seed(0)
    nn.init.manual_seed(0)
    a, b = ours(), theirs()
    for (name, w), tw in zip(a.params.items(), b.parameters()):
        tw = tw.detach().numpy()
        assert w.size == tw.size, name
        if w.size >= 1000:  # small biases are too noisy to compare statistics
            assert w.std() == pytest.approx(tw.std(), rel=0.05), name
            assert np.percentile(np.abs(w), 99) == pytest.approx(np.percentile(np.abs(tw), 99), rel=0.05), name


@pytest.mark.parametrize("layer, fan_in", [(lambda: nn.Linear(300, 200), 300),
                                           (lambda: nn.Conv2d(16, 32, 3, groups=2), 72)])
def test_default_bias_is_uniform_within_one_over_sqrt_fan_in(layer, fan_in):
    init.manual_seed(0)
    bias = layer().params["bias"]
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.8 * bound


def test_names_resolve_and_serialise_back():
    assert isinstance(init.get("glorot_uniform"), init.XavierUniform)
    assert isinstance(init.get("he_normal"), init.KaimingNormal)
    assert init.serialize("he_normal") == "kaiming_normal"
    assert init.serialize({"name": "normal", "std": 1.0}) == "normal"  # defaults collapse to the name
    custom = {"name": "normal", "mean": 0.0, "std": 0.01}
    assert init.serialize(custom) == custom
    assert init.get(custom).config == {"mean": 0.0, "std": 0.01}
    with pytest.raises(ValueError, match="unknown name 'glorot'.*xavier_uniform"):
        init.get("glorot")
    with pytest.raises(ValueError, match="bad arguments"):
        init.get({"name": "normal", "sd": 2})
    with pytest.raises(ValueError, match="mode"):
        init.get({"name": "kaiming_uniform", "mode": "fan_avg"})
    with pytest.raises(ValueError, match="expected a name"):
        init.get(3)


def test_layer_config_keeps_a_custom_initialiser():
    layer = nn.Linear(400, 300, weight_init={"name": "normal", "std": 0.01}, bias_init="zeros")
    config = json.loads(json.dumps(layer.get_config()))
    assert config["config"]["weight_init"] == {"name": "normal", "mean": 0.0, "std": 0.01}
    assert layer.params["weight"].std() == pytest.approx(0.01, rel=0.05)
    assert not layer.params["bias"].any()


def test_manual_seed_makes_construction_reproducible():
    init.manual_seed(42)
    a = nn.Conv2d(3, 8, 3)
    init.manual_seed(42)
    b = nn.Conv2d(3, 8, 3)
    c = nn.Conv2d(3, 8, 3)
    np.testing.assert_array_equal(a.params["weight"], b.params["weight"])
    assert not np.array_equal(b.params["weight"], c.params["weight"])


def test_reset_parameters_with_an_explicit_rng_writes_through_the_flat_vector():
    layer = nn.Linear(4, 3)
    weights, _ = layer.parameters_flat()
    layer.reset_parameters(np.random.default_rng(9))
    first = weights.copy()
    layer.reset_parameters(np.random.default_rng(9))
    np.testing.assert_array_equal(weights, first)
    np.testing.assert_array_equal(weights[:12], layer.params["weight"].reshape(-1))
    assert np.shares_memory(weights, layer.params["weight"])
