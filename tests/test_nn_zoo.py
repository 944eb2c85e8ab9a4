"""Model zoo: shapes, parameter counts, seeding, save/load round trips, and equivalence with torch models."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py import nn
from bigdl_py.nn import zoo
from bigdl_py.nn.io import load_model, save_model
from bigdl_py.testing import numeric_grad, projection
from tests.test_nn_graph import nchw, torch_conv_weight


def lstm_small(seed=None):
    return zoo.lstm_classifier(vocab_size=20, embed_dim=5, hidden=6, num_classes=3, seed=seed)


rng = np.random.default_rng(0)
# builder, input batch, output shape, parameter count (worked out from the layer sizes)
MODELS = {
    "lenet5": (zoo.lenet5, rng.standard_normal((2, 28, 28, 1)).astype(np.float32), (2, 10), 44_426),
    "mlp": (zoo.mlp, rng.standard_normal((3, 64)).astype(np.float32), (3, 2),
            64 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64 + 64 * 2 + 2),
    "resnet20": (zoo.resnet20, rng.standard_normal((2, 32, 32, 3)).astype(np.float32), (2, 10), 272_474),
    # 64x64 instead of 224x224 keeps the test fast; sizes stay even at every stride-2 stage.
    "efficientnet_lite0": (zoo.efficientnet_lite0, rng.standard_normal((1, 64, 64, 3)).astype(np.float32),
                           (1, 1000), 4_652_008),
    "lstm_classifier": (lstm_small, rng.integers(0, 20, (2, 7)), (2, 3),
                        20 * 5 + 4 * 6 * (5 + 6 + 2) + 6 * 3 + 3),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip_gives_identical_outputs(name, tmp_path):
    build, x, out_shape, n_params = MODELS[name]
    model = build(seed=1).eval()
    assert model.num_parameters() == n_params
    y = model.forward(x)
    assert y.shape == out_shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    save_model(model, str(tmp_path / name))
    loaded = load_model(str(tmp_path / name)).eval()
    np.testing.assert_array_equal(loaded.forward(x), y)


@pytest.mark.parametrize("name", ["lenet5", "mlp", "lstm_classifier"])
def test_seed_fixes_the_weights(name):
    build = MODELS[name][0]
    a, b, c = build(seed=3).state_dict(), build(seed=3).state_dict(), build(seed=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_lenet5_matches_torch():
    torch.manual_seed(0)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(256, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, 10))
    model = zoo.lenet5()
    t = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    # torch flattens (C, H, W), we flatten (H, W, C): permute the first Linear's input columns.
    fc1 = t["7.weight"].reshape(120, 16, 4, 4).transpose(0, 2, 3, 1).reshape(120, 256)
    model.load_state_dict({"0.weight": torch_conv_weight(ref[0].weight), "0.bias": t["0.bias"],
                           "2.weight": torch_conv_weight(ref[3].weight), "2.bias": t["3.bias"],
                           "5.weight": fc1, "5.bias": t["7.bias"], "7.weight": t["9.weight"], "7.bias": t["9.bias"],
                           "9.weight": t["11.weight"], "9.bias": t["11.bias"]})
    x = MODELS["lenet5"][1]
    xt = nchw(x).requires_grad_()
    yt = ref(xt)
    g = np.random.default_rng(1).standard_normal((2, 10)).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(model.forward(x), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.backward(x, g), xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)


def test_mlp_options_and_errors():
    model = zoo.mlp([4, 3, 2], activation="tanh", dropout=0.25)
    assert [type(m).__name__ for _, m in model.children()] == ["Linear", "Tanh", "Dropout", "Linear"]
    with pytest.raises(ValueError, match="activation: expected one of"):
        zoo.mlp(activation="swish")
    with pytest.raises(ValueError, match="at least 2"):
        zoo.mlp([4])


class TorchResNet20(torch.nn.Module):
    """He et al. CIFAR ResNet-20 with 1x1 conv + BN projection shortcuts, for comparison."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16))
        self.blocks = torch.nn.ModuleList()
        cin = 16
        for stage, width in enumerate((16, 32, 64)):
            for b in range(3):
                s = 2 if stage and not b else 1
                block = torch.nn.ModuleDict({
                    "c1": torch.nn.Conv2d(cin, width, 3, s, 1, bias=False), "b1": torch.nn.BatchNorm2d(width),
                    "c2": torch.nn.Conv2d(width, width, 3, 1, 1, bias=False), "b2": torch.nn.BatchNorm2d(width)})
                if s != 1 or cin != width:
                    block["sc"] = torch.nn.Conv2d(cin, width, 1, s, bias=False)
                    block["sb"] = torch.nn.BatchNorm2d(width)
                self.blocks.append(block)
                cin = width
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for b in self.blocks:
            y = b["b2"](b["c2"](F.relu(b["b1"](b["c1"](x)))))
            x = F.relu(y + (b["sb"](b["sc"](x)) if "sc" in b else x))
        return self.fc(x.mean(dim=(2, 3)))

    def ours_to_torch(self):
        """{our parameter name: torch parameter}."""
        out = {"stem_conv.weight": self.stem[0].weight, "stem_bn.weight": self.stem[1].weight,
               "stem_bn.bias": self.stem[1].bias, "fc.weight": self.fc.weight, "fc.bias": self.fc.bias}
        for i, b in enumerate(self.blocks):
            pre = f"stage{i // 3 + 1}_block{i % 3}"
            for ours, conv, bn in (("1", "c1", "b1"), ("2", "c2", "b2"), ("shortcut", "sc", "sb")):
                if conv in b:
                    out[f"{pre}_{ours}_conv.weight"] = b[conv].weight
                    out[f"{pre}_{ours}_bn.weight"] = b[bn].weight
                    out[f"{pre}_{ours}_bn.bias"] = b[bn].bias
        return out


