"""DistriOptimizer == LocalOptimizer: exact synchronous SGD over Spark partitions.

The distributed run and the local oracle see the same partition sizes and seed, so
they train on the same samples in the same iterations; their weights must agree to
float32 round-off after 20 iterations. Every test runs for both sync backends
(the MLP's 195 weights take the ring backend's butterfly path, LeNet-5's 44,426
the ring reduce-scatter/all-gather path with overlapped buckets).
"""
import numpy as np
import pytest

from bigdl_py.engine import BlockManager, DistriOptimizer, LocalOptimizer
from bigdl_py.nn import CrossEntropyLoss, zoo
from bigdl_py.optim import LARS, SGD, Adam, MaxIteration, Top1Accuracy, lars_exclude

pytestmark = pytest.mark.spark

ITERATIONS = 20


def partitioned_df(spark, x, y, sizes):
    """A DataFrame whose partition p holds exactly rows [offset_p, offset_p + sizes[p])."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = [[(x[i].reshape(-1).tolist(), float(y[i])) for i in range(offsets[p], offsets[p + 1])]
            for p in range(len(sizes))]
    rdd = spark.sparkContext.parallelize(range(len(sizes)), len(sizes)).flatMap(lambda p: rows[p])
    return spark.createDataFrame(rdd, "features array<float>, label double")


SYNCS = ["blockmanager", "ring"]


def train_both(spark, make_model, optim, x, y, sizes, batch_size, feature_shape, sync="blockmanager"):
    local = make_model()
    LocalOptimizer(local, CrossEntropyLoss(), optim, x, y, batch_size=batch_size,
                   end_trigger=MaxIteration(ITERATIONS), learning_rate=0.05, seed=7,
                   partition_sizes=sizes).set_progress(False).optimize()
    df = partitioned_df(spark, x, y, sizes)
    distri = DistriOptimizer(make_model(), CrossEntropyLoss(), optim, df, batch_size=batch_size,
                             end_trigger=MaxIteration(ITERATIONS), learning_rate=0.05, seed=7,
                             num_partitions=len(sizes), feature_shape=feature_shape, sync=sync)
    trained = distri.optimize()
    return local.parameters_flat()[0], trained.parameters_flat()[0], distri


def assert_same_weights(w_local, w_distri, initial):
    assert np.abs(w_local - initial).max() > 1e-3, "training did not move the weights"
    rel = np.abs(w_local - w_distri).max() / np.abs(w_local).max()
    assert rel < 1e-5, f"max relative difference {rel:.3g}"


def mlp_data(n=211):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 8)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("sizes", [[211], [100, 111], [90, 0, 121], [13, 70, 0, 128]],
                         ids=["P1", "P2", "P3-empty", "P4-uneven-empty"])
@pytest.mark.parametrize("optim", [SGD(momentum=0.9), Adam()], ids=["sgd-momentum", "adam"])
@pytest.mark.parametrize("sync", SYNCS)
def test_mlp_distributed_equals_local(spark, sizes, optim, sync):
    x, y = mlp_data()
    make = lambda: zoo.mlp([8, 16, 3], seed=1)  # noqa: E731
    # 37 divides neither the data size nor any P: uneven shares and a short last batch.
    w_local, w_distri, _ = train_both(spark, make, optim, x, y, sizes, 37, None, sync)
    assert_same_weights(w_local, w_distri, make().parameters_flat()[0])


@pytest.mark.parametrize("sync", SYNCS)
def test_lars_with_biases_excluded_distributed_equals_local(spark, sync):
    """Each slice's update knows where it sits in the flat vector, so the excluded biases
    skip the trust ratio on every executor exactly as in the local run."""
    x, y = mlp_data()
    make = lambda: zoo.mlp([8, 16, 3], seed=1)  # noqa: E731
    optim = LARS(momentum=0.9, weight_decay=1e-3, trust_coefficient=0.02, exclude=lars_exclude(make()))
    w_local, w_distri, distri = train_both(spark, make, optim, x, y, [100, 111], 37, None, sync)
    assert_same_weights(w_local, w_distri, make().parameters_flat()[0])
    assert distri.num_slices > 1


@pytest.mark.slow
@pytest.mark.parametrize("optim", [SGD(momentum=0.9), Adam()], ids=["sgd-momentum", "adam"])
@pytest.mark.parametrize("sync", SYNCS)
def test_lenet5_distributed_equals_local(spark, optim, sync):
    from bigdl_py.data.mnist import load_mnist

    x, y = load_mnist()[:2]
    x, y = x[:600], y[:600]
    make = lambda: zoo.lenet5(seed=2)  # noqa: E731
    w_local, w_distri, _ = train_both(spark, make, optim, x, y, [250, 0, 350], 50, (28, 28, 1), sync)
    assert_same_weights(w_local, w_distri, make().parameters_flat()[0])


@pytest.mark.parametrize("sync", SYNCS)
def test_iteration_metrics_show_where_time_goes_and_no_gradients_reach_the_driver(spark, sync):
    x, y = mlp_data(120)
    make = lambda: zoo.mlp([8, 16, 3], seed=1)  # noqa: E731
    df = partitioned_df(spark, x, y, [60, 60])
    opt = DistriOptimizer(make(), CrossEntropyLoss(), SGD(), df, batch_size=40,
                          end_trigger=MaxIteration(3), num_partitions=2, sync=sync)
    opt.optimize()
    assert len(opt.metrics) == 3
    n_params = make().num_parameters()
    for m in opt.metrics:
        for key in ("compute_ms", "sync_ms", "overhead_ms", "data_ms", "wall_ms"):
            assert m[key] >= 0
        assert m["samples"] == 40
        # Only a few statistics come back per iteration, never a gradient or weight vector.
        assert 0 < m["driver_bytes"] < 4 * n_params
    if sync == "ring":  # the ranks' start, phase by phase (slowest rank each), within the measured start
        phases = {"to_task", "input", "rendezvous", "warm_up_wait", "hello", "replica", "init", "all_connected"}
        assert set(opt.start_split_ms) == phases and all(v >= 0 for v in opt.start_split_ms.values())
        assert opt.start_split_ms["all_connected"] <= opt.outside_ms["start"]
    else:
        assert opt.start_split_ms == {}


def test_bf16_gradient_compression_trains_close_to_exact(spark):
    x, y = mlp_data()
    make = lambda: zoo.mlp([8, 16, 3], seed=1)  # noqa: E731
    df = partitioned_df(spark, x, y, [100, 111])
    exact = DistriOptimizer(make(), CrossEntropyLoss(), SGD(momentum=0.9), df, batch_size=37,
                            end_trigger=MaxIteration(10), learning_rate=0.05, num_partitions=2).optimize()
    packed = DistriOptimizer(make(), CrossEntropyLoss(), SGD(momentum=0.9), df, batch_size=37,
                             end_trigger=MaxIteration(10), learning_rate=0.05, num_partitions=2,
                             sync=BlockManager(compress="bf16")).optimize()
    a, b = exact.parameters_flat()[0], packed.parameters_flat()[0]
    rel = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < rel < 1e-2  # rounded (so not identical) but close


def samples_rdd(spark, x, y, sizes):
    """An RDD of (features ndarray, label) whose partition p holds rows [offset_p, offset_p + sizes[p])."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    parts = [[(x[i], int(y[i])) for i in range(offsets[p], offsets[p + 1])] for p in range(len(sizes))]
    return spark.sparkContext.parallelize(range(len(sizes)), len(sizes)).flatMap(lambda p: parts[p])


