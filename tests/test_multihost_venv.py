"""The README's packed-virtualenv route, run as a user would on hosts whose Python lacks bigdl_py.

In a folder that holds no checkout:

    python -m venv env && env/bin/pip install <checkout> && venv-pack -p env -o bigdl_env.tar.gz
    spark-submit --archives bigdl_env.tar.gz#env --conf spark.pyspark.python=./env/bin/python \
        scripts/distri_job.py --lineage-root <shared>/lineage --out w.npy

`<checkout>` is a copy of this working tree (pip builds in the source folder; the copy keeps
the shared checkout clean), installed as a wheel, not editable. In client mode spark-submit
starts the driver with `spark.pyspark.python` too, resolved against the working folder: the
driver runs the user's `env/bin/python`, the executors run `./env/bin/python` from the archive
Spark unpacks in each executor's folder (on its host's private /tmp). The hosts' own Python
cannot import bigdl_py (tests/multihost.py, `without_bigdl_py`), so automatic shipping would
add `bigdl_py.zip`; the test asserts it did not, i.e. the executors imported bigdl_py from the
archive.
"""
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.cluster_fixtures import JOB, REPO, Process, spark_env
from tests.multihost import IsolatedHostsCluster

pytestmark = [pytest.mark.slow, pytest.mark.spark]
JOB_TIMEOUT_S = 600
SOURCE_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                                       "data_cache", "output", "spark-warehouse", "metastore_db")


def _run(cmd, cwd, timeout):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=_user_env())
    assert proc.returncode == 0, f"{cmd[:3]} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _user_env():
    """A user's shell: no PYTHONPATH into the checkout, no PYSPARK_* pointing at this test venv."""
    env = spark_env()
    for key in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A folder with the user's venv `env`, its packed `bigdl_env.tar.gz` and scripts/distri_job.py; no checkout."""
    folder = tmp_path_factory.mktemp("user")
    source = tmp_path_factory.mktemp("source") / "bigdl_py"
    shutil.copytree(REPO, source, ignore=SOURCE_IGNORE)
    times = {}
    start = time.monotonic()
    _run([sys._base_executable, "-m", "venv", "env"], folder, 120)
    _run([str(folder / "env" / "bin" / "pip"), "install", "--quiet", str(source)], folder, 600)
    times["venv_and_install_s"] = round(time.monotonic() - start, 1)
    shutil.rmtree(source.parent)
    start = time.monotonic()
    venv_pack = os.path.join(os.path.dirname(sys.executable), "venv-pack")
    _run([venv_pack, "--quiet", "-p", "env", "-o", "bigdl_env.tar.gz"], folder, 600)
    times["pack_s"] = round(time.monotonic() - start, 1)
    times["archive_mb"] = round(os.path.getsize(folder / "bigdl_env.tar.gz") / 2**20)
    os.makedirs(folder / "scripts")
    shutil.copy(JOB, folder / "scripts" / "distri_job.py")
    print(f"packed venv: {times}")
    yield folder


@pytest.fixture(scope="module")
def hosts_without_bigdl_py(tmp_path_factory):
    cluster = IsolatedHostsCluster(tmp_path_factory.mktemp("bare-hosts"), without_bigdl_py=True)
    yield cluster
    cluster.stop()


def test_the_users_venv_imports_bigdl_py_from_its_own_site_packages(user_folder):
    env = user_folder / "env"
    where = _run([str(env / "bin" / "python"), "-c", "import bigdl_py, bigdl_py.kernels, bigdl_py.pipelines; "
                  "print(bigdl_py.__file__); print(bigdl_py.kernels.__file__)"], user_folder, 120).split()
    assert all(path.startswith(str(env / "lib")) for path in where), where  # installed, not the checkout
    site = os.path.dirname(os.path.dirname(where[0]))
    assert not [n for n in os.listdir(site) if n.startswith("__editable__")]  # venv-pack refuses editable installs
    assert not os.path.exists(user_folder / "pyproject.toml") and sorted(os.listdir(user_folder)) == [
        "bigdl_env.tar.gz", "env", "scripts"]


def test_packed_venv_spark_submit_trains_on_hosts_without_bigdl_py(user_folder, hosts_without_bigdl_py, tmp_path):
    from tests.test_distri_clusters import assert_equals_oracle, job_args

    cluster = hosts_without_bigdl_py
    args = job_args(tmp_path, iterations=6)
    args[args.index("--lineage-root") + 1] = f"{cluster.shared}/lineage-venv"
    # INFO from the job's SparkContext on: shipping would log "Added file .../bigdl_py.zip".
    args += ["--spark-log-level", "INFO"]
    submit = cluster.submit_command("scripts/distri_job.py", *args,
                                    conf={"spark.pyspark.python": "./env/bin/python"})
    submit[submit.index("--master"):submit.index("--master")] = ["--archives", "bigdl_env.tar.gz#env"]
    started = time.monotonic()
    proc = Process(submit, tmp_path / "submit.log", env=_user_env(), cwd=str(user_folder))
    try:
        code = proc.wait(JOB_TIMEOUT_S)
        log = proc.log()
        assert code == 0, f"spark-submit exited with {code}:\n{log[-4000:]}"
    finally:
        proc.kill()
    print(f"spark-submit with the packed venv: {time.monotonic() - started:.1f} s")
    assert f"Added archive file://{user_folder}/bigdl_env.tar.gz#env" in log
    # Spark names each job by its call site: the driver's bigdl_py is the user's installed copy ...
    installed = f"{user_folder}/env/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages/bigdl_py/"
    assert f"{installed}data/partitions.py" in log and f"{REPO}/bigdl_py" not in log
    # ... and the executors imported bigdl_py from the archive: one import probe, nothing shipped
    # (shipping adds bigdl_py.zip with SparkContext.addFile, logged, and probes again).
    assert log.count(f"Starting job: collect at {installed}shipping.py") == 1
    assert "bigdl_py.zip" not in log, "bigdl_py was shipped: the executors did not import it from the archive"
    assert_equals_oracle(args, tmp_path / "weights.npy")
