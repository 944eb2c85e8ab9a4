"""The session helper respects spark-submit's master and starts local[*] otherwise."""
import os
import subprocess
import sys

import pyspark
import pytest

from tests.cluster_fixtures import spark_env

SCRIPT = ("from bigdl_py.spark_session import get_or_create_session;"
          "s = get_or_create_session(); print('MASTER=' + s.sparkContext.master); s.stop()")


@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_master_is_kept(tmp_path):
    script = tmp_path / "which_master.py"
    script.write_text(SCRIPT)
    submit = os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit")
    out = subprocess.run([submit, "--master", "local[1]", "--conf", "spark.ui.enabled=false", str(script)],
                         capture_output=True, text=True, timeout=240, env=spark_env())
    assert "MASTER=local[1]" in out.stdout, out.stderr[-2000:]


@pytest.mark.spark
@pytest.mark.slow
def test_plain_python_gets_an_embedded_local_session(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240,
                         env=spark_env())
    assert "MASTER=local[*]" in out.stdout, out.stderr[-2000:]
