"""Peak resident memory of the executor processes while a Spark job runs.

In local mode the executor is the driver's JVM plus the Python workers it forks
(pyspark daemon and workers), so the executor's memory is the RSS of that process
tree; a background thread samples it from /proc (Linux) every `interval` seconds.
On a cluster the executors live elsewhere and this measures only the local JVM.
"""
import os
import threading

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root):
    """Sum of RSS bytes of `root` and all its descendants."""
    children, rss = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended between listdir and open
            continue
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * _PAGE
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class ProcessTreePeak:
    """Context manager: `peak_mb` is the largest executor-tree RSS seen inside the block."""

    def __init__(self, spark, interval=0.2):
        self.pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.peak_mb = max(self.peak_mb, _tree_rss(self.pid) / 2**20)
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _tree_rss(self.pid) / 2**20)
        return False
