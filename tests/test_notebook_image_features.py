"""notebooks/image_features.ipynb runs top to bottom (its last cell checks the predicted classes and counts)."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.spark
@pytest.mark.slow
def test_image_features_notebook_executes(tmp_path):
    nb = nbformat.read(os.path.join(REPO, "notebooks", "image_features.ipynb"), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "checks passed" in text and "zero bytes" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the grid of labelled photos is displayed
