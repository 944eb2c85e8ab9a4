"""Every layer against its torch.nn module with copied weights: forward, input gradient,
parameter gradients and buffers. Our activations are NHWC and conv weights HWIO; torch
gets NCHW and OIHW copies, and its results are permuted back before comparing."""
import numpy as np
import pytest
import torch

from bigdl_py import nn
from bigdl_py.testing import projection


def hwio_to_oihw(w):
    return w.transpose(3, 2, 0, 1)


def oihw_to_hwio(w):
    return w.transpose(2, 3, 1, 0)


def conv_relu(*args, **kw):
    return torch.nn.Sequential(torch.nn.Conv2d(*args, **kw), torch.nn.ReLU())


def conv_relu6(*args, **kw):
    return torch.nn.Sequential(torch.nn.Conv2d(*args, **kw), torch.nn.ReLU6())


def scaled(module, factor=8.0):
    """Weights x factor, so that outputs pass ReLU6's cap of 6 as well as 0."""
    module.params["weight"] *= factor
    return module


def randomised_bn(c, eval_mode, activation=None):
    m = nn.BatchNorm(c, eps=1e-3, momentum=0.3, activation=activation)
    rng = np.random.default_rng(3)
    m.params["weight"][...] = rng.uniform(0.5, 1.5, c)
    m.params["bias"][...] = rng.standard_normal(c)
    m.buffers["running_mean"][...] = rng.standard_normal(c)
    m.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
    return m.eval() if eval_mode else m


def last_step(module):
    """torch LSTM/GRU returning only the last hidden state, like return_sequences=False."""
    return lambda x: module(x)[0][:, -1]


RNN_MAP = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
CONV_MAP = {"weight": ("weight", "hwio"), "bias": ("bias", None)}
BN_MAP = {"weight": "weight", "bias": "bias", "running_mean": "running_mean", "running_var": "running_var"}

