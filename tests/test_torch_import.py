"""PyTorch state dicts onto our models: layouts, names, errors, no half-loading, reading files."""
import numpy as np
import pytest
import torch

from bigdl_py import nn
from bigdl_py.nn.torch_import import load_torch_state_dict, read_torch_weights


class TorchSmall(torch.nn.Module):
    """conv + BN + ReLU, depthwise conv + BN, global pool, linear: every layout the importer converts."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.dw = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.bn2(self.dw(x))
        return self.fc(x.mean(dim=(2, 3)))


def ours_small():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, name="conv"), nn.BatchNorm(8, name="bn"), nn.ReLU(),
                         nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False, name="dw"),
                         nn.BatchNorm(8, name="bn2"), nn.GlobalAvgPool2d(), nn.Linear(8, 4, name="fc"))


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    ref = TorchSmall()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BN statistics, so a skipped buffer would show
        for bn in (ref.bn, ref.bn2):
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.uniform_(-0.3, 0.3, generator=g)
            bn.running_mean.uniform_(-0.3, 0.3, generator=g)
            bn.running_var.uniform_(0.5, 2.0, generator=g)
    return ref.eval()


def forward_both(ref, model):
    x = np.random.default_rng(2).standard_normal((2, 9, 7, 3)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    return model.eval().forward(x), want


@pytest.mark.parametrize("as_numpy", [False, True])
def test_conv_bn_depthwise_linear_import_gives_torch_outputs(reference, as_numpy):
    state = reference.state_dict()
    if as_numpy:
        state = {k: v.numpy() for k, v in state.items()}
    model = load_torch_state_dict(ours_small(), state)
    got, want = forward_both(reference, model)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.state_dict()["dw.weight"],
                                  reference.dw.weight.detach().numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.state_dict()["bn2.running_var"], reference.bn2.running_var.numpy())


def test_name_map_as_dict_and_function(reference):
    renamed = {k.replace("fc.", "head."): v for k, v in reference.state_dict().items()}
    for name_map in ({"head.weight": "fc.weight", "head.bias": "fc.bias"}, lambda k: k.replace("head.", "fc.")):
        got, want = forward_both(reference, load_torch_state_dict(ours_small(), renamed, name_map))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_mismatch_lists_missing_unexpected_and_misshaped_and_loads_nothing(reference):
    state = dict(reference.state_dict())
    del state["bn.running_mean"]
    state["extra.weight"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(5, 8)
    model = ours_small()
    before = model.state_dict()
    with pytest.raises(ValueError) as err:
        load_torch_state_dict(model, state)
    text = str(err.value)
    assert "missing ['bn.running_mean']" in text
    assert "unexpected ['extra.weight']" in text
    assert "fc.weight -> fc.weight: model expects (4, 8), received torch shape (5, 8)" in text
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_conv_weight_of_the_wrong_kernel_size_is_reported_with_both_layouts(reference):
    state = dict(reference.state_dict(), **{"dw.weight": torch.zeros(8, 1, 3, 3)})
    with pytest.raises(ValueError, match=r"dw.weight -> dw.weight: model expects \(5, 5, 1, 8\), received torch "
                                         r"shape \(8, 1, 3, 3\) \(as HWIO \(3, 3, 1, 8\)\)"):
        load_torch_state_dict(ours_small(), state)


def test_non_numeric_entries_are_refused(reference):
    state = dict(reference.state_dict(), **{"fc.bias": np.array(["a"] * 4)})
    with pytest.raises(ValueError, match="'fc.bias': expected a numeric tensor"):
        load_torch_state_dict(ours_small(), state)


def test_read_torch_weights_gives_numpy_arrays_and_names_bad_files(reference, tmp_path):
    path = tmp_path / "small.pth"
    torch.save(reference.state_dict(), path)
    state = read_torch_weights(str(path))
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert set(state) == set(reference.state_dict())
    got, want = forward_both(reference, load_torch_state_dict(ours_small(), state))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, wrapped)
    assert set(read_torch_weights(str(wrapped))) == set(state)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated.pth: cannot read a PyTorch weights file"):
        read_torch_weights(str(bad))
    with pytest.raises(ValueError, match="missing.pth: cannot read"):
        read_torch_weights(str(tmp_path / "missing.pth"))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth: expected a dict of tensors"):
        read_torch_weights(str(tmp_path / "list.pth"))
