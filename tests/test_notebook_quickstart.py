"""The quickstart notebook: make run's pipelines in small steps (see test_notebooks.py)."""
import pytest

from tests.test_notebooks import run_notebook

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_quickstart_notebook(tmp_path):
    text, _ = run_notebook("quickstart.ipynb", tmp_path)
    assert "quickstart checks passed" in text and "test accuracy after 2 epochs" in text
