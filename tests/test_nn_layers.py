"""One harness every layer passes (Keras style), plus layer-specific behaviour.

Each case is (layer factory, input shape, input kind, output shape, a bad input);
every case gets: forward shape, config round trip through JSON, state-dict round
trip, flat parameter vector, float64 finite-difference backward for the input and
every parameter, gradient accumulation, and an input error naming the layer path.
Comparisons with torch.nn live in test_nn_layers_torch.py.
"""
import json

import numpy as np
import pytest

from bigdl_py import nn
from bigdl_py.nn.module import from_config
from tests.gradcheck import numeric_grad, projection


def make_input(shape, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "indices":
        return rng.integers(0, 7, shape).astype(np.int64)
    if kind == "distinct":  # max pooling: no ties, gaps far wider than the FD step
        return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0).astype(np.float32)
    x = rng.standard_normal(shape)
    if kind == "off_zero":  # kinks at 0 (relu family): keep FD away from them
        x = np.sign(x) * (0.2 + np.abs(x))
    return x.astype(np.float32)


def bn_eval(shape_c=3, activation=None):
    m = nn.BatchNorm(shape_c, eps=1e-3, momentum=0.2, activation=activation)
    rng = np.random.default_rng(5)
    m.buffers["running_mean"][...] = rng.standard_normal(shape_c)
    m.buffers["running_var"][...] = rng.uniform(0.5, 2.0, shape_c)
    m.params["weight"][...] = rng.uniform(0.5, 1.5, shape_c)
    m.params["bias"][...] = rng.standard_normal(shape_c)
    return m.eval()


def bn_train(shape_c=3, activation=None):
    m = bn_eval(shape_c, activation)
    return m.train()


BAD_2D = np.zeros((2, 3, 4), np.float32)
NOT_ARRAY = [[1.0, 2.0]]

