"""`make run`'s main job, on small subsets (--quick): every pipeline runs and index.html links the results."""
import json
import os
import subprocess
import sys

import pytest

from bigdl_py.pipelines.main import TENSORBOARD_DIR, write_index
from tests.jvm import mllib_env
from tests.test_imports import import_graph

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.spark
@pytest.mark.slow
def test_main_job_quick_runs_every_pipeline(tmp_path):
    out = tmp_path / "output"
    proc = subprocess.run([sys.executable, "-m", "bigdl_py.pipelines.main", "--quick", "--output", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800, env=mllib_env())  # MLlib LR baseline
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("1/4 LeNet-5", "2/4 image features", "3/4 similarity", "4/4 risk scoring", "precision@10"):
        assert stage in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"lenet5", "image_features", "similarity", "risk_scoring", "wall_s"}
    assert summary["image_features"]["efficientnet"]["bad"] == 3
    assert summary["risk_scoring"]["table"][0]["roc_auc"] > 0.7
    index = (out / "index.html").read_text()
    for linked in ("summary.json", "risk_scoring/roc.png", "similarity/mnist/grid.png", "training_log.jsonl"):
        assert linked in index
    assert list((out / TENSORBOARD_DIR / "lenet5").glob("events.out.tfevents.*"))
    assert f"tensorboard --logdir {out / TENSORBOARD_DIR}" in index


def test_index_says_how_to_open_the_tensorboard_files_when_there_are_some(tmp_path):
    rows = [("LeNet-5", "test accuracy", 0.9)]
    write_index(str(tmp_path), {}, rows)
    assert "tensorboard --logdir" not in (tmp_path / "index.html").read_text()
    (tmp_path / "tensorboard" / "lenet5").mkdir(parents=True)
    write_index(str(tmp_path), {}, rows)
    index = (tmp_path / "index.html").read_text()
    assert f"tensorboard --logdir {tmp_path / 'tensorboard'}" in index
    assert "tensorboard --logdir output/tensorboard" in index and '<a href="tensorboard/">' in index


def test_the_library_imports_no_pipeline_module():
    """The main job and the pipelines sit on top of the library: nothing below imports them.

    bigdl_py.shipping imports the package bigdl_py.pipelines itself, only to find its folder to zip.
    """
    graph = import_graph()
    assert "bigdl_py.pipelines.main" in graph and "bigdl_py.main" not in graph
    library = {name: deps for name, deps in graph.items() if not name.startswith("bigdl_py.pipelines")}
    upward = {name: sorted(d for d in deps if d.startswith("bigdl_py.pipelines."))
              for name, deps in library.items()}
    assert {name: deps for name, deps in upward.items() if deps} == {}