def test_resnet20_matches_torch_in_training_mode():
    torch.manual_seed(0)
    ref = TorchResNet20()
    pairs = ref.ours_to_torch()
    model = zoo.resnet20()
    state = model.state_dict()
    for name, p in pairs.items():
        state[name] = torch_conv_weight(p) if p.ndim == 4 else p.detach().numpy()
    model.load_state_dict(state)
    assert set(dict(model.named_parameters())) == set(pairs)
    x = MODELS["resnet20"][1]
    g = np.random.default_rng(2).standard_normal((2, 10)).astype(np.float32)
    yt = ref(nchw(x))
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(model.forward(x), yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    model.backward(x, g)
    grads = dict(model.named_gradients())
    for name, p in pairs.items():
        want = torch_conv_weight(p.grad) if p.ndim == 4 else p.grad.numpy()
        np.testing.assert_allclose(grads[name], want, rtol=1e-3, atol=1e-4, err_msg=name)


def tf_same_pad(size, k, s):
    """TensorFlow SAME padding (before, after) for one axis."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class TorchLite0(torch.nn.Module):
    """EfficientNet-Lite0 in torch with efficientnet_lite_pytorch's module names and TF SAME padding."""

    BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]

    def __init__(self, num_classes=1000):
        super().__init__()
        bn = dict(eps=1e-3, momentum=0.01)
        self._conv_stem = torch.nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = torch.nn.BatchNorm2d(32, **bn)
        self._blocks = torch.nn.ModuleList()
        self.specs = []
        for r, k, s, e, cin, cout in self.BLOCKS:
            for i in range(r):
                cin_i, s_i, mid = (cin, s, cin * e) if i == 0 else (cout, 1, cout * e)
                blk = torch.nn.Module()
                if e != 1:
                    blk._expand_conv = torch.nn.Conv2d(cin_i, mid, 1, bias=False)
                    blk._bn0 = torch.nn.BatchNorm2d(mid, **bn)
                blk._depthwise_conv = torch.nn.Conv2d(mid, mid, k, s_i, groups=mid, bias=False)
                blk._bn1 = torch.nn.BatchNorm2d(mid, **bn)
                blk._project_conv = torch.nn.Conv2d(mid, cout, 1, bias=False)
                blk._bn2 = torch.nn.BatchNorm2d(cout, **bn)
                self._blocks.append(blk)
                self.specs.append((k, s_i, cin_i == cout and s_i == 1, e != 1))
        self._conv_head = torch.nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = torch.nn.BatchNorm2d(1280, **bn)
        self._fc = torch.nn.Linear(1280, num_classes)

    @staticmethod
    def same(x, conv, k, s):
        (t, b), (left, right) = tf_same_pad(x.shape[2], k, s), tf_same_pad(x.shape[3], k, s)
        return conv(F.pad(x, (left, right, t, b)))

    def forward(self, x):
        x = F.relu6(self._bn0(self.same(x, self._conv_stem, 3, 2)))
        for blk, (k, s, skip, expand) in zip(self._blocks, self.specs):
            h = F.relu6(blk._bn0(blk._expand_conv(x))) if expand else x
            h = F.relu6(blk._bn1(self.same(h, blk._depthwise_conv, k, s)))
            h = blk._bn2(blk._project_conv(h))
            x = h + x if skip else h
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def randomise_bn_statistics(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)


