"""Where a Spark job's time goes, read from Spark's event log: scheduling, task deserialisation
(which includes fetching the stage's task binary from the driver), run, shuffle fetch waits.

Spark's listener events carry per-task metrics that no timer in our code can see. Two views:
- `iteration_split`: the median block-manager training iteration (a job of two map stages, the
  update + all-gather and the compute + reduce-scatter), per stage;
- `barrier_starts`: for each barrier stage (the ring), how long its tasks waited to be launched.

    python scripts/spark_timeline.py EVENT_LOG_DIR_OR_FILE

The log must be uncompressed (`spark.eventLog.compress=false`); bench_cluster.py --event-log
sets that up for both systems.
"""
import json
import os
import statistics
import sys

BLOCKMANAGER_STAGE = "sync/blockmanager.py"  # call site of both stages of a block-manager iteration
RING_STAGE = "ring_driver.py"


def read_events(path):
    """The events of a log file, or of every events_* file of an event-log folder (Spark 4's v2 layout)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                       if name.startswith("events_") or name.startswith("app-") or name.startswith("local-"))
    else:
        files = [path]
    for name in files:
        if name.endswith((".zstd", ".lz4", ".snappy", ".lzf")):
            raise ValueError(f"{name}: a compressed event log; run with spark.eventLog.compress=false")
        with open(name, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def stages(events):
    """{stage id: {name, job, submitted, completed, tasks: [task metrics]}} of the stages that ran."""
    out, job_of = {}, {}
    for e in events:
        kind = e["Event"]
        if kind == "SparkListenerJobStart":
            for sid in e["Stage IDs"]:
                job_of[sid] = e["Job ID"]
        elif kind == "SparkListenerStageCompleted":
            info = e["Stage Info"]
            if info.get("Submission Time") is not None:
                stage = out.setdefault(info["Stage ID"], dict(tasks=[]))
                stage.update(name=info["Stage Name"], job=job_of.get(info["Stage ID"]),
                             submitted=info["Submission Time"], completed=info["Completion Time"])
        elif kind == "SparkListenerTaskEnd":
            info, metrics = e["Task Info"], e.get("Task Metrics") or {}
            out.setdefault(e["Stage ID"], dict(tasks=[]))["tasks"].append(dict(
                launch=info["Launch Time"], finish=info["Finish Time"], host=info["Host"],
                deserialize=metrics.get("Executor Deserialize Time", 0), run=metrics.get("Executor Run Time", 0),
                fetch_wait=(metrics.get("Shuffle Read Metrics") or {}).get("Fetch Wait Time", 0)))
    return {sid: s for sid, s in out.items() if "submitted" in s and s["tasks"]}


def stage_split(stage):
    """One stage in ms: submission to first launch, first launch to last finish, and the slowest
    task's deserialisation, run, shuffle fetch wait and the rest of its life (result, status)."""
    tasks = stage["tasks"]
    first, last = min(t["launch"] for t in tasks), max(t["finish"] for t in tasks)
    return dict(launch_wait_ms=first - stage["submitted"], span_ms=last - first,
                deserialize_ms=max(t["deserialize"] for t in tasks), run_ms=max(t["run"] for t in tasks),
                fetch_wait_ms=max(t["fetch_wait"] for t in tasks),
                task_rest_ms=max(t["finish"] - t["launch"] - t["run"] - t["deserialize"] for t in tasks))


def iteration_split(all_stages):
    """Medians over the block-manager iterations: the job's wall ms and each of its two stages' split.

    None when the log holds no such iteration."""
    jobs = {}
    for sid, stage in sorted(all_stages.items()):
        if BLOCKMANAGER_STAGE in stage["name"]:
            jobs.setdefault(stage["job"], []).append(stage)
    iterations = [s for s in jobs.values() if len(s) == 2]
    if not iterations:
        return None
    splits = [[stage_split(s) for s in pair] for pair in iterations]
    walls = [max(s["completed"] for s in pair) - min(s["submitted"] for s in pair) for pair in iterations]

    def median(i, key):
        return round(statistics.median(split[i][key] for split in splits), 1)

    keys = splits[0][0].keys()
    return dict(iterations=len(iterations), median_job_ms=round(statistics.median(walls), 1),
                update_stage={k: median(0, k) for k in keys}, compute_stage={k: median(1, k) for k in keys})


def barrier_starts(all_stages):
    """[ms from submission to the launch of the last task] of each ring (barrier) stage."""
    return [max(t["launch"] for t in s["tasks"]) - s["submitted"]
            for _, s in sorted(all_stages.items()) if RING_STAGE in s["name"]]


def summary(path):
    all_stages = stages(read_events(path))
    return dict(blockmanager_iteration=iteration_split(all_stages), ring_launch_wait_ms=barrier_starts(all_stages))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(json.dumps(summary(sys.argv[1])))