# id: (ours, torch module, {our name: torch name or (torch name, "hwio")}, input shape,
#      NHWC input (permute for torch), torch output wrapper or None)
CASES = {
    "conv": (lambda: nn.Conv2d(3, 4, 3, padding=1), lambda: torch.nn.Conv2d(3, 4, 3, padding=1), CONV_MAP,
             (2, 6, 5, 3), True, None),
    "conv_strided_dilated_grouped_relu": (
        lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2,
                          activation="relu"),
        lambda: conv_relu(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2),
        {"weight": ("0.weight", "hwio"), "bias": ("0.bias", None)}, (2, 7, 6, 4), True, None),
    # Fused ReLU6 on each kernel path: im2col + GEMM, depthwise, 1x1, one input channel.
    **{f"conv_relu6_{path}": (lambda a=a, kw=kw: scaled(nn.Conv2d(*a, **kw, activation="relu6")),
                              lambda a=a, kw=kw: conv_relu6(*a, **kw),
                              {"weight": ("0.weight", "hwio"), "bias": ("0.bias", None)}, shape, True, None)
       for path, a, kw, shape in [("3x3", (3, 4, 3), dict(padding=1), (2, 6, 5, 3)),
                                  ("depthwise", (4, 4, 3), dict(stride=2, padding=1, groups=4), (2, 7, 7, 4)),
                                  ("pointwise", (4, 6, 1), {}, (2, 5, 5, 4)),
                                  ("one_channel", (1, 6, 5), {}, (2, 9, 9, 1))]},
    "conv_depthwise": (lambda: nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4, bias=False),
                       lambda: torch.nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4, bias=False),
                       {"weight": ("weight", "hwio")}, (2, 7, 7, 4), True, None),
    "linear": (lambda: nn.Linear(6, 4), lambda: torch.nn.Linear(6, 4), {"weight": "weight", "bias": "bias"},
               (5, 6), False, None),
    "linear_sequence": (lambda: nn.Linear(6, 4, bias=False), lambda: torch.nn.Linear(6, 4, bias=False),
                        {"weight": "weight"}, (2, 3, 6), False, None),
    "maxpool": (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                lambda: torch.nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), {}, (2, 8, 7, 3), True, None),
    "avgpool": (lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                lambda: torch.nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), {},
                (2, 8, 7, 3), True, None),
    "avgpool_include_pad": (lambda: nn.AvgPool2d((2, 3), padding=1), lambda: torch.nn.AvgPool2d((2, 3), padding=1),
                            {}, (1, 5, 7, 2), True, None),
    "global_avgpool": (lambda: nn.GlobalAvgPool2d(), lambda: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1),
                                                                                 torch.nn.Flatten()),
                       {}, (2, 4, 3, 5), True, None),
    "batchnorm1d_train": (lambda: randomised_bn(4, False), lambda: torch.nn.BatchNorm1d(4, eps=1e-3, momentum=0.3),
                          BN_MAP, (8, 4), False, None),
    "batchnorm2d_train": (lambda: randomised_bn(3, False), lambda: torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.3),
                          BN_MAP, (2, 4, 5, 3), True, None),
    "batchnorm2d_train_relu": (lambda: randomised_bn(3, False, "relu"),
                               lambda: torch.nn.Sequential(torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.3),
                                                           torch.nn.ReLU()),
                               {k: f"0.{v}" for k, v in BN_MAP.items()}, (2, 4, 5, 3), True, None),
    "batchnorm2d_eval_relu": (lambda: randomised_bn(3, True, "relu"),
                              lambda: torch.nn.Sequential(torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.3),
                                                          torch.nn.ReLU()),
                              {k: f"0.{v}" for k, v in BN_MAP.items()}, (2, 4, 5, 3), True, None),
    "batchnorm2d_eval": (lambda: randomised_bn(3, True), lambda: torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.3),
                         BN_MAP, (2, 4, 5, 3), True, None),
    "lrn": (lambda: nn.LRN(size=3, alpha=0.3, beta=0.75, k=2.0),
            lambda: torch.nn.LocalResponseNorm(3, alpha=0.3, beta=0.75, k=2.0), {}, (2, 3, 4, 6), True, None),
    "lrn_default": (lambda: nn.LRN(), lambda: torch.nn.LocalResponseNorm(5), {}, (2, 3, 3, 8), True, None),
    "relu": (lambda: nn.ReLU(), lambda: torch.nn.ReLU(), {}, (4, 7), False, None),
    "relu6": (lambda: nn.ReLU6(), lambda: torch.nn.ReLU6(), {}, (4, 7), False, None),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1), {}, (4, 7), False, None),
    "elu": (lambda: nn.ELU(1.3), lambda: torch.nn.ELU(1.3), {}, (2, 3, 3, 4), False, None),
    "tanh": (lambda: nn.Tanh(), lambda: torch.nn.Tanh(), {}, (4, 7), False, None),
    "sigmoid": (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid(), {}, (4, 7), False, None),
    "softmax": (lambda: nn.SoftMax(), lambda: torch.nn.Softmax(dim=-1), {}, (4, 7), False, None),
    "log_softmax": (lambda: nn.LogSoftMax(), lambda: torch.nn.LogSoftmax(dim=-1), {}, (2, 3, 7), False, None),
    "lstm_last": (lambda: nn.LSTM(5, 4), lambda: torch.nn.LSTM(5, 4, batch_first=True), RNN_MAP, (3, 6, 5), False,
                  last_step),
    "lstm_sequences": (lambda: nn.LSTM(5, 4, return_sequences=True), lambda: torch.nn.LSTM(5, 4, batch_first=True),
                       RNN_MAP, (3, 6, 5), False, lambda m: (lambda x: m(x)[0])),
    "gru_last": (lambda: nn.GRU(5, 4), lambda: torch.nn.GRU(5, 4, batch_first=True), RNN_MAP, (3, 6, 5), False,
                 last_step),
    "gru_sequences": (lambda: nn.GRU(5, 4, return_sequences=True), lambda: torch.nn.GRU(5, 4, batch_first=True),
                      RNN_MAP, (3, 6, 5), False, lambda m: (lambda x: m(x)[0])),
    # Same NHWC tensor on both sides: our flatten order is (h, w, c).
    "flatten": (lambda: nn.Flatten(), lambda: torch.nn.Flatten(), {}, (2, 3, 2, 4), False, None),
    "reshape": (lambda: nn.Reshape((4, -1)), lambda: torch.nn.Unflatten(1, (4, 3)), {}, (2, 12), False, None),
    "identity": (lambda: nn.Identity(), lambda: torch.nn.Identity(), {}, (2, 5), False, None),
}


def to_torch(a, nhwc):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.permute(0, 3, 1, 2) if nhwc and t.ndim == 4 else t


