"""scripts/bench_cluster.py runs end to end on the simulated hosts and prints well-formed JSON lines."""
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "scripts", "bench_cluster.py")
SPLIT = {"median_wall_ms", "median_compute_ms", "median_sync_ms", "median_data_ms", "median_overhead_ms"}
RESULT_KEYS = {"system", "sync", "samples_s", "steady_samples_s", "test_accuracy", "iterations", "trivial_job_ms",
               "first_iteration_ms", "outside_iterations_s"}


def load_bench():
    sys.path.insert(0, os.path.dirname(BENCH))
    try:
        import bench_cluster
    finally:
        sys.path.remove(os.path.dirname(BENCH))
    return bench_cluster


def result(system, sync, samples_s, steady):
    return dict(system=system, sync=sync, samples_s=samples_s, steady_samples_s=steady)


def test_summary_compares_the_cluster_with_local3_per_backend_against_1_3x():
    lines = [result("cluster", "ring", 77.0, 50.0), result("local[3]", "ring", 100.0, 100.0),
             result("cluster", "blockmanager", 76.0, 80.0), result("local[3]", "blockmanager", 100.0, 100.0)]
    ratios = load_bench().summary(lines)["ratios"]
    assert ratios["ring"] == dict(cluster_over_local=0.77, steady_cluster_over_local=0.5, target_met=True,
                                  steady_target_met=False)
    assert ratios["blockmanager"]["cluster_over_local"] == 0.76 and not ratios["blockmanager"]["target_met"]
    assert ratios["blockmanager"]["steady_target_met"]


@pytest.mark.slow
@pytest.mark.spark
def test_quick_run_prints_one_line_per_system_and_backend_then_the_ratios():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("the simulated hosts need root and util-linux's unshare (mount namespaces)")
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--train-rows", "1024", "--test-rows", "256",
                           "--batch", "512"], capture_output=True, text=True, timeout=420, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    machine, cluster, *results, summary = [json.loads(line) for line in proc.stdout.splitlines()]
    assert machine["machine"]["cpu"] and machine["machine"]["isa"]
    assert cluster["hosts"] == ["127.0.0.3", "127.0.0.4", "127.0.0.5"]
    assert {(r["system"], r["sync"]) for r in results} == {
        (system, sync) for system in ("cluster", "local[3]") for sync in ("blockmanager", "ring")}
    for r in results:
        assert RESULT_KEYS | SPLIT <= r.keys(), r
        assert r["iterations"] == 2 and r["train_rows"] == 1024 and r["test_rows"] == 256
        assert r["samples_s"] > 0 and r["steady_samples_s"] > 0 and 0 <= r["test_accuracy"] <= 1
        assert r["median_compute_ms"] > 0 and r["median_wall_ms"] > 0
        assert r["master"].startswith("spark://127.0.0.2:") if r["system"] == "cluster" else r["master"] == "local[3]"
    assert summary["summary"] is True and set(summary["ratios"]) == {"blockmanager", "ring"}
    for sync, ratio in summary["ratios"].items():
        cluster_line, local_line = (next(r for r in results if r["system"] == s and r["sync"] == sync)
                                    for s in ("cluster", "local[3]"))
        assert ratio["cluster_over_local"] == pytest.approx(cluster_line["samples_s"] / local_line["samples_s"],
                                                            abs=1e-3)
        assert ratio["target_met"] == (ratio["cluster_over_local"] >= 1 / 1.3)
