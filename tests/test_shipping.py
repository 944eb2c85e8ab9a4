"""bigdl_py reaches executors that cannot import it."""
import os
import subprocess
import sys
import zipfile

import pytest

from bigdl_py.shipping import ensure_importable_on_executors, package_zip


def test_zip_holds_the_package_with_kernels_and_pipelines_mapped(tmp_path):
    path = package_zip(str(tmp_path / "b.zip"))
    names = set(zipfile.ZipFile(path).namelist())
    for expected in ("bigdl_py/__init__.py", "bigdl_py/nn/module.py", "bigdl_py/kernels/conv.py",
                     "bigdl_py/pipelines/__init__.py", "bigdl_py/engine/distri.py"):
        assert expected in names
    assert not any("__pycache__" in n for n in names)


def test_shipped_zip_imports_without_the_installed_package(tmp_path):
    path = package_zip(str(tmp_path / "b.zip"))
    # Drop the editable-install finder so only the zip can provide bigdl_py.
    code = ("import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()];"
            "sys.path = [p for p in sys.path if not p.endswith('/main')];"
            f"sys.path.insert(0, {path!r}); import bigdl_py.kernels.conv, bigdl_py.nn;"
            "print(bigdl_py.kernels.conv.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=""))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(path)


@pytest.mark.spark
def test_executors_that_import_bigdl_py_get_nothing_shipped(spark):
    before = list(spark.sparkContext.listFiles)
    ensure_importable_on_executors(spark.sparkContext)
    assert list(spark.sparkContext.listFiles) == before
