"""The risk-scoring notebook (see test_notebooks.py)."""
import pytest

from tests.test_notebooks import pngs, run_notebook

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_risk_scoring_notebook(tmp_path):
    text, outputs = run_notebook("risk_scoring.ipynb", tmp_path)
    assert "checks passed" in text and "mllib_gbt" in text
    assert pngs(outputs) == 2  # ROC and calibration
    assert (tmp_path / "risk_output" / "metrics.json").exists()
    assert (tmp_path / "risk_output" / "model" / "risk_scoring.json").exists()
