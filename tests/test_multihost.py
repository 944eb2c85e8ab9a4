"""The simulated multi-host cluster is what a real one is: separate addresses, no shared /tmp.

These tests check the fixture itself (tests/multihost.py); training on it lives beside them.
"""
import json
import os

import pytest

from tests.cluster_fixtures import JOB, Process, kill_an_executor_while_paused
from tests.multihost import MASTER_HOST, WORKER_HOSTS, isolated_hosts  # noqa: F401  (module-scoped fixture)

pytestmark = [pytest.mark.slow, pytest.mark.spark]
JOB_TIMEOUT_S = 240


def run_submitted(cluster, tmp_path, name, script, *args, conf=None):
    """spark-submit `script` (with `conf`) to the cluster and return its last JSON line (log: name.log)."""
    proc = Process(cluster.submit_command(script, *args, conf=conf), tmp_path / f"{name}.log")
    try:
        code = proc.wait(JOB_TIMEOUT_S)
        assert code == 0, f"{name} exited with {code}:\n{proc.log()[-4000:]}"
        # The last JSON object printed; the JVM's log lines share the file and may follow it on its line.
        for line in reversed(proc.log().splitlines()):
            if line.startswith("{"):
                try:
                    return json.JSONDecoder().raw_decode(line)[0]
                except json.JSONDecodeError:
                    continue
        pytest.fail(f"{name} printed no JSON line:\n{proc.log()[-4000:]}")
    finally:
        proc.kill()


def test_each_host_has_a_private_tmp_and_all_share_one_folder(isolated_hosts, tmp_path):
    probe = os.path.join(os.path.dirname(__file__), "multihost_probe.py")
    seen = run_submitted(isolated_hosts, tmp_path, "probe", probe, isolated_hosts.shared, len(WORKER_HOSTS))
    executors = sorted(seen["executors"], key=lambda r: r["rank"])
    assert sorted(r["host"] for r in executors) == sorted(WORKER_HOSTS)  # one task per host
    for r in executors:
        assert r["private"] == [f"bigdl_py-isolation-{r['rank']}"], r  # its own marker, nobody else's
        assert r["shared"] == [f"bigdl_py-isolation-{k}" for k in range(len(WORKER_HOSTS))], r
        assert r["tempdir"] == "/tmp/python"
    assert seen["driver_private"] == []  # the driver's /tmp holds none of the executors' files
    assert sorted(os.listdir(isolated_hosts.shared)) == [f"bigdl_py-isolation-{k}" for k in range(3)]
    assert isolated_hosts.url.startswith(f"spark://{MASTER_HOST}:")


def test_data_training_and_updates_spread_over_the_hosts_from_a_one_partition_dataframe(isolated_hosts, tmp_path):
    """Each data partition is cached on its own host, trained there, and slice s is updated where
    partition s is, however few executors the DataFrame's partitions were on; the ring's ranks
    run one per host."""
    probe = os.path.join(os.path.dirname(__file__), "placement_probe.py")
    # A long locality wait makes Spark follow the tasks' preferences strictly, so the placement
    # seen is the one the code asks for, not the luck of which executor was free first.
    seen = run_submitted(isolated_hosts, tmp_path, "placement", probe, len(WORKER_HOSTS), str(tmp_path / "cache"),
                         conf={"spark.locality.wait": "30s"})
    assert len(seen["cached_on"]) == 1, seen
    assert sorted(seen["tokens"]) == sorted(WORKER_HOSTS), seen
    assert seen["validation_tokens"] == seen["tokens"], seen
    assert seen["compute"] == seen["tokens"], seen
    assert seen["update"] == seen["tokens"], seen
    # The ring's barrier tasks, one per host, start without waiting out the locality delay.
    assert sorted(seen["ring"]) == sorted(WORKER_HOSTS) and seen["ring_s"] < 15, seen


def train_on_hosts(cluster, tmp_path, sync, cache_root):
    """scripts/distri_job.py (MLP, three uneven partitions) on the hosts; asserts the oracle's weights."""
    from tests.test_distri_clusters import assert_equals_oracle, job_args

    args = job_args(tmp_path, iterations=8, sync=sync)
    args[args.index("--cache-root") + 1] = cache_root
    args[args.index("--lineage-root") + 1] = f"{cluster.shared}/lineage-{sync}"
    summary = run_submitted(cluster, tmp_path, f"train-{sync}", JOB, *args)
    assert summary["last_step"] == 8 and summary["sync"] == sync
    assert_equals_oracle(args, tmp_path / "weights.npy")


@pytest.mark.parametrize("sync", ["blockmanager", "ring"])
def test_training_with_a_shared_cache_folder_equals_the_local_oracle(isolated_hosts, tmp_path, sync):
    train_on_hosts(isolated_hosts, tmp_path, sync, f"{isolated_hosts.shared}/cache-{sync}")


@pytest.mark.parametrize("sync", ["blockmanager", "ring"])
def test_training_with_the_default_cache_folder_equals_the_local_oracle(isolated_hosts, tmp_path, sync):
    train_on_hosts(isolated_hosts, tmp_path, sync, str(tmp_path / "driver-only-cache"))


@pytest.mark.parametrize("sync", ["blockmanager", "ring"])
def test_a_host_losing_its_executor_mid_training_still_gives_the_oracle_weights(isolated_hosts, tmp_path, sync):
    """blockmanager: the lost executor's data tokens, slices and shuffle files are recomputed on the
    hosts that run their tasks next; ring: the stage restarts from the last checkpoint (shared folder)."""
    from tests.test_distri_clusters import assert_equals_oracle, job_args, steps_in_log

    marker, go = tmp_path / "paused.json", tmp_path / "go"
    args = job_args(tmp_path, iterations=10, pause_after=5, marker=marker, go=go, sync=sync,
                    checkpoint_dir=f"{isolated_hosts.shared}/ckpt-{sync}", checkpoint_every=3)
    args[args.index("--cache-root") + 1] = str(tmp_path / "driver-only-cache")
    args[args.index("--lineage-root") + 1] = f"{isolated_hosts.shared}/lineage-killed-{sync}"
    proc = Process(isolated_hosts.submit_command(JOB, *args), tmp_path / "job.log")
    try:
        code = kill_an_executor_while_paused(proc, marker, go, isolated_hosts.executor_pids, 3, JOB_TIMEOUT_S)
        assert code == 0, f"job failed after the executor loss:\n{proc.log()[-4000:]}"
    finally:
        proc.kill()
    assert "Lost executor" in proc.log(), proc.log()[-3000:]
    assert steps_in_log(tmp_path / "train.jsonl") == list(range(1, 11))
    assert_equals_oracle(args, tmp_path / "weights.npy")
