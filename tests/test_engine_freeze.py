"""Frozen parameters keep their bits through training, in every engine; the rest trains as the oracle.

Optimizers with weight decay and momentum (SGD) or moments (Adam) would move a
parameter even with a zero gradient, so these tests catch a frozen parameter that
only has its gradient zeroed. The local engine is checked against torch with
requires_grad=False on the same layers, the distributed backends (local[2]) against
the local engine (the same samples per partition).
"""
import numpy as np
import pytest
import torch

from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import SGD, Adam, MaxIteration
from tests.test_distri_equivalence import partitioned_df

# Linear "0", ReLU, Linear "2", ReLU, Linear "4": 22,435 weights (90 kB), so the ring
# backend takes its reduce-scatter path with the layer-by-layer overlapped backward.
SIZES = [8, 160, 128, 3]
ITERATIONS = 12
LR = 0.05

# (ours, torch class, torch kwargs)
OPTIMIZERS = {
    "sgd-momentum-wd": (SGD(momentum=0.9, weight_decay=0.01), torch.optim.SGD,
                        {"momentum": 0.9, "weight_decay": 0.01}),
    "adam-wd": (Adam(weight_decay=0.01), torch.optim.Adam, {"weight_decay": 0.01}),
}
# Frozen below every trainable layer (no backward there at all), or between trainable ones.
FROZEN = {"bottom": ("0",), "middle": ("2",), "bottom-two": ("0", "2")}


def data(n=90):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, SIZES[0])).astype(np.float32)
    return x, (np.abs(x[:, :3]).argmax(axis=1)).astype(np.int64)


def frozen_model(names):
    model = zoo.mlp(SIZES, seed=1).freeze(*names)
    model.parameters_flat()
    return model


def frozen_mask(model):
    mask = np.zeros(model.num_parameters(), dtype=bool)
    for lo, hi in model.frozen_ranges():
        mask[lo:hi] = True
    return mask


def torch_copy(model, frozen_names):
    a, b, c, d = SIZES
    net = torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.ReLU(), torch.nn.Linear(b, c), torch.nn.ReLU(),
                              torch.nn.Linear(c, d))
    ours = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.from_numpy(ours[name].copy()))
            p.requires_grad_(name.split(".")[0] not in frozen_names)
    return net


@pytest.mark.parametrize("frozen", FROZEN.values(), ids=FROZEN.keys())
@pytest.mark.parametrize("optim", OPTIMIZERS.keys())
def test_local_engine_leaves_frozen_bits_and_trains_the_rest_as_torch(optim, frozen):
    ours, torch_cls, kwargs = OPTIMIZERS[optim]
    x, y = data()
    model = frozen_model(frozen)
    initial = model.parameters_flat()[0].copy()
    net = torch_copy(model, frozen)
    opt = LocalOptimizer(model, CrossEntropyLoss(), ours, x, y, batch_size=16, end_trigger=MaxIteration(ITERATIONS),
                         learning_rate=LR).set_progress(False)
    topt = torch_cls(net.parameters(), lr=LR, foreach=False, **kwargs)
    batches = [b for epoch in range(3) for b in opt.sampler.global_batches(epoch)][:ITERATIONS]
    for idx in batches:
        topt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])).backward()
        topt.step()
    opt.optimize()
    weights, mask = model.parameters_flat()[0], frozen_mask(model)
    assert mask.any() and not mask.all()
    assert weights[mask].tobytes() == initial[mask].tobytes()
    assert np.abs(weights[~mask] - initial[~mask]).max() > 1e-3, "training did not move the trainable weights"
    expected = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.spark
@pytest.mark.parametrize("sync", ["blockmanager", "ring"])
@pytest.mark.parametrize("optim, frozen", [("sgd-momentum-wd", "middle"), ("adam-wd", "bottom")])
def test_distributed_backends_leave_frozen_bits_and_train_the_rest_as_the_local_engine(spark, optim, frozen, sync):
    ours, names = OPTIMIZERS[optim][0], FROZEN[frozen]
    x, y = data()
    sizes = [40, 50]
    local = frozen_model(names)
    initial = local.parameters_flat()[0].copy()
    LocalOptimizer(local, CrossEntropyLoss(), ours, x, y, batch_size=16, end_trigger=MaxIteration(ITERATIONS),
                   learning_rate=LR, seed=7, partition_sizes=sizes).set_progress(False).optimize()
    distri = DistriOptimizer(frozen_model(names), CrossEntropyLoss(), ours, partitioned_df(spark, x, y, sizes),
                             batch_size=16, end_trigger=MaxIteration(ITERATIONS), learning_rate=LR, seed=7,
                             num_partitions=len(sizes), sync=sync)
    trained = distri.optimize()
    weights, mask = trained.parameters_flat()[0], frozen_mask(trained)
    assert mask.any() and not mask.all()
    assert weights[mask].tobytes() == initial[mask].tobytes()
    w_local = local.parameters_flat()[0]
    assert np.abs(w_local[~mask] - initial[~mask]).max() > 1e-3, "training did not move the trainable weights"
    np.testing.assert_allclose(weights, w_local, rtol=1e-5, atol=1e-6)
