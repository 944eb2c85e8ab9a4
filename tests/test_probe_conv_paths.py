"""The convolution path probe runs end to end: every path agrees with kernels.conv and is timed."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(REPO, "scripts", "probe_conv_paths.py")
PATHS = {"im2col_gemm", "conv_direct", "kh_im2col_phase_gemm", "shifted_9_gemm", "numba_direct"}


def test_smoke_prints_the_copy_split_per_pass_and_each_checked_path_per_thread_count():
    proc = subprocess.run([sys.executable, PROBE, "--smoke", "--threads", "1,2"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    *lines, summary = [json.loads(line) for line in proc.stdout.splitlines()]
    splits = [line for line in lines if line["kind"] == "split"]
    paths = [line for line in lines if line["kind"] == "path"]
    assert len(splits) + len(paths) == len(lines)
    cases = ("smoke_3x3", "smoke_3x3_direct", "smoke_3x3_s2", "smoke_1x1_s2")
    assert {(s["case"], s["pass"]) for s in splits} == {(case, p) for case in cases for p in ("fwd", "dx", "dw")}
    for s in splits:
        # 16 output channels at stride 1: the direct kernels, except dx (8 input channels: col2im)
        direct = s["case"] == "smoke_3x3_direct" and s["pass"] != "dx"
        assert (s["direct_ms"] > 0) == direct and (s["copy_ms"] > 0) != direct and (s["gemm_ms"] > 0) != direct, s
        assert s["copy_ms"] + s["gemm_ms"] + s["direct_ms"] <= s["total_ms"], s
    # only the stride-1 3x3 cases have the alternative paths
    assert {(p["case"], p["path"], p["threads"]) for p in paths} == {
        (case, path, t) for case in ("smoke_3x3", "smoke_3x3_direct") for path in PATHS for t in (1, 2)
    }
    for p in paths:
        assert abs(p["ms"] - min(p["rounds_ms"])) < 0.01
        assert p["gflops"] > 0 and p["fraction_of_gemm_roof"] > 0
    assert summary["summary"] is True and summary["gemm_gflops_1thread"] > 0 and summary["cpu_model"]