# id: (factory, input shape, input kind, output shape, bad input)
CASES = {
    "conv": (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 5, 5, 3), "normal", (2, 5, 5, 4),
             np.zeros((2, 5, 5, 2), np.float32)),
    "conv_grouped_relu": (lambda: nn.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2), groups=2,
                                            activation="relu"),
                          (2, 6, 7, 4), "normal", (2, 3, 3, 6), np.zeros((2, 6, 7), np.float32)),
    "conv_depthwise_nobias": (lambda: nn.Conv2d(3, 3, 3, groups=3, bias=False, weight_init="xavier_uniform"),
                              (1, 4, 5, 3), "normal", (1, 2, 3, 3), np.zeros((1, 2, 2, 3), np.float32)),
    "linear": (lambda: nn.Linear(5, 3), (4, 5), "normal", (4, 3), np.zeros((4, 6), np.float32)),
    "linear_seq_nobias": (lambda: nn.Linear(5, 3, bias=False, weight_init="kaiming_normal"), (2, 3, 5), "normal",
                          (2, 3, 3), np.zeros((5,), np.float32)),
    "maxpool": (lambda: nn.MaxPool2d(2), (2, 4, 4, 3), "distinct", (2, 2, 2, 3), BAD_2D),
    "maxpool_ceil_pad": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 6, 6, 2), "distinct",
                         (1, 4, 4, 2), BAD_2D),
    "avgpool": (lambda: nn.AvgPool2d(2), (2, 4, 4, 3), "normal", (2, 2, 2, 3), BAD_2D),
    "avgpool_exclude_pad": (lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 5, 5, 2),
                            "normal", (2, 3, 3, 2), BAD_2D),
    "global_avgpool": (lambda: nn.GlobalAvgPool2d(), (2, 3, 3, 4), "normal", (2, 4), BAD_2D),
    "batchnorm_2d_train": (lambda: bn_train(), (6, 3), "normal", (6, 3), np.zeros((6, 4), np.float32)),
    "batchnorm_4d_train": (lambda: bn_train(), (2, 3, 2, 3), "normal", (2, 3, 2, 3),
                           np.zeros((2, 3, 3), np.float32)),
    "batchnorm_4d_train_relu": (lambda: bn_train(activation="relu"), (2, 3, 2, 3), "normal", (2, 3, 2, 3),
                                np.zeros((2, 3, 3), np.float32)),
    "batchnorm_4d_eval": (lambda: bn_eval(), (2, 2, 2, 3), "normal", (2, 2, 2, 3),
                          np.zeros((2, 2, 2, 4), np.float32)),
    "lrn": (lambda: nn.LRN(size=3, alpha=0.5, beta=0.75, k=2.0), (2, 2, 3, 5), "normal", (2, 2, 3, 5), BAD_2D),
    "relu": (lambda: nn.ReLU(), (3, 4), "off_zero", (3, 4), NOT_ARRAY),
    "relu6": (lambda: nn.ReLU6(), (3, 4), "off_zero", (3, 4), NOT_ARRAY),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (3, 4), "off_zero", (3, 4), NOT_ARRAY),
    "elu": (lambda: nn.ELU(0.7), (2, 3, 4), "off_zero", (2, 3, 4), NOT_ARRAY),
    "tanh": (lambda: nn.Tanh(), (3, 4), "normal", (3, 4), NOT_ARRAY),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 4), "normal", (3, 4), NOT_ARRAY),
    "softmax": (lambda: nn.SoftMax(), (3, 5), "normal", (3, 5), NOT_ARRAY),
    "log_softmax": (lambda: nn.LogSoftMax(), (2, 2, 5), "normal", (2, 2, 5), NOT_ARRAY),
    "dropout": (lambda: nn.Dropout(0.4), (4, 5), "normal", (4, 5), NOT_ARRAY),
    # Indices are drawn from [0, 7): the padding row (no gradient by design) stays unused here.
    "embedding": (lambda: nn.Embedding(8, 3, padding_idx=7), (3, 4), "indices", (3, 4, 3),
                  np.array([[0.5, 1.0]], np.float32)),
    "lstm_last": (lambda: nn.LSTM(3, 4), (2, 3, 3), "normal", (2, 4), np.zeros((2, 3, 2), np.float32)),
    "lstm_seq": (lambda: nn.LSTM(3, 4, return_sequences=True), (2, 3, 3), "normal", (2, 3, 4),
                 np.zeros((2, 3), np.float32)),
    "gru_last": (lambda: nn.GRU(3, 4), (2, 3, 3), "normal", (2, 4), np.zeros((2, 3, 2), np.float32)),
    "gru_seq": (lambda: nn.GRU(3, 4, return_sequences=True), (2, 3, 3), "normal", (2, 3, 4),
                np.zeros((2, 3), np.float32)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2, 2), "normal", (2, 12), np.zeros((3,), np.float32)),
    "reshape": (lambda: nn.Reshape((2, -1)), (2, 6), "normal", (2, 2, 3), np.zeros((2, 5), np.float32)),
    "identity": (lambda: nn.Identity(), (2, 3), "normal", (2, 3), NOT_ARRAY),
}
IDS = list(CASES)


def build(case_id):
    factory, shape, kind, out_shape, bad = CASES[case_id]
    nn.init.manual_seed(0)
    m = factory()
    m.set_forward_seed(7)
    return m, make_input(shape, kind), out_shape, bad


def run(m, x, seed=7):
    m.set_forward_seed(seed)  # dropout draws the same mask on every call
    return m.forward(x)


def to_float64(m):
    for d in (m.params, m.grads, m.buffers):
        for k in d:
            d[k] = d[k].astype(np.float64)


@pytest.mark.parametrize("case_id", IDS)
def test_forward_shape_and_dtype(case_id):
    m, x, out_shape, _ = build(case_id)
    y = run(m, x)
    assert y.shape == out_shape
    assert y.dtype == np.float32


@pytest.mark.parametrize("case_id", IDS)
def test_config_round_trip_through_json_gives_identical_forward(case_id):
    m, x, _, _ = build(case_id)
    config = json.loads(json.dumps(m.get_config()))
    twin = from_config(config)
    assert type(twin) is type(m) and twin.get_config() == m.get_config()
    twin.load_state_dict(m.state_dict())
    twin.train(m.training)
    np.testing.assert_array_equal(run(twin, x), run(m, x))


@pytest.mark.parametrize("case_id", IDS)
def test_state_dict_round_trip_into_a_differently_initialised_layer(case_id):
    m, x, _, _ = build(case_id)
    state = m.state_dict()
    assert set(state) == set(m.params) | set(m.buffers)
    nn.init.manual_seed(123)
    other = CASES[case_id][0]()
    other.load_state_dict(state)
    np.testing.assert_array_equal(run(other, x), run(m, x))
    live = dict(m.named_parameters(), **dict(m.named_buffers()))
    assert not any(np.shares_memory(v, live[k]) for k, v in state.items())


