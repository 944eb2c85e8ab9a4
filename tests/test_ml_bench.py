"""Smoke test of scripts/bench_inference.py at tiny sizes (the numbers come from the full run)."""
import os
import sys

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


def test_bench_inference_quick_prints_both_cases(spark):
    pytest.importorskip("torch")
    sys.path.insert(0, SCRIPTS)
    try:
        import bench_inference
    finally:
        sys.path.remove(SCRIPTS)
    results = bench_inference.main(["--quick", "--mnist-rows", "300", "--tabular-rows", "3000"])
    assert [r["model"] for r in results] == ["lenet5", "mlp"]
    for r in results:
        assert set(r) == {"model", "rows", "ours_rows_s", "torch_rows_s", "ratio"}
        assert r["ours_rows_s"] > 0 and r["torch_rows_s"] > 0
        assert abs(r["ratio"] - r["ours_rows_s"] / r["torch_rows_s"]) < 0.01 * r["ratio"]
    assert results[0]["rows"] == 300 and results[1]["rows"] == 3000
