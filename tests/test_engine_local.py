"""LocalOptimizer: exact against torch, triggers, validation and training log, bad input, LeNet-5 on MNIST."""
import json
import os

import numpy as np
import pytest
import torch

from bigdl_py.engine import checkpoint as ckpt
from bigdl_py.engine.base import TrainingError
from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.engine.training_log import plot_training_log, read_log
from bigdl_py.nn import Concat, CrossEntropyLoss, Input, Model, MSELoss
from bigdl_py.nn.zoo import lenet5, mlp
from bigdl_py.optim import (SGD, Adam, EveryEpoch, Loss, MaxEpoch, MaxIteration, MultiStep, SeveralIteration,
                            Step, Top1Accuracy)

SIZES = (8, 16, 12, 3)  # inputs, two hidden layers, classes


def data(n=60, seed=0, classes=SIZES[-1]):
    """Random features and labels that depend on them (so training has something to learn)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SIZES[0])).astype(np.float32)
    y = (np.abs(x[:, :classes]).argmax(axis=1)).astype(np.int64)
    return x, y


def make_optimizer(x, y, optim_method, batch_size=8, end_trigger=None, learning_rate=0.1, model_seed=1, **kw):
    opt = LocalOptimizer(mlp(SIZES, seed=model_seed), CrossEntropyLoss(), optim_method, x, y,
                         batch_size=batch_size, end_trigger=end_trigger, learning_rate=learning_rate, **kw)
    return opt.set_progress(False)


def torch_mlp(model):
    """torch copy of our MLP (Linear weights are (out, in) in both)."""
    layers = []
    linears = [m for _, m in model.named_modules() if type(m).__name__ == "Linear"]
    for i, lin in enumerate(linears):
        t = torch.nn.Linear(*reversed(lin.params["weight"].shape))
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(lin.params["weight"].copy()))
            t.bias.copy_(torch.from_numpy(lin.params["bias"].copy()))
        layers += [t] + ([torch.nn.ReLU()] if i < len(linears) - 1 else [])
    return torch.nn.Sequential(*layers)


def torch_flat(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()


# (our optimizer, torch class, torch kwargs, base lr, lr factor per epoch, gradient max norm)
TORCH_CASES = {
    "sgd_momentum": (SGD(momentum=0.9), torch.optim.SGD, {"momentum": 0.9}, 0.1, 1.0, None),
    "adam": (Adam(), torch.optim.Adam, {}, 0.01, 1.0, None),
    "sgd_step_schedule_clipped": (SGD(momentum=0.9, nesterov=True), torch.optim.SGD,
                                  {"momentum": 0.9, "nesterov": True}, 0.2, 0.5, 0.3),
}


@pytest.mark.parametrize("ours,torch_cls,kwargs,lr,gamma,max_norm", TORCH_CASES.values(), ids=TORCH_CASES.keys())
def test_twenty_steps_match_torch(ours, torch_cls, kwargs, lr, gamma, max_norm):
    # 60 samples in batches of 8: 8 iterations per epoch, the last of 4 samples,
    # so 20 steps cross two epoch boundaries and two short batches.
    x, y = data()
    opt = make_optimizer(x, y, ours, learning_rate=lr, end_trigger=MaxIteration(20),
                         schedule=Step(step_size=1, gamma=gamma))
    if max_norm is not None:
        opt.set_gradient_clipping(max_norm=max_norm)
    net = torch_mlp(opt.model)
    w0 = opt.model.parameters_flat()[0].copy()
    np.testing.assert_array_equal(torch_flat(net), w0)
    topt = torch_cls(net.parameters(), lr=lr, foreach=False, **kwargs)
    batches = [(epoch, b) for epoch in range(3) for b in opt.sampler.global_batches(epoch)][:20]
    for epoch, idx in batches:
        topt.param_groups[0]["lr"] = lr * gamma ** epoch
        topt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])).backward()
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
        topt.step()
    opt.optimize()
    ours_w = opt.model.parameters_flat()[0]
    assert not np.allclose(ours_w, w0, rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours_w, torch_flat(net), rtol=1e-4, atol=1e-6)
    assert [h["samples"] for h in opt.history] == [len(b) for _, b in batches]
    assert [h["lr"] for h in opt.history] == pytest.approx([lr * gamma ** e for e, _ in batches])


def test_a_two_input_model_trains_like_one_input_on_the_joined_features():
    x, y = data()
    a, b = Input(5), Input(3)
    two = Model(inputs=[a, b], outputs=mlp(SIZES, seed=1)(Concat()([a, b])))
    one = make_optimizer(x, y, Adam(), learning_rate=0.01, end_trigger=MaxIteration(10))
    opt = LocalOptimizer(two, CrossEntropyLoss(), Adam(), [x[:, :5], x[:, 5:]], y, batch_size=8,
                         end_trigger=MaxIteration(10), learning_rate=0.01).set_progress(False)
    one.optimize()
    opt.optimize()
    np.testing.assert_array_equal(two.parameters_flat()[0], one.model.parameters_flat()[0])


def test_max_epoch_runs_whole_epochs():
    x, y = data()
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(2))
    opt.optimize()
    assert opt.sampler.iterations_per_epoch == 8
    assert [h["step"] for h in opt.history] == list(range(1, 17))
    assert [h["epoch"] for h in opt.history] == [0] * 8 + [1] * 8
    assert sum(h["samples"] for h in opt.history) == 2 * len(x)


def test_max_iteration_stops_mid_epoch():
    x, y = data()
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxIteration(7))
    opt.optimize()
    assert [h["step"] for h in opt.history] == list(range(1, 8))
    assert {h["epoch"] for h in opt.history} == {0}


def test_default_end_trigger_is_one_epoch():
    x, y = data()
    opt = make_optimizer(x, y, SGD())
    opt.optimize()
    assert len(opt.history) == opt.sampler.iterations_per_epoch


def test_validation_on_a_trigger_is_recorded_in_history_and_log(tmp_path):
    x, y = data()
    xv, yv = data(n=30, seed=5)
    log_path = str(tmp_path / "logs" / "train.jsonl")
    opt = make_optimizer(x, y, SGD(momentum=0.9), end_trigger=MaxEpoch(2))
    opt.set_validation(xv, yv, [Top1Accuracy(), Loss()], trigger=SeveralIteration(5), batch_size=7)
    opt.set_training_log(log_path)
    opt.optimize()
    validated = [h["step"] for h in opt.history if "Top1Accuracy" in h]
    assert validated == [5, 10, 15]
    # The recorded numbers are the model's metrics at that step: recompute the last one.
    final = opt.history[-1]
    assert "Loss" not in final
    entry = opt.history[14]
    assert 0.0 <= entry["Top1Accuracy"] <= 1.0 and entry["Loss"] > 0
    records = read_log(log_path)
    assert records == json.loads(json.dumps(opt.history))
    with open(log_path) as f:
        assert len(f.read().strip().splitlines()) == 16
    png = plot_training_log(log_path, str(tmp_path / "curves.png"), keys=("loss", "Top1Accuracy", "lr"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 1000


def test_validation_metrics_are_those_of_the_model_at_that_step():
    x, y = data()
    xv, yv = data(n=30, seed=5)
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxIteration(3))
    opt.set_validation(xv, yv, [Loss(), Top1Accuracy()], trigger=MaxIteration(3), batch_size=7)
    model = opt.optimize().eval()
    out = model.forward(xv)
    assert opt.history[-1]["Loss"] == pytest.approx(CrossEntropyLoss().forward(out, yv), rel=1e-5)
    assert opt.history[-1]["Top1Accuracy"] == pytest.approx(np.mean(out.argmax(1) == yv))
    assert model.training is False and opt.model is model


def test_validation_every_epoch_by_default():
    x, y = data()
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(2)).set_validation(*data(n=20, seed=9), [Loss()])
    opt.optimize()
    assert [h["step"] for h in opt.history if "Loss" in h] == [8, 16]


def test_training_log_appends_across_runs(tmp_path):
    x, y = data()
    log_path = str(tmp_path / "train.jsonl")
    for _ in range(2):
        make_optimizer(x, y, SGD(), end_trigger=MaxIteration(3)).set_training_log(log_path).optimize()
    records = read_log(log_path)
    assert [r["step"] for r in records] == [1, 2, 3, 1, 2, 3]
    assert all({"loss", "lr", "epoch", "samples", "samples_s"} <= set(r) for r in records)


def _step_of_sample(opt, sample, epochs=3):
    step = 0
    for epoch in range(epochs):
        for idx in opt.sampler.global_batches(epoch):
            step += 1
            if sample in idx:
                return step
    raise AssertionError("sample never visited")


def test_nan_input_names_the_step():
    x, y = data()
    x[37, 2] = np.nan
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(2))
    step = _step_of_sample(opt, 37)
    with pytest.raises(TrainingError, match=rf"step {step}: 1 sample\(s\) in the input batch hold NaN or Inf"):
        opt.optimize()
    assert len(opt.history) == step - 1


def test_nan_regression_target_names_the_step_not_divergence():
    x, _ = data()
    y = x[:, :2].sum(axis=1, keepdims=True)
    y[23, 0] = np.inf
    opt = LocalOptimizer(mlp((8, 6, 1), seed=0), MSELoss(), SGD(), x, y, batch_size=8,
                         end_trigger=MaxEpoch(1)).set_progress(False)
    step = _step_of_sample(opt, 23)
    with pytest.raises(TrainingError, match=rf"step {step}: 1 sample\(s\) in the target batch hold NaN or Inf"):
        opt.optimize()


def test_label_out_of_range_names_the_step_and_the_label():
    x, y = data()
    y[11] = 7
    opt = make_optimizer(x, y, SGD(), end_trigger=MaxEpoch(2))
    step = _step_of_sample(opt, 11)
    with pytest.raises(TrainingError, match=rf"step {step}: .*label 7 is out of range for 3 classes"):
        opt.optimize()


def test_divergence_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = data()
    root = str(tmp_path / "ckpt")
    opt = make_optimizer(x * 100, y, SGD(momentum=0.9), learning_rate=1e4, end_trigger=MaxEpoch(50))
    opt.set_checkpoint(root, trigger=SeveralIteration(1), keep=2)
    with pytest.raises(TrainingError, match=r"^step (\d+): .*diverged") as err:
        opt.optimize()
    failed = int(err.value.args[0].split(":")[0].split()[1])
    assert failed > 1
    last = ckpt.latest(root)
    assert ckpt.read_meta(last)["step"] == failed - 1
    assert np.isfinite(ckpt.load_model(last).parameters_flat()[0]).all()


def test_an_update_that_overflows_the_weights_is_caught_before_it_is_checkpointed(tmp_path):
    # Epoch 0 trains normally; from epoch 1 the lr is 1e39, beyond float32: the
    # loss of step 9 is still finite but its update makes the weights Inf/NaN.
    x, y = data()
    root = str(tmp_path / "ckpt")
    opt = make_optimizer(x, y, SGD(momentum=0.9), learning_rate=0.1, end_trigger=MaxEpoch(3),
                         schedule=MultiStep([1], gamma=1e40))
    opt.set_checkpoint(root, trigger=SeveralIteration(1), keep=2)
    with pytest.raises(TrainingError, match=r"^step 9: .*(NaN|Inf).*diverged"):
        opt.optimize()
    assert ckpt.read_meta(ckpt.latest(root))["step"] == 8
    assert np.isfinite(ckpt.load_model(ckpt.latest(root)).parameters_flat()[0]).all()


def test_x_y_length_mismatch_is_a_value_error():
    x, y = data()
    with pytest.raises(ValueError, match="same number of rows.*60 and 59"):
        make_optimizer(x, y[:-1], SGD())


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"),
    (dict(learning_rate=-1.0), "learning rate"),
    (dict(partition_sizes=[30, 20]), "partition_sizes"),
])
def test_bad_settings_are_value_errors(kwargs, match):
    x, y = data()
    with pytest.raises(ValueError, match=match):
        make_optimizer(x, y, SGD(), **kwargs)


def test_x_must_be_an_array():
    _, y = data()
    with pytest.raises(ValueError, match="x: expected a numpy array"):
        make_optimizer(x=3.0, y=y, optim_method=SGD())


def test_partition_sizes_reorder_samples_as_the_distributed_engine_does():
    x, y = data()
    a = make_optimizer(x, y, SGD(), end_trigger=MaxIteration(4), partition_sizes=[20, 25, 15])
    b = make_optimizer(x, y, SGD(), end_trigger=MaxIteration(4))
    a.optimize()
    b.optimize()
    assert not np.array_equal(a.model.parameters_flat()[0], b.model.parameters_flat()[0])
    # Partition p's share of each full batch is within one sample of 8 * n_p / 60.
    ideal = 8 * np.array([20, 25, 15]) / 60
    for idx in list(a.sampler.global_batches(0))[:-1]:
        share = np.bincount(np.searchsorted([20, 45], idx, side="right"), minlength=3)
        assert np.all(np.abs(share - ideal) < 1), share


class TorchLeNet5(torch.nn.Module):
    """torch LeNet-5 on NHWC input, flattening in NHWC order as ours does."""

    def __init__(self, model):
        super().__init__()
        self.convs = torch.nn.ModuleList([torch.nn.Conv2d(1, 6, 5), torch.nn.Conv2d(6, 16, 5)])
        self.fcs = torch.nn.ModuleList([torch.nn.Linear(256, 120), torch.nn.Linear(120, 84), torch.nn.Linear(84, 10)])
        with torch.no_grad():
            for p, (_, w) in zip(self.parameters(), model.named_parameters()):
                p.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1) if w.ndim == 4 else w)))

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        for conv in self.convs:
            x = torch.max_pool2d(torch.relu(conv(x)), 2)
        x = x.permute(0, 2, 3, 1).reshape(len(x), -1)
        x = torch.relu(self.fcs[0](x))
        return self.fcs[2](torch.relu(self.fcs[1](x)))


def test_lenet5_on_mnist_matches_torch_and_learns():
    mnist = pytest.importorskip("bigdl_py.data.mnist")
    try:
        x_train, y_train, x_test, y_test = mnist.load_mnist()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    x, y = x_train[:384], y_train[:384]
    xv, yv = x_test[:200], y_test[:200]
    opt = LocalOptimizer(lenet5(seed=0), CrossEntropyLoss(), SGD(momentum=0.9), x, y, batch_size=32,
                         end_trigger=MaxEpoch(3), learning_rate=0.05).set_progress(False)
    opt.set_validation(xv, yv, [Top1Accuracy(), Loss()], trigger=EveryEpoch())
    net = TorchLeNet5(opt.model)
    topt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, foreach=False)
    torch_losses = []
    for epoch in range(3):
        for idx in opt.sampler.global_batches(epoch):
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
            loss.backward()
            topt.step()
            torch_losses.append(loss.item())
    opt.optimize()
    assert len(opt.history) == 36
    np.testing.assert_allclose([h["loss"] for h in opt.history], torch_losses, rtol=1e-4)
    for (_, ours), theirs in zip(opt.model.named_parameters(), net.parameters()):
        theirs = theirs.detach().numpy()
        np.testing.assert_allclose(ours, theirs.transpose(2, 3, 1, 0) if ours.ndim == 4 else theirs,
                                   rtol=1e-4, atol=1e-5)
    accs = [h["Top1Accuracy"] for h in opt.history if "Top1Accuracy" in h]
    assert len(accs) == 3 and accs[-1] > 0.25, accs  # chance is 0.1


def test_time_outside_the_iterations_is_reported_by_phase(tmp_path):
    x, y = data(64)
    opt = make_optimizer(x, y, SGD(), batch_size=16, end_trigger=MaxEpoch(2))
    opt.set_validation(x, y, [Top1Accuracy()], trigger=EveryEpoch())
    opt.set_checkpoint(str(tmp_path / "ckpt"), trigger=EveryEpoch(), keep=1)
    opt.set_training_log(str(tmp_path / "train.jsonl"))
    opt.optimize()
    assert set(opt.outside_ms) == {"start", "validation", "checkpoints", "final_weights"}
    assert all(v >= 0 for v in opt.outside_ms.values())
    assert opt.outside_ms["checkpoints"] > 0  # two checkpoints were written
    validated = [e for e in opt.history if "validation_ms" in e]
    assert [e["step"] for e in validated] == [4, 8]  # once per epoch, in the entries that carry the scores
    assert all("Top1Accuracy" in e for e in validated)
    assert sum(e["validation_ms"] for e in validated) == pytest.approx(opt.outside_ms["validation"])
    log = read_log(str(tmp_path / "train.jsonl"))
    assert [r["validation_ms"] for r in log if "Top1Accuracy" in r] == [e["validation_ms"] for e in validated]