@pytest.mark.parametrize("case_id", IDS)
def test_flat_parameters_keep_forward_and_receive_gradients(case_id):
    m, x, _, _ = build(case_id)
    y = run(m, x)
    weights, grads = m.parameters_flat()
    assert weights.size == grads.size == sum(p.size for p in m.params.values())
    np.testing.assert_array_equal(run(m, x), y)
    m.backward(x, projection(y.shape).astype(np.float32))
    np.testing.assert_array_equal(grads, np.concatenate([g.reshape(-1) for g in m.grads.values()] + [[]]))
    if m.params:
        assert np.any(grads != 0)
        weights *= 0.5  # writing the vector changes the layer
        assert np.all(next(iter(m.params.values())).reshape(-1)[:3] == weights[:3])


@pytest.mark.parametrize("case_id", [i for i in IDS if CASES[i][0]().params])
def test_backward_accumulates_parameter_gradients(case_id):
    m, x, _, _ = build(case_id)
    y = run(m, x)
    g = projection(y.shape).astype(np.float32)
    m.backward(x, g)
    once = {k: v.copy() for k, v in m.grads.items()}
    run(m, x)
    m.backward(x, g)
    for k in once:
        np.testing.assert_allclose(m.grads[k], 2 * once[k], rtol=1e-6, atol=1e-7)
    m.zero_grad()
    assert all(not v.any() for v in m.grads.values())


@pytest.mark.parametrize("case_id", IDS)
def test_backward_matches_float64_finite_differences(case_id):
    m, x, _, _ = build(case_id)
    to_float64(m)
    x64 = x if x.dtype.kind == "i" else x.astype(np.float64)
    r = projection(run(m, x64).shape)

    def loss():
        return float((r * run(m, x64)).sum())

    y = run(m, x64)
    assert y.dtype == np.float64
    dx = m.backward(x64, r)
    if x.dtype.kind == "i":
        assert dx is None  # indices get no gradient
    else:
        def loss_of_x(v):
            return float((r * run(m, v)).sum())
        np.testing.assert_allclose(dx, numeric_grad(loss_of_x, x64), rtol=1e-4, atol=1e-6)
    for key, p in m.params.items():
        def loss_of_p(v, p=p):
            keep = p.copy()
            p[...] = v
            out = loss()
            p[...] = keep
            return out
        np.testing.assert_allclose(m.grads[key], numeric_grad(loss_of_p, p), rtol=1e-4, atol=1e-6,
                                   err_msg=f"gradient of {key}")


@pytest.mark.parametrize("case_id", IDS)
def test_wrong_input_raises_value_error_naming_the_layer_path(case_id):
    m, _, _, bad = build(case_id)
    m._set_path("net.block2.layer")
    with pytest.raises(ValueError, match=r"layer 'net\.block2\.layer'"):
        run(m, bad)


@pytest.mark.parametrize("case_id", ["conv_grouped_relu", "maxpool", "batchnorm_2d_train", "lrn", "tanh", "dropout",
                                     "lstm_last", "gru_seq"])
def test_backward_before_forward_names_the_layer(case_id):
    m, x, out_shape, _ = build(case_id)
    with pytest.raises(ValueError, match=r"layer '\w+' \(\w+\): backward called before forward"):
        m.backward(x, np.zeros(out_shape, np.float32))


# ---- layer-specific behaviour ----------------------------------------------------

def test_conv_input_smaller_than_the_kernel_names_the_layer():
    m = nn.Conv2d(1, 2, 5, name="stem")
    with pytest.raises(ValueError, match="layer 'stem' \\(Conv2d\\)"):
        m.forward(np.zeros((1, 3, 3, 1), np.float32))


def test_layers_cast_integer_pixels_to_float32():
    x = np.arange(2 * 4 * 4 * 1).reshape(2, 4, 4, 1).astype(np.uint8)
    conv = nn.Conv2d(1, 2, 3)
    np.testing.assert_allclose(conv.forward(x), conv.forward(x.astype(np.float32)), rtol=1e-6)
    assert nn.MaxPool2d(2).forward(x).dtype == np.float32


