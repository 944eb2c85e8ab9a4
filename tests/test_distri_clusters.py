"""DistriOptimizer on real clusters: local-cluster, standalone, executor loss, driver loss.

Each training run is scripts/distri_job.py in a subprocess (one SparkContext per
process); its final weights must equal the LocalOptimizer oracle trained in this
process on the same partition sizes, which is also what an uninterrupted run gives
(test_distri_equivalence.py). A lost executor or driver must not change a weight
beyond float32 round-off: recovery replays exactly the same iterations.
"""
import importlib.util
import json
import os
import re
import signal

import numpy as np
import pytest

from tests.cluster_fixtures import (JOB, Process, alive, job_command, job_summary, kill_an_executor_while_paused,
                                   run_job, wait_until)
from tests.cluster_fixtures import standalone_cluster  # noqa: F401  (module-scoped fixture)

pytestmark = [pytest.mark.slow, pytest.mark.spark]
SYNCS = ["blockmanager", "ring"]

JOB_TIMEOUT = 300  # seconds for one training run on a loaded 2-core machine


def _load_job_module():
    spec = importlib.util.spec_from_file_location("distri_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


distri_job = _load_job_module()


def job_args(tmp_path, sizes="90,0,121", iterations=20, optim="adam", model="mlp", **extra):
    """Command-line arguments for one run; the same list configures the oracle."""
    args = ["--model", model, "--sizes", sizes, "--iterations", iterations, "--optim", optim,
            "--out", tmp_path / "weights.npy",
            "--cache-root", tmp_path / "cache", "--log", tmp_path / "train.jsonl",
            "--lineage-root", tmp_path / "lineage"]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", value]
    return [str(a) for a in args]


def assert_equals_oracle(args, weights_path):
    """The job's final weights == LocalOptimizer's on the same partition sizes (1e-5 relative)."""
    parsed = distri_job.parse_args(args)
    oracle = distri_job.oracle_weights(parsed)
    initial = distri_job.make_model(parsed.model).parameters_flat()[0]
    assert np.abs(oracle - initial).max() > 1e-3, "training did not move the weights"
    weights = np.load(weights_path, allow_pickle=False)
    assert weights.shape == oracle.shape
    rel = np.abs(weights - oracle).max() / np.abs(oracle).max()
    assert rel < 1e-5, f"max relative difference to the local oracle {rel:.3g}"


def steps_in_log(path):
    with open(path) as f:
        return [json.loads(line)["step"] for line in f if line.strip()]


@pytest.mark.parametrize("sync", SYNCS)
def test_local_cluster_two_executors_equals_local_oracle(tmp_path, sync):
    args = job_args(tmp_path, sync=sync)  # P=3, uneven, one empty partition, Adam
    _, summary = run_job(tmp_path, "local-cluster", "--master", "local-cluster[2,1,1024]", *args,
                         timeout=JOB_TIMEOUT)
    assert (summary["first_step"], summary["last_step"]) == (1, 20)
    assert_equals_oracle(args, tmp_path / "weights.npy")


# Before the standalone tests: the module's cluster starts with the first of them.
@pytest.mark.parametrize("sync", SYNCS)
def test_driver_killed_then_resumed_from_checkpoint_gives_the_same_weights(tmp_path, sync):
    marker, ckpt_dir = tmp_path / "paused.json", tmp_path / "ckpt"
    base = ["--master", "local[2]", *job_args(tmp_path, iterations=10, checkpoint_dir=ckpt_dir,
                                               checkpoint_every=3, sync=sync)]
    # The paused driver holds iteration 7 done and ckpt-6 written; its go file never appears
    # (without one it would not wait, and a ring run finishes 8-10 before the kill lands).
    first = Process(job_command(*base, "--pause-after", 7, "--marker", marker, "--go", tmp_path / "never"),
                    tmp_path / "first.log")
    try:
        wait_until(marker.exists, JOB_TIMEOUT, "the first run to finish iteration 7", watch=[first])
        checkpoints = sorted(p for p in os.listdir(ckpt_dir) if p.startswith("ckpt-"))
        assert checkpoints and checkpoints[-1] == "ckpt-0000000006", checkpoints
        driver = json.loads(marker.read_text())["pid"]
        assert driver == first.pid
        os.kill(driver, signal.SIGKILL)
        wait_until(lambda: not alive(driver), 30, "the driver to die")
    finally:
        first.kill()
    assert steps_in_log(tmp_path / "train.jsonl") == list(range(1, 8))
    _, summary = run_job(tmp_path, "resumed", *base, "--resume", timeout=JOB_TIMEOUT)
    assert (summary["first_step"], summary["last_step"]) == (7, 10)  # iteration 7 replayed from ckpt-6
    assert_equals_oracle(base, tmp_path / "weights.npy")


@pytest.mark.parametrize("sync", SYNCS)
def test_standalone_cluster_spark_submit_equals_local_oracle(tmp_path, standalone_cluster, sync):
    args = job_args(tmp_path, sizes="60,151,0", iterations=12, optim="sgd", model="lenet", sync=sync)
    _, summary = run_job(tmp_path, "standalone", *args, submit_master=standalone_cluster.url, timeout=JOB_TIMEOUT)
    assert summary["last_step"] == 12
    assert_equals_oracle(args, tmp_path / "weights.npy")


@pytest.mark.parametrize("sync", SYNCS)
def test_executor_killed_mid_training_recovers_to_the_same_weights(tmp_path, standalone_cluster, sync):
    marker, go = tmp_path / "paused.json", tmp_path / "go"
    # ring: the barrier stage fails, a new one starts from the last recovery checkpoint (step 4)
    args = job_args(tmp_path, iterations=10, pause_after=5, marker=marker, go=go, sync=sync, lineage_every=4)
    proc = Process(job_command(*args, submit_master=standalone_cluster.url), tmp_path / "job.log")
    try:
        # One executor per worker (an earlier application's may still be shutting down); iterations
        # 6.. run with the weight/state slices and shuffle files the killed one held gone.
        code = kill_an_executor_while_paused(proc, marker, go, standalone_cluster.executor_pids, 2, JOB_TIMEOUT)
        assert code == 0, f"job failed after the executor loss:\n{proc.log()[-3000:]}"
        summary = job_summary(proc)
    finally:
        proc.kill()
    assert summary["last_step"] == 10
    assert steps_in_log(tmp_path / "train.jsonl") == list(range(1, 11))
    # The driver saw the executor go, and the master gave the application a replacement.
    assert "Lost executor" in proc.log(), proc.log()[-3000:]
    master_log = standalone_cluster.master.log()
    removed = re.findall(r"Removing executor (app-[\d-]+)/\d+ because it is EXITED", master_log)
    assert removed, master_log[-3000:]
    assert master_log.count(f"Launching executor {removed[-1]}/") == 3, master_log[-3000:]
    assert_equals_oracle(args, tmp_path / "weights.npy")