def import_by_name(model, torch_state):
    """Load a torch state dict into our model by parameter name (conv weights to HWIO)."""
    model.load_state_dict({k: (v.numpy().transpose(2, 3, 1, 0) if v.ndim == 4 else v.numpy())
                           for k, v in torch_state.items() if not k.endswith("num_batches_tracked")})


def check_lite0_against(ref, model, x, seed):
    randomise_bn_statistics(ref, seed)
    ref.eval()
    import_by_name(model, ref.state_dict())
    with torch.no_grad():
        want = ref(nchw(x)).numpy()
    got = model.eval().forward(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_efficientnet_lite0_matches_a_torch_reference_by_parameter_name():
    torch.manual_seed(0)
    check_lite0_against(TorchLite0(), zoo.efficientnet_lite0(), MODELS["efficientnet_lite0"][1], seed=1)


def test_efficientnet_lite0_matches_efficientnet_lite_pytorch():
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    ref = lite.EfficientNet.from_name("efficientnet-lite0")
    check_lite0_against(ref, zoo.efficientnet_lite0(), MODELS["efficientnet_lite0"][1], seed=2)


def test_fusing_efficientnet_lite0_folds_every_batchnorm_and_relu6_and_keeps_the_outputs():
    torch.manual_seed(0)
    ref = TorchLite0()
    randomise_bn_statistics(ref, 3)
    model = zoo.efficientnet_lite0()
    import_by_name(model, ref.state_dict())
    folded = nn.fuse_for_inference(model)
    assert not any(isinstance(m, (nn.BatchNorm, nn.ReLU6)) for _, m in folded.named_modules())
    assert folded.num_parameters() == model.num_parameters() - 2 * sum(
        m.config["num_features"] for _, m in model.named_modules() if isinstance(m, nn.BatchNorm)) + sum(
        m.config["out_channels"] for _, m in folded.named_modules() if isinstance(m, nn.Conv2d))
    x = MODELS["efficientnet_lite0"][1]
    want = model.eval().forward(x)
    np.testing.assert_allclose(folded.forward(x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_lstm_classifier_matches_torch():
    torch.manual_seed(0)
    emb, lstm, fc = torch.nn.Embedding(20, 5), torch.nn.LSTM(5, 6, batch_first=True), torch.nn.Linear(6, 3)
    model = lstm_small()
    model.load_state_dict({"0.weight": emb.weight.detach().numpy(),
                           **{f"1.{k[0]}_{k.split('_')[1][:2]}": v.detach().numpy()  # weight_ih_l0 -> w_ih
                              for k, v in lstm.state_dict().items()},
                           "2.weight": fc.weight.detach().numpy(), "2.bias": fc.bias.detach().numpy()})
    x = MODELS["lstm_classifier"][1]
    _, (h, _) = lstm(emb(torch.from_numpy(x)))
    np.testing.assert_allclose(model.forward(x), fc(h[0]).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_zero_pad_matches_torch_and_finite_differences():
    pad = nn.ZeroPad2d((0, 1, 2, 1))
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 2))
    np.testing.assert_array_equal(pad.forward(x), nhwc_np(F.pad(nchw(x), (0, 1, 2, 1)).numpy()))
    r = projection((2, 6, 5, 2), 4)
    np.testing.assert_allclose(pad.backward(x, r), numeric_grad(lambda v: float((pad.forward(v) * r).sum()), x),
                               rtol=1e-9)
    assert nn.from_config(pad.get_config()).config == {"padding": [0, 1, 2, 1]}
    with pytest.raises(ValueError, match="left, right, top, bottom"):
        nn.ZeroPad2d((1, 2))


def nhwc_np(a):
    return a.transpose(0, 2, 3, 1)


def test_resnet20_zero_init_residual_starts_every_block_as_its_shortcut():
    x = MODELS["resnet20"][1]
    plain, zeroed = zoo.resnet20(seed=0), zoo.resnet20(seed=0, zero_init_residual=True)
    before, after = plain.state_dict(), zeroed.state_dict()
    zero = sorted(k for k in after if k.endswith("_2_bn.weight"))
    assert len(zero) == 9 and all(not after[k].any() for k in zero)
    assert all(np.array_equal(after[k], before[k]) for k in after if k not in zero)
    zeroed.forward(x)
    zeroed.backward(x, np.ones((2, 10), np.float32))
    grads = dict(zeroed.named_gradients())
    # The branch is scaled by 0: its first conv gets no gradient, its last scale does (so it can grow).
    assert not any(grads[k.replace("_2_bn.weight", "_1_conv.weight")].any() for k in zero)
    assert all(np.abs(grads[k]).sum() > 0 for k in zero)