def test_batchnorm_train_updates_running_stats_and_eval_uses_them():
    m = nn.BatchNorm(2, momentum=0.5)
    x = np.array([[1.0, 10.0], [3.0, 14.0], [5.0, 18.0]], np.float32)
    y = m.forward(x)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(m.buffers["running_mean"], 0.5 * x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(m.buffers["running_var"], 0.5 + 0.5 * x.var(axis=0, ddof=1), rtol=1e-6)
    m.eval()
    expected = (x - m.buffers["running_mean"]) / np.sqrt(m.buffers["running_var"] + 1e-5)
    np.testing.assert_allclose(m.forward(x), expected, rtol=1e-5)
    before = m.buffers["running_mean"].copy()
    m.forward(x)
    np.testing.assert_array_equal(m.buffers["running_mean"], before)


def test_dropout_mask_is_a_function_of_seed_path_and_call_count():
    x = np.ones((8, 50), np.float32)
    a, b = nn.Dropout(0.5), nn.Dropout(0.5)
    a._set_path("net.drop1")
    b._set_path("net.drop2")
    a.set_forward_seed(11)
    b.set_forward_seed(11)
    ya1, ya2, yb1 = a.forward(x), a.forward(x), b.forward(x)
    assert not np.array_equal(ya1, ya2)  # second call in the same iteration
    assert not np.array_equal(ya1, yb1)  # another layer
    a.set_forward_seed(11)
    np.testing.assert_array_equal(a.forward(x), ya1)  # re-running the iteration repeats it
    np.testing.assert_array_equal(a.forward(x), ya2)
    a.set_forward_seed(12)
    assert not np.array_equal(a.forward(x), ya1)
    assert set(np.unique(ya1)) == {0.0, 2.0}
    assert 0.4 < np.mean(ya1 == 0) < 0.6


def test_dropout_seed_follows_set_forward_seed_on_an_ancestor():
    parent = nn.Module()
    drop = parent.add_module("drop", nn.Dropout(0.5))
    x = np.ones((4, 40), np.float32)
    parent.set_forward_seed(3)
    first = drop.forward(x)
    drop.forward(x)
    parent.set_forward_seed(3)
    np.testing.assert_array_equal(drop.forward(x), first)


def test_dropout_is_identity_in_eval_mode():
    m = nn.Dropout(0.9).eval()
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    assert m.forward(x) is x
    g = np.ones_like(x)
    assert m.backward(x, g) is g


def test_embedding_accepts_whole_floats_and_rejects_fractions_and_out_of_range():
    m = nn.Embedding(5, 2)
    idx = np.array([[0, 4], [2, 2]])
    np.testing.assert_array_equal(m.forward(idx.astype(np.float32)), m.forward(idx))
    with pytest.raises(ValueError, match="whole numbers.*0.5"):
        m.forward(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="layer 'Embedding'.*indices"):
        m.forward(np.array([0, 5]))


def test_embedding_padding_row_starts_at_zero_and_gets_no_gradient():
    m = nn.Embedding(4, 3, padding_idx=2)
    assert not m.params["weight"][2].any()
    idx = np.array([[2, 1, 2]])
    m.forward(idx)
    m.backward(idx, np.ones((1, 3, 3), np.float32))
    assert not m.grads["weight"][2].any()
    np.testing.assert_array_equal(m.grads["weight"][1], 1.0)


def test_reshape_rejects_a_size_mismatch_with_the_layer_name():
    m = nn.Reshape((4, 4, 1), name="unflatten")
    with pytest.raises(ValueError, match="layer 'unflatten' \\(Reshape\\).*\\(15,\\).*16 values"):
        m.forward(np.zeros((2, 15), np.float32))


@pytest.mark.parametrize("factory, message", [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), "groups"),
    (lambda: nn.Conv2d(3, 4, 0), "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 3, activation="gelu"), "activation"),
    (lambda: nn.Linear(0, 3), "in_features"),
    (lambda: nn.Linear(2, 3, weight_init="nope"), "unknown name 'nope'"),
    (lambda: nn.MaxPool2d(2, padding=-1), "padding"),
    (lambda: nn.BatchNorm(3, eps=0), "eps"),
    (lambda: nn.Dropout(1.0), "p"),
    (lambda: nn.Embedding(3, 2, padding_idx=3), "padding_idx"),
    (lambda: nn.LSTM(3, 0), "hidden_size"),
    (lambda: nn.Reshape((2, -1, -1)), "shape"),
])
def test_bad_constructor_arguments_are_named(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