@pytest.mark.parametrize("sync", SYNCS)
def test_an_rdd_of_numpy_samples_trains_like_the_local_oracle(spark, sync):
    x, y = mlp_data(150)
    sizes = [70, 80]
    make = lambda: zoo.mlp([8, 16, 3], seed=1)  # noqa: E731
    local = make()
    LocalOptimizer(local, CrossEntropyLoss(), SGD(momentum=0.9), x, y, batch_size=37,
                   end_trigger=MaxIteration(8), learning_rate=0.05, seed=7,
                   partition_sizes=sizes).set_progress(False).optimize()
    opt = DistriOptimizer(make(), CrossEntropyLoss(), SGD(momentum=0.9), samples_rdd(spark, x, y, sizes),
                          batch_size=37, end_trigger=MaxIteration(8), learning_rate=0.05, seed=7,
                          num_partitions=2, sync=sync)
    assert opt.data.sizes == sizes
    opt.set_validation(samples_rdd(spark, x, y, sizes), [Top1Accuracy()], trigger=MaxIteration(8))
    trained = opt.optimize()
    assert_same_weights(local.parameters_flat()[0], trained.parameters_flat()[0], make().parameters_flat()[0])
    local_top1 = float((local.forward(x).argmax(axis=1) == y).mean())
    assert opt.history[-1]["Top1Accuracy"] == pytest.approx(local_top1, abs=1e-9)


def test_ring_refuses_gradient_compression_and_unknown_backends_are_named(spark):
    x, y = mlp_data(20)
    df = partitioned_df(spark, x, y, [20])
    with pytest.raises(ValueError, match=r"compress='bf16' is only supported with sync='blockmanager' \(write "
                                         r"sync=BlockManager\(compress=...\)\)"):
        DistriOptimizer(zoo.mlp([8, 3]), CrossEntropyLoss(), SGD(), df, batch_size=4, sync="ring", compress="bf16")
    with pytest.raises(ValueError, match=r"sync: expected one of \('blockmanager', 'ring', 'auto'\), .*received 'mpi'"):
        DistriOptimizer(zoo.mlp([8, 3]), CrossEntropyLoss(), SGD(), df, batch_size=4, sync="mpi")


def test_auto_picks_the_ring_for_a_small_model_and_says_why(spark, caplog):
    x, y = mlp_data(120)
    df = partitioned_df(spark, x, y, [60, 60])
    opt = DistriOptimizer(zoo.mlp([8, 16, 3], seed=1), CrossEntropyLoss(), SGD(), df, batch_size=40,
                          end_trigger=MaxIteration(2), num_partitions=2, sync="auto")
    with caplog.at_level("WARNING", logger="bigdl_py"):
        opt.optimize()
    backend, reason = opt.sync_choice
    assert backend == "ring" and "195 parameters" in reason and "measured compute" in reason
    assert "sync='auto' chose 'ring'" in caplog.text
    assert len(opt.history) == 2
