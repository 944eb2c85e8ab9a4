"""Every notebook runs top to bottom in a fresh kernel; its last cell checks its own results."""
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def run_notebook(name, workdir):
    """Execute notebooks/<name> with `workdir` as its working folder; returns (all text output, outputs)."""
    nb = nbformat.read(os.path.join(REPO, "notebooks", name), as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return "".join(o.get("text", "") for o in outputs), outputs


def pngs(outputs):
    return sum("image/png" in o.get("data", {}) for o in outputs)


def test_image_features_notebook(tmp_path):
    text, outputs = run_notebook("image_features.ipynb", tmp_path)
    assert "checks passed" in text and "zero bytes" in text
    assert pngs(outputs) >= 1  # the grid of labelled photos


def test_similarity_notebook(tmp_path):
    text, outputs = run_notebook("similarity.ipynb", tmp_path)
    assert "precision@10 = " in text and "recall@10 = " in text
    assert pngs(outputs) >= 1  # the grid of queries and recommendations


def test_risk_scoring_notebook(tmp_path):
    text, outputs = run_notebook("risk_scoring.ipynb", tmp_path)
    assert "checks passed" in text and "mllib_gbt" in text
    assert pngs(outputs) == 2  # ROC and calibration
    assert (tmp_path / "risk_output" / "metrics.json").exists()
    assert (tmp_path / "risk_output" / "model" / "risk_scoring.json").exists()


def test_quickstart_notebook(tmp_path):
    text, _ = run_notebook("quickstart.ipynb", tmp_path)
    assert "quickstart checks passed" in text and "test accuracy after 2 epochs" in text


def test_fine_tune_notebook(tmp_path):
    text, _ = run_notebook("fine_tune.ipynb", tmp_path)
    assert "fine-tune checks passed" in text
    accuracy = float(re.search(r"fine-tuned accuracy on \d+ held-out digits: ([0-9.]+)", text).group(1))
    assert accuracy > 0.85, text
