"""scripts/bench_fusion.py runs end to end at tiny sizes and prints consistent JSON lines."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_smoke_prints_one_line_per_thread_count_then_a_summary():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "bench_fusion.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *cases, summary = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [c["threads"] for c in cases] == [1, 2]
    for c in cases:
        assert set(c["torch_by_variant_samples_s"]) == {"nchw", "nchw+fx_fused", "channels_last",
                                                        "channels_last+fx_fused"}
        assert c["torch_samples_s"] == max(c["torch_by_variant_samples_s"].values())
        assert c["fused_speedup"] == pytest.approx(c["ours_fused_samples_s"] / c["ours_samples_s"], rel=1e-2)
        assert c["fused_ratio"] == pytest.approx(c["ours_fused_samples_s"] / c["torch_samples_s"], rel=1e-2)
    assert summary["summary"] is True and summary["cpu_model"] and summary["isa"]
    assert summary["malloc_env"]["MALLOC_MMAP_THRESHOLD_"] == "1073741824"
