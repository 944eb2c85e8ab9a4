"""The study scripts (peers, large batch, scaling model) run end to end with tiny sizes and print well-formed, consistent JSON lines."""
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tests.jvm import mllib_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "scripts")


def has_ring():
    from bigdl_py.engine.distri import DistriOptimizer
    return "sync" in inspect.signature(DistriOptimizer.__init__).parameters


def run_script(name, *args, timeout=900, env=None):
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(SCRIPTS, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.spark
def test_bench_distributed_measures_both_task_modes_and_backends():
    syncs = ["blockmanager", "ring"] if has_ring() else ["blockmanager"]
    lines = run_script("bench_distributed.py", "--train-rows", "2048", "--test-rows", "500", "--batches", "1024",
                       "--modes", "core", "executor", "--syncs", *syncs)
    floors = [line for line in lines if line.get("floor")]
    cases = [line for line in lines if line.get("case")]
    assert [f["mode"] for f in floors] == ["core", "executor"]
    assert all(f["trivial_job_ms"] > 0 and f["trivial_shuffle_job_ms"] > 0 for f in floors)
    assert [(c["mode"], c["sync"]) for c in cases] == [(m, s) for m in ("core", "executor") for s in syncs]
    for c in cases:
        assert c["iterations"] == 2 and c["batch"] == 1024
        assert 0 < c["test_accuracy"] <= 1 and c["samples_s"] > 0
        assert c["wall_ms"] >= c["compute_ms"] > 0
        assert c["target_met"] == (c["samples_s"] >= 3000 and c["test_accuracy"] >= 0.925)
    assert "anchor" in lines[-1]


def test_bench_large_batch_reports_both_runs_the_gap_and_a_distributed_run_equal_to_the_local_one():
    lines = run_script("bench_large_batch.py", "--train-rows", "2048", "--test-rows", "500", "--epochs", "1",
                       "--small-batch", "128", "--large-batch", "1024", "--warmup-epochs", "0.5", "--threads", "1",
                       "--check-iterations", "2", "--lars-exclude", "on")
    small, large, summary, check = lines
    assert (small["batch"], large["batch"]) == (128, 1024)
    assert (small["iterations"], large["iterations"]) == (16, 2)
    assert large["recipe"] == ("large_batch_recipe(lars+linear scaling+warmup+poly, "
                               "biases and batch norm outside the trust ratio)")
    assert summary["gap_points"] == pytest.approx(100 * (small["test_accuracy"] - large["test_accuracy"]), abs=0.01)
    assert summary["within_half_point"] == (summary["gap_points"] <= 0.5)
    assert check["distributed_check"] and check["iterations"] == 2 and check["equal"], check


def test_bench_large_batch_resnet20_recipe_can_zero_init_the_residual_scales():
    lines = run_script("bench_large_batch.py", "--models", "resnet20", "--train-rows", "256", "--test-rows", "64",
                       "--epochs", "1", "--warmup-epochs", "0.5", "--small-batch", "32", "--large-batch", "128", "--runs", "large",
                       "--threads", "1", "--check-iterations", "0", "--zero-init-residual", "on", "--power", "1")
    (large,) = lines
    assert (large["model"], large["batch"], large["iterations"], large["workers"]) == ("resnet20", 128, 2, 32)
    assert large["recipe"] == ("large_batch_recipe(lars+linear scaling+warmup+poly^1, "
                               "residual branches' last batch-norm scale at 0)")
    assert 0 <= large["test_accuracy"] <= 1
    bench = load_script("bench_large_batch.py")
    args = dict(small_batch=256, warmup_epochs=None, large_base_lr=None, lars_exclude=None, trust=None, power=2.0)
    assert bench.model_settings("resnet20", SimpleNamespace(**args, zero_init_residual="on"))["zero_init_residual"]
    with pytest.raises(SystemExit, match="lenet5 has no residual blocks"):
        bench.model_settings("lenet5", SimpleNamespace(**args, zero_init_residual="on"))


@pytest.mark.spark
@pytest.mark.slow
def test_bench_peers_runs_every_system_on_the_mlp_case():
    # The MLP case only: it has every system (MLlib too); LeNet-5 runs the same functions with
    # another model, and each case costs two TorchDistributor launches (the suite's time budget).
    lines = run_script("bench_peers.py", "--cases", "mlp", "--mlp-rows", "4096", "--test-rows", "1000",
                       "--batch", "512", "--mllib-iterations", "3", timeout=600, env=mllib_env())
    by_key = {(line["model"], line["system"]): line for line in lines}
    expected = {("mlp", s) for s in ("ours-ring", "ours-blockmanager", "torch-distributor", "mllib-mlp")}
    assert set(by_key) == expected
    for key, line in by_key.items():
        if "skipped" in line:
            assert key[1] == "ours-ring" and not has_ring(), line
            continue
        assert line["samples_s"] > 0 and line["wall_s"] > 0 and 0 <= line["test_accuracy"] <= 1, line
    # 8 iterations of batch 512 on 4096 rows; everyone sees the same rows
    assert by_key[("mlp", "ours-blockmanager")]["iterations"] == 8
    assert by_key[("mlp", "torch-distributor")]["iterations"] == 8
    # the synthetic table is learnable: even a few iterations beat chance
    assert by_key[("mlp", "torch-distributor")]["test_accuracy"] > 0.6


def test_tabular_labels_come_from_a_fixed_teacher_and_are_balanced():
    peers = load_script("bench_peers.py")
    x, y = peers.tabular(20000, seed=0)
    x2, y2 = peers.tabular(20000, seed=0)
    assert x.shape == (20000, 64) and x.dtype == np.float32
    np.testing.assert_array_equal(y, y2)
    assert 0.35 < y.mean() < 0.65
    _, y_other = peers.tabular(20000, seed=1)  # another sample of the same teacher
    assert 0.35 < y_other.mean() < 0.65


def test_scaling_model_extrapolates_writes_table_and_plot_and_checks_its_local_predictions(tmp_path):
    model = load_script("scaling_model.py")
    one_way, socket_bw = model.socket_link(quick=True)
    assert 0 < one_way < 0.05 and socket_bw > 1e7
    cal = dict(machine_cores=2, compute_s_per_sample={"lenet5": 2e-4, "resnet50_sized": 0.3,
                                                      "efficientnet_lite0": 0.05},
               params={"lenet5": 61706, "efficientnet_lite0": 4_652_008}, socket_one_way_s=one_way,
               socket_bytes_s=socket_bw, job_a_s=0.05, job_b_s_per_task=0.002, spark_block_bytes_s=2e8,
               batch_per_executor=512, runs={"blockmanager/2": dict(wall_s=0.2, compute_s=0.1)})
    rows = model.extrapolate(cal)
    assert len(rows) == len(model.MODELS) * 2 * 2 * len(model.NODES)
    bm = [r for r in rows if (r["model"], r["backend"], r["link_gbit"]) == ("lenet5", "blockmanager", 10)]
    ring = [r for r in rows if (r["model"], r["backend"], r["link_gbit"]) == ("lenet5", "ring", 10)]
    # per-task scheduling grows with N: the block-manager iteration only gets slower, efficiency only drops
    assert all(a["efficiency"] > b["efficiency"] for a, b in zip(bm, bm[1:]))
    assert bm[-1]["sync_s"] > 0.002 * 512
    assert all(r["efficiency"] > b["efficiency"] for r, b in zip(ring, bm))
    # the block-manager term by hand at N=2: a + 2b + 2 M (1/2) / bw
    expected = 0.05 + 0.004 + 2 * 4 * 61706 * 0.5 / 2e8
    assert bm[0]["sync_s"] == pytest.approx(expected)
    (check,) = model.local_check(cal)
    predicted = 2e-4 * 512 + expected
    assert check["predicted_s"] == pytest.approx(predicted, abs=1e-4)
    assert check["error_pct"] == pytest.approx(100 * (predicted - 0.2) / 0.2, abs=0.1)
    table = model.write_outputs(rows, str(tmp_path))
    assert "| lenet5 | ring | 25 Gbit |" in table
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((tmp_path / "table.json").read_text())) == len(rows)


@pytest.mark.spark
def test_scaling_model_spark_constants_fit_job_latency_to_task_count(spark):
    model = load_script("scaling_model.py")
    consts = model.spark_constants(spark.sparkContext, executors=2, quick=True)
    assert set(consts["job_s_by_tasks"]) == {"2", "4", "8"}
    assert consts["job_a_s"] + 8 * consts["job_b_s_per_task"] > 0
    assert consts["spark_block_bytes_s"] > 1e6
