"""On hosts whose Python has numpy, numba and pyarrow but not bigdl_py, bigdl_py ships itself.

The simulated hosts (tests/multihost.py) cover this venv's bigdl_py import hook on every
worker, so executors cannot import the package until the driver ships it as a zip
(`SparkContext.addPyFile`); a user-defined layer's module is shipped the same way.
"""
import os

import pytest

from tests.cluster_fixtures import JOB
from tests.multihost import IsolatedHostsCluster
from tests.test_multihost import run_submitted

pytestmark = [pytest.mark.slow, pytest.mark.spark]
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def hosts_without_bigdl_py(tmp_path_factory):
    cluster = IsolatedHostsCluster(tmp_path_factory.mktemp("bare-hosts"), without_bigdl_py=True)
    yield cluster
    cluster.stop()


def test_the_hosts_cannot_import_bigdl_py_by_themselves(hosts_without_bigdl_py, tmp_path):
    seen = run_submitted(hosts_without_bigdl_py, tmp_path, "probe", os.path.join(HERE, "multihost_probe.py"),
                         hosts_without_bigdl_py.shared, 3)
    assert [r["has_bigdl_py"] for r in seen["executors"]] == [False, False, False]


@pytest.mark.parametrize("sync", ["blockmanager", "ring"])
def test_distri_optimizer_ships_bigdl_py_and_equals_the_local_oracle(hosts_without_bigdl_py, tmp_path, sync):
    from tests.test_distri_clusters import assert_equals_oracle, job_args

    cluster = hosts_without_bigdl_py
    args = job_args(tmp_path, iterations=6, sync=sync)
    args[args.index("--lineage-root") + 1] = f"{cluster.shared}/lineage-{sync}"
    summary = run_submitted(cluster, tmp_path, f"train-{sync}", JOB, *args)
    assert summary["last_step"] == 6
    assert_equals_oracle(args, tmp_path / "weights.npy")


def test_estimators_fit_transform_and_predict_udf_with_bigdl_py_and_a_custom_layer_shipped(
        hosts_without_bigdl_py, tmp_path):
    import numpy as np

    from tests.custom_layer_job import write_layer_module

    cluster = hosts_without_bigdl_py
    result = run_submitted(cluster, tmp_path, "estimators", os.path.join(HERE, "custom_layer_job.py"),
                           "--master", cluster.url, "--lineage-root", f"{cluster.shared}/lineage-ml",
                           "--shipped", write_layer_module(tmp_path, "a"),
                           "--unshipped", write_layer_module(tmp_path, "b"))
    for name, run in result["shipped"].items():
        assert any(abs(w - 1.0) > 1e-4 for w in run["scale"][0]), name  # the custom layer trained
        np.testing.assert_allclose(run["transform"], run["transform_driver"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(run["udf"], run["udf_driver"], rtol=1e-5, atol=1e-6)
    assert "user_layers_b" in result["unshipped"] and "addPyFile" in result["unshipped"]


def test_the_readme_py_files_route_trains_with_a_zip_made_by_package_zip(hosts_without_bigdl_py, tmp_path):
    """README: `python -c "...package_zip('bigdl_py.zip')"`, then `spark-submit --py-files bigdl_py.zip ...`."""
    import subprocess
    import sys

    from tests.test_distri_clusters import assert_equals_oracle, job_args

    cluster = hosts_without_bigdl_py
    made = subprocess.run([sys.executable, "-c", "from bigdl_py.shipping import package_zip; "
                           "print(package_zip('bigdl_py.zip'))"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0 and made.stdout.strip() == "bigdl_py.zip", made.stderr
    args = job_args(tmp_path, iterations=4, sync="blockmanager", spark_log_level="INFO")
    args[args.index("--lineage-root") + 1] = f"{cluster.shared}/lineage-py-files"
    summary = run_submitted(cluster, tmp_path, "py-files", JOB, *args,
                            conf={"spark.submit.pyFiles": str(tmp_path / "bigdl_py.zip")})
    assert summary["last_step"] == 4
    assert_equals_oracle(args, tmp_path / "weights.npy")
    log = (tmp_path / "py-files.log").read_text(errors="replace")
    assert "bigdl_py.zip" in log and "bigdl_py-ship-" not in log  # the user's zip served; nothing auto-shipped
