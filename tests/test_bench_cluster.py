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
               "two_stage_job_ms",
               "first_iteration_ms", "outside_iterations_s", "outside_ms"}


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
    timed = [dict(line, two_stage_job_ms=ms) for line, ms in zip(lines[2:], (250.0, 200.0))]
    assert load_bench().summary(timed)["ratios"]["blockmanager"]["two_stage_job_cluster_over_local"] == 0.8


def test_every_jvm_of_both_systems_gets_the_jvm_options_unless_they_are_empty():
    bench = load_bench()
    assert bench.parse_args([]).jvm_options == bench.JVM_OPTIONS
    assert bench.jvm_conf("-XX:TieredStopAtLevel=1") == {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
                                                          "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
    assert bench.jvm_conf("") == {}


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
    assert cluster["jvm_options"] == load_bench().JVM_OPTIONS
    assert {(r["system"], r["sync"]) for r in results} == {
        (system, sync) for system in ("cluster", "local[3]") for sync in ("blockmanager", "ring")}
    for r in results:
        assert RESULT_KEYS | SPLIT <= r.keys(), r
        assert r["iterations"] == 2 and r["train_rows"] == 1024 and r["test_rows"] == 256
        assert r["samples_s"] > 0 and r["steady_samples_s"] > 0 and 0 <= r["test_accuracy"] <= 1
        assert r["median_compute_ms"] > 0 and r["median_wall_ms"] > 0
        assert set(r["outside_ms"]) == {"start", "validation", "checkpoints", "final_weights"}, r
        assert ("input" in r["start_split_ms"]) == (r["sync"] == "ring"), r
        assert r["master"].startswith("spark://127.0.0.2:") if r["system"] == "cluster" else r["master"] == "local[3]"
    assert summary["summary"] is True and set(summary["ratios"]) == {"blockmanager", "ring"}
    for sync, ratio in summary["ratios"].items():
        cluster_line, local_line = (next(r for r in results if r["system"] == s and r["sync"] == sync)
                                    for s in ("cluster", "local[3]"))
        assert ratio["cluster_over_local"] == pytest.approx(cluster_line["samples_s"] / local_line["samples_s"],
                                                            abs=1e-3)
        assert ratio["target_met"] == (ratio["cluster_over_local"] >= 1 / 1.3)


def event(kind, **fields):
    return dict(Event=kind, **fields)


def stage_events(job, sid, name, submitted, tasks):
    """A stage that ran `tasks` [(launch, finish, deserialize, run, fetch_wait)] in job `job`."""
    out = [event("SparkListenerTaskEnd", **{"Stage ID": sid, "Task Info": {"Launch Time": launch, "Finish Time": finish,
                                                                           "Host": "127.0.0.3"},
                                           "Task Metrics": {"Executor Deserialize Time": deser, "Executor Run Time": run,
                                                            "Shuffle Read Metrics": {"Fetch Wait Time": fetch}}})
           for launch, finish, deser, run, fetch in tasks]
    completed = max(t[1] for t in tasks) + 1
    return out + [event("SparkListenerStageCompleted", **{"Stage Info": {
        "Stage ID": sid, "Stage Name": name, "Submission Time": submitted, "Completion Time": completed}})]


def test_spark_timeline_splits_block_manager_iterations_and_ring_launch_waits(tmp_path):
    sys.path.insert(0, os.path.dirname(BENCH))
    try:
        import spark_timeline
    finally:
        sys.path.remove(os.path.dirname(BENCH))
    update, compute = "partitionBy at /x/bigdl_py/sync/blockmanager.py:215", "partitionBy at /x/bigdl_py/sync/blockmanager.py:183"
    events = [event("SparkListenerJobStart", **{"Job ID": 0, "Stage IDs": [0, 1]}),
              *stage_events(0, 0, update, 100, [(105, 205, 50, 40, 30), (106, 180, 20, 50, 0)]),
              *stage_events(0, 1, compute, 210, [(212, 312, 10, 80, 5)]),
              event("SparkListenerJobStart", **{"Job ID": 1, "Stage IDs": [2]}),  # validation: one stage
              *stage_events(1, 2, update, 400, [(401, 402, 0, 1, 0)]),
              event("SparkListenerJobStart", **{"Job ID": 2, "Stage IDs": [3]}),
              *stage_events(2, 3, "collect at /x/bigdl_py/engine/ring_driver.py:145", 1000,
                            [(4600, 9000, 5, 4000, 0), (4601, 9000, 5, 4000, 0)])]
    folder = tmp_path / "eventlog_v2_app-1"
    folder.mkdir()
    (folder / "events_1_app-1").write_text("".join(json.dumps(e) + "\n" for e in events))
    found = spark_timeline.summary(str(tmp_path))
    split = found["blockmanager_iteration"]
    assert split["iterations"] == 1 and split["median_job_ms"] == 313 - 100
    assert split["update_stage"] == dict(launch_wait_ms=5, span_ms=100, deserialize_ms=50, run_ms=50, fetch_wait_ms=30,
                                         task_rest_ms=10)
    assert split["compute_stage"]["deserialize_ms"] == 10 and split["compute_stage"]["run_ms"] == 80
    assert found["ring_launch_wait_ms"] == [3601]
    (folder / "events_2_app-1.zstd").write_bytes(b"\x28\xb5")
    with pytest.raises(ValueError, match="compress=false"):
        spark_timeline.summary(str(tmp_path))
