"""Real Spark clusters on loopback for tests: processes, a standalone cluster, job runs.

Driver code for local-cluster and standalone masters runs in a subprocess
(scripts/distri_job.py): PySpark allows one SparkContext per process and the test
process may hold the session-scoped local[2] one. Every process is started in its
own session (process group) so teardown can kill it together with the JVMs and
Python workers it spawned; every wait is bounded.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(REPO, "scripts", "distri_job.py")
EXECUTOR_CLASS = "CoarseGrainedExecutorBackend"


def spark_home():
    import pyspark

    return os.path.dirname(pyspark.__file__)


def spark_env(**extra):
    """Environment for every Spark process: loopback only, this venv's Python, one thread per kernel."""
    env = dict(os.environ)
    env.pop("PYSPARK_GATEWAY_PORT", None)
    env.pop("PYSPARK_GATEWAY_SECRET", None)
    env.update(SPARK_HOME=spark_home(), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="127.0.0.1",
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.update(extra)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process in its own process group, output to a log file."""

    def __init__(self, cmd, log_path, env=None, cwd=REPO):
        self.cmd, self.log_path = cmd, str(log_path)
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env or spark_env(),
                                      cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait(self, timeout):
        """Exit code; on timeout the whole group is killed and the test fails with the log's tail."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.cmd[:3]} did not finish in {timeout} s; log tail:\n{self.log()[-3000:]}")

    def kill(self):
        """SIGKILL the process group (JVM, executors, Python workers), then reap."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def process_table():
    """{pid: (ppid, args)} of every process (-ww: full command lines even without a terminal)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, timeout=10).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2:
            table[int(parts[0])] = (int(parts[1]), parts[2] if len(parts) == 3 else "")
    return table


def descendants(root_pids):
    """Pids of all processes below any of root_pids."""
    table = process_table()
    found, frontier = set(), set(root_pids)
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def executor_pids(root_pids):
    """Executor JVMs (CoarseGrainedExecutorBackend) started below root_pids."""
    table = process_table()
    return sorted(pid for pid in descendants(root_pids) if EXECUTOR_CLASS in table.get(pid, (0, ""))[1])


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate, timeout, what, watch=()):
    """Poll predicate() until truthy (returned); fail after timeout or when a watched Process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for proc in watch:
            if proc.popen.poll() is not None:
                pytest.fail(f"waiting for {what}: {proc.cmd[:3]} exited with {proc.popen.returncode}; "
                            f"log tail:\n{proc.log()[-3000:]}")
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.log_path}\n{p.log()[-2000:]}" for p in watch)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tails}")


def kill_an_executor_while_paused(proc, marker, go, executor_pids, executors, timeout):
    """Wait until the job `proc` pauses (writes `marker`), SIGKILL one of its `executors`
    executors (`executor_pids()` lists them), then let the job go on (`go`); returns its exit code."""
    wait_until(marker.exists, timeout, "the job to reach its pause", watch=[proc])
    pids = wait_until(lambda: len(found := executor_pids()) == executors and found, 30,
                      f"{executors} executors")
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim), 30, f"executor {victim} to die")
    go.touch()
    return proc.wait(timeout)


def job_command(*args, submit_master=None):
    """Command line for scripts/distri_job.py: plain python, or spark-submit to submit_master."""
    args = [str(a) for a in args]
    if submit_master is None:
        return [sys.executable, JOB, *args]
    return [os.path.join(spark_home(), "bin", "spark-submit"), "--master", submit_master,
            "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
            "--conf", "spark.ui.enabled=false", "--conf", "spark.executor.memory=512m", JOB, *args]


def job_summary(proc):
    """The JSON summary line a finished distri_job.py printed last."""
    lines = [line for line in proc.log().splitlines() if line.startswith("{") and '"last_step"' in line]
    assert lines, f"no summary line in the job's output:\n{proc.log()[-3000:]}"
    return json.loads(lines[-1])


def run_job(tmp_path, name, *args, timeout=240, submit_master=None):
    """Run distri_job.py to completion; returns (Process, summary)."""
    proc = Process(job_command(*args, submit_master=submit_master), tmp_path / f"{name}.log")
    try:
        code = proc.wait(timeout)
        assert code == 0, f"job {name} exited with {code}:\n{proc.log()[-3000:]}"
        return proc, job_summary(proc)
    finally:
        proc.kill()


class StandaloneCluster:
    """A Spark standalone master and workers on 127.0.0.1 (one core, 1 GB each)."""

    def __init__(self, tmp_dir, workers=2, timeout=120):
        self.port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        spark_class = os.path.join(spark_home(), "bin", "spark-class")
        self.master = Process([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.port), "--webui-port", "0"], tmp_dir / "master.log")
        self.workers = []
        try:
            for k in range(workers):
                work_dir = tmp_dir / f"worker-{k}"
                work_dir.mkdir()
                self.workers.append(Process(
                    [spark_class, "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                     "--cores", "1", "--memory", "1g", "--webui-port", "0", "--work-dir", str(work_dir)],
                    tmp_dir / f"worker-{k}.log", env=spark_env(SPARK_WORKER_DIR=str(work_dir))))
            # A worker may register twice (a slow first reply); count distinct addresses.
            wait_until(lambda: len(set(re.findall(r"Registering worker (\S+)", self.master.log()))) >= workers,
                       timeout,
                       f"{workers} workers to register with {self.url}", watch=[self.master, *self.workers])
        except BaseException:
            self.stop()
            raise

    def executor_pids(self):
        return executor_pids([w.pid for w in self.workers])

    def stop(self):
        for proc in [*self.workers, self.master]:
            proc.kill()


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    """One standalone cluster (master + two one-core workers) shared by a test module."""
    cluster = StandaloneCluster(tmp_path_factory.mktemp("standalone"))
    yield cluster
    cluster.stop()
