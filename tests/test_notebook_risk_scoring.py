"""notebooks/risk_scoring.ipynb runs top to bottom: quick training of the network and the
MLlib baselines on credit_data, plots, scoring; its last cell checks the results."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.spark
@pytest.mark.slow
def test_risk_scoring_notebook_executes(tmp_path):
    nb = nbformat.read(os.path.join(REPO, "notebooks", "risk_scoring.ipynb"), as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "checks passed" in text and "mllib_gbt" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # ROC and calibration
    assert (tmp_path / "risk_output" / "metrics.json").exists()
    assert (tmp_path / "risk_output" / "model" / "risk_scoring.json").exists()
