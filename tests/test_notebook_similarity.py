"""notebooks/similarity.ipynb runs top to bottom (its last cell checks precision and recall)."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.spark
@pytest.mark.slow
def test_similarity_notebook_executes(tmp_path):
    nb = nbformat.read(os.path.join(REPO, "notebooks", "similarity.ipynb"), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "precision@10 = " in text and "recall@10 = " in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the grid is displayed
