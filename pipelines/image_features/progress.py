"""Driver-side progress of a Spark job group: finished tasks out of all tasks, shown with tqdm."""
import contextlib
import threading
import uuid


def _task_counts(tracker, group):
    done = total = 0
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        for stage_id in (job.stageIds if job else []):
            stage = tracker.getStageInfo(stage_id)
            if stage:
                done += stage.numCompletedTasks
                total += stage.numTasks
    return done, total


@contextlib.contextmanager
def job_progress(sc, description, enabled=True, interval=0.5):
    """Run the body's Spark jobs in their own job group; with `enabled`, show a task progress bar meanwhile."""
    group = f"bigdl_py-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, description)
    stop = threading.Event()
    thread = None
    if enabled:
        from tqdm import tqdm

        def poll():
            with tqdm(desc=description, unit="task", total=0, leave=True) as bar:
                finished = False
                while not finished:
                    finished = stop.wait(interval)  # one last update after the jobs ended
                    counts = _task_counts(sc.statusTracker(), group)
                    if counts != (bar.n, bar.total):  # redraw only on change: logs stay short
                        bar.n, bar.total = counts
                        bar.refresh()

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
    try:
        yield group
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        sc.setLocalProperty("spark.jobGroup.id", None)
