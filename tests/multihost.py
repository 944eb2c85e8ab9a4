"""Simulated separate hosts on this machine: a standalone cluster whose workers share no files.

Linux routes all of 127.0.0.0/8 to loopback, so the master listens on 127.0.0.2 and each worker
on its own address (127.0.0.3, .4, ...), with the driver on 127.0.0.1. Each worker runs in its
own mount namespace with a private /tmp: a tmpfs is mounted on a staging folder, what the worker
must read from the real /tmp (this checkout and its venv, when they live there) is bind-mounted
into it read-only, one "shared storage" folder is bind-mounted read-write at the same path on
every host (it plays NFS or HDFS), and the staging folder is then moved onto /tmp. Executors
and their Python workers inherit the namespace, so a file one executor writes under /tmp is
invisible to the driver and to the other hosts, as on a real cluster.

HOME, /dev/shm and the network namespace stay shared; numba's compile cache lives under HOME
(a cache keyed by source and CPU, rebuilt when missing), so the hosts do not each pay the
kernels' compile time.
"""
import glob
import os
import re
import shlex
import shutil
import sys
import sysconfig
import tempfile

import pytest

from tests.cluster_fixtures import REPO, Process, executor_pids, free_port, spark_env, spark_home, wait_until

MASTER_HOST = "127.0.0.2"
WORKER_HOSTS = ("127.0.0.3", "127.0.0.4", "127.0.0.5")
LIFETIME_S = 1800  # every process of a cluster dies by itself after this, even if teardown never runs
REGISTER_TIMEOUT_S = 90


def _under_tmp(path):
    real = os.path.realpath(path)
    return real if real == "/tmp" or real.startswith("/tmp/") else None


def installed_package_files():
    """The files through which this venv imports bigdl_py (its editable-install hook)."""
    site = sysconfig.get_paths()["purelib"]
    return sorted(glob.glob(os.path.join(site, "__editable__*bigdl_py*")))


def host_script(stage, shared, binds, command, hide=()):
    """bash for `unshare --mount`: a private /tmp holding `binds` (read-only) and `shared` (read-write);
    each file in `hide` is covered by an empty one (/dev/null) on this host only."""
    lines = ["set -e", f"mount -t tmpfs -o size=4g tmpfs {shlex.quote(stage)}"]
    for path, mode in [(p, "ro") for p in binds] + [(shared, "rw")]:
        inside = shlex.quote(os.path.join(stage, os.path.relpath(path, "/tmp")))
        lines += [f"mkdir -p {inside}", f"mount --bind {shlex.quote(path)} {inside}"]
        if mode == "ro":
            lines.append(f"mount -o remount,bind,ro {inside}")
    lines += [f"mount --move {shlex.quote(stage)} /tmp"]
    lines += [f"mount --bind /dev/null {shlex.quote(path)}" for path in hide]
    lines += [
              "mkdir -p /tmp/worker /tmp/spark-local /tmp/python",
              "exec " + " ".join(shlex.quote(c) for c in command)]
    return "\n".join(lines)


class IsolatedHostsCluster:
    """A master and one-core workers on separate loopback addresses, each worker with a private /tmp.

    `shared` is the folder every host (and the driver) sees at the same path. With
    `without_bigdl_py`, the hosts' Python has numpy, numba and pyarrow but cannot import
    bigdl_py. Every process runs under `timeout` and is killed by process group in stop().
    """

    def __init__(self, tmp_dir, hosts=WORKER_HOSTS, timeout=REGISTER_TIMEOUT_S, without_bigdl_py=False):
        self.tmp_dir = tmp_dir
        self.hosts = hosts
        self.shared = str(tmp_dir / "shared")
        os.makedirs(self.shared)
        self.port = free_port()
        self.url = f"spark://{MASTER_HOST}:{self.port}"
        self._stages = tempfile.mkdtemp(prefix="bigdl_py-hosts-", dir="/var/tmp")
        spark_class = os.path.join(spark_home(), "bin", "spark-class")
        lifetime = ["timeout", "--foreground", str(LIFETIME_S)]
        self.master = Process(
            lifetime + [spark_class, "org.apache.spark.deploy.master.Master", "--host", MASTER_HOST,
                        "--port", str(self.port), "--webui-port", "0"], tmp_dir / "master.log",
            env=spark_env(SPARK_LOCAL_IP=MASTER_HOST, SPARK_LOCAL_HOSTNAME=MASTER_HOST,
                          SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false"))
        self.workers = []
        binds = sorted({p for p in (_under_tmp(REPO), _under_tmp(sys.prefix)) if p})
        try:
            for host in hosts:
                stage = os.path.join(self._stages, host)
                os.makedirs(stage)
                worker = lifetime + [spark_class, "org.apache.spark.deploy.worker.Worker", self.url,
                                     "--host", host, "--cores", "1", "--memory", "2g", "--webui-port", "0",
                                     "--work-dir", "/tmp/worker"]
                script = host_script(stage, self.shared, binds, worker,
                                     hide=installed_package_files() if without_bigdl_py else ())
                env = spark_env(SPARK_LOCAL_IP=host, SPARK_LOCAL_HOSTNAME=host, SPARK_WORKER_DIR="/tmp/worker",
                                SPARK_LOCAL_DIRS="/tmp/spark-local", TMPDIR="/tmp/python")
                self.workers.append(Process(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                                            tmp_dir / f"worker-{host}.log", env=env))
            wait_until(lambda: len(set(re.findall(r"Registering worker (\S+)", self.master.log()))) >= len(hosts),
                       timeout, f"{len(hosts)} isolated workers to register with {self.url}",
                       watch=[self.master, *self.workers])
        except BaseException:
            self.stop()
            raise

    def driver_conf(self):
        """spark-submit/--conf settings a driver on 127.0.0.1 needs to get one executor per host."""
        return {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                "spark.ui.enabled": "false", "spark.executor.memory": "1g",
                "spark.cores.max": str(len(self.hosts)),
                "spark.scheduler.minRegisteredResourcesRatio": "1.0",
                "spark.scheduler.maxRegisteredResourcesWaitingTime": "90s",
                "spark.task.maxFailures": "2"}

    def submit_command(self, script, *args, conf=None):
        """spark-submit of `script` to this cluster, with driver_conf() and `conf`."""
        cmd = [os.path.join(spark_home(), "bin", "spark-submit"), "--master", self.url]
        for key, value in {**self.driver_conf(), **(conf or {})}.items():
            cmd += ["--conf", f"{key}={value}"]
        return ["timeout", "--foreground", str(LIFETIME_S), *cmd, str(script), *map(str, args)]

    def executor_pids(self):
        """Executor JVMs the workers started (each lives in its worker's mount namespace)."""
        return executor_pids([w.pid for w in self.workers])

    def stop(self):
        for proc in [*self.workers, self.master]:
            proc.kill()
        shutil.rmtree(self._stages, ignore_errors=True)


@pytest.fixture(scope="module")
def isolated_hosts(tmp_path_factory):
    """One simulated three-host cluster per test module (see the module docstring)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("the simulated hosts need root and util-linux's unshare (mount namespaces)")
    cluster = IsolatedHostsCluster(tmp_path_factory.mktemp("hosts"))
    yield cluster
    cluster.stop()