def from_torch(t, nhwc):
    t = t.detach()
    return (t.permute(0, 2, 3, 1) if nhwc and t.ndim == 4 else t).numpy()


def copy_into_torch(ours, theirs, mapping):
    arrays = dict(ours.params, **ours.buffers)
    for name, target in mapping.items():
        tname, layout = target if isinstance(target, tuple) else (target, None)
        value = hwio_to_oihw(arrays[name]) if layout == "hwio" else arrays[name]
        dest = theirs.get_buffer(tname) if name in ours.buffers else theirs.get_parameter(tname)
        with torch.no_grad():
            dest.copy_(torch.from_numpy(np.ascontiguousarray(value)))


@pytest.mark.parametrize("case_id", list(CASES))
def test_forward_and_backward_match_torch(case_id):
    make_ours, make_theirs, mapping, shape, nhwc, wrap = CASES[case_id]
    nn.init.manual_seed(1)
    ours, theirs = make_ours(), make_theirs()
    copy_into_torch(ours, theirs, mapping)
    theirs.train(ours.training)
    assert set(mapping) == set(ours.params) | set(ours.buffers), "every weight and buffer is compared"
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    xt = to_torch(x, nhwc).requires_grad_(True)
    run_theirs = wrap(theirs) if wrap else theirs

    y = ours.forward(x)
    yt = run_theirs(xt)
    np.testing.assert_allclose(y, from_torch(yt, nhwc), rtol=1e-4, atol=1e-5)

    g = projection(y.shape, seed=4).astype(np.float32)
    dx = ours.backward(x, g)
    yt.backward(to_torch(g, nhwc))
    np.testing.assert_allclose(dx, from_torch(xt.grad, nhwc), rtol=1e-4, atol=1e-5)
    for name, target in mapping.items():
        tname, layout = target if isinstance(target, tuple) else (target, None)
        if name in ours.params:
            tg = theirs.get_parameter(tname).grad.numpy()
            np.testing.assert_allclose(ours.grads[name], oihw_to_hwio(tg) if layout == "hwio" else tg,
                                       rtol=1e-4, atol=1e-5, err_msg=f"gradient of {name}")
        else:
            np.testing.assert_allclose(ours.buffers[name], theirs.get_buffer(tname).numpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=f"buffer {name}")


def test_embedding_matches_torch_including_padding_and_repeats():
    nn.init.manual_seed(0)
    ours = nn.Embedding(6, 3, padding_idx=2)
    theirs = torch.nn.Embedding(6, 3, padding_idx=2)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.params["weight"]))
    idx = np.array([[0, 2, 5, 0], [2, 1, 1, 4]])
    y = ours.forward(idx.astype(np.float64))  # DataFrame-style float indices
    yt = theirs(torch.from_numpy(idx))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    g = projection(y.shape, seed=1).astype(np.float32)
    assert ours.backward(idx, g) is None
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ours.grads["weight"], theirs.weight.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_batchnorm_train_then_eval_tracks_torch_running_stats_over_steps():
    ours = nn.BatchNorm(3, momentum=0.1)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = (rng.standard_normal((4, 3, 3, 3)) * 2 + 1).astype(np.float32)
        ours.forward(x)
        theirs(to_torch(x, True))
    np.testing.assert_allclose(ours.buffers["running_mean"], theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.buffers["running_var"], theirs.running_var.numpy(), rtol=1e-5, atol=1e-6)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.forward(x), from_torch(theirs(to_torch(x, True)), True), rtol=1e-5, atol=1e-5)


def test_dropout_matches_torch_semantics():
    """Different generators, so compare the law: y = x * mask, mask in {0, 1/(1-p)}, backward = grad * mask."""
    p = 0.25
    ours = nn.Dropout(p)
    ours.set_forward_seed(5)
    x = np.random.default_rng(0).uniform(1, 2, (50, 40)).astype(np.float32)
    y = ours.forward(x)
    mask = y / x
    np.testing.assert_allclose(np.unique(np.round(mask, 5)), [0.0, round(1 / (1 - p), 5)])
    torch.manual_seed(0)
    yt = torch.nn.functional.dropout(torch.from_numpy(x), p)
    assert abs(np.mean(mask == 0) - (yt == 0).float().mean().item()) < 0.05
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(ours.backward(x, g), g * mask, rtol=1e-5, atol=1e-6)
