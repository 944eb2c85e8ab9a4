"""The kernel benchmark runs end to end and prints well-formed JSON lines."""
import itertools
import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "scripts", "bench_kernels.py")

CASE_KEYS = {"case", "op", "shape", "pass", "threads", "ours_ms", "torch_ms", "ratio", "gflops", "torch_layout"}
SUMMARY_KEYS = {
    "summary", "geomean_ratio_fwd_bwd", "geomean_ratio_fwd", "gemm_gflops_1thread",
    "conv3x3_resnet20_fraction_of_gemm", "compile_cold_s", "compile_warm_s", "malloc_env", "threads",
    "by_threads", "cpu_model", "isa",
}
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


def run_bench(*args, timeout):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_smoke_prints_one_line_per_case_pass_and_thread_count_then_a_summary():
    lines = run_bench("--smoke", timeout=180)
    *cases, summary = lines
    assert len(cases) == 8  # 2 cases x (fwd, fwd+bwd) x threads (1, 2)
    assert {(c["case"], c["pass"], c["threads"]) for c in cases} == {
        (name, p, t) for name in ("smoke_conv3x3", "smoke_linear") for p in ("fwd", "fwd+bwd") for t in (1, 2)
    }
    for c in cases:
        assert CASE_KEYS <= c.keys(), c
        assert c["ours_ms"] > 0 and c["torch_ms"] > 0 and c["gflops"] > 0
        assert c["ratio"] == pytest.approx(c["ours_ms"] / c["torch_ms"], rel=1e-2)
        if c["op"].startswith("conv2d"):
            # torch is measured in both memory formats and the faster one is the peer
            both = {"nchw": c["torch_nchw_ms"], "channels_last": c["torch_channels_last_ms"]}
            assert c["torch_layout"] == min(both, key=both.get)
            assert c["torch_ms"] == min(both.values())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["summary"] is True and summary["failed_checks"] == []
    assert summary["gemm_gflops_1thread"] > 0
    # the script re-executed itself with the malloc settings
    assert summary["malloc_env"] == MALLOC_TUNING
    assert summary["threads"]["counts"] == [1, 2]
    assert set(summary["by_threads"]) == {"1", "2"}
    assert summary["geomean_ratio_fwd_bwd"] == summary["by_threads"]["1"]["geomean_ratio_fwd_bwd"]
    assert summary["cpu_model"] and summary["isa"] in {"avx512+amx", "avx512", "avx2+fma", "avx2", "older than avx2"}


def test_threads_option_rejects_a_bad_count():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, BENCH, "--smoke", "--threads", "0,2"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)
    assert proc.returncode != 0 and "--threads: expected comma-separated integers >= 1" in proc.stderr


def test_cases_option_times_only_the_named_cases_and_rejects_unknown_ones():
    *cases, summary = run_bench("--smoke", "--threads", "1", "--cases", "lenet_fc1", timeout=180)
    assert {(c["case"], c["pass"]) for c in cases} == {("lenet_fc1", "fwd"), ("lenet_fc1", "fwd+bwd")}
    assert summary["compile_cold_s"] is None  # the compile probe is skipped
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, BENCH, "--smoke", "--cases", "no_such_case"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode != 0 and "--cases: unknown case(s) ['no_such_case']" in proc.stderr


@pytest.mark.slow
def test_compiled_kernels_load_from_the_disk_cache_in_under_2_seconds():
    (summary,) = run_bench("--compile-only", timeout=900)
    # CPU seconds: wall time on a shared machine counts other processes too
    assert summary["compile_warm_cpu_s"] < 2.0, summary["compile_warm_by_module_s"]
    assert summary["compile_warm_cpu_s"] < summary["compile_cold_cpu_s"]


def test_interleaved_timing_lets_the_other_systems_threads_settle_before_a_switch():
    """Where the system changes, a pause and untimed calls for WARM_S come before the timed one."""
    saved = dict(os.environ)  # the script pins the thread variables at import
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        import bench_kernels
    finally:
        sys.path.pop(0)
        os.environ.clear()
        os.environ.update(saved)
    calls = []
    fns = {(s, p): (lambda s=s, p=p: calls.append((s, p, time.perf_counter()))) for s in ("ours", "torch")
           for p in ("fwd", "bwd")}
    _, rounds = bench_kernels.time_interleaved(fns, 0.0, 2, warmup=0, system=lambda k: k[0], settle_s=0.001)
    assert rounds == 2
    runs = [list(g) for _, g in itertools.groupby(calls, key=lambda c: c[:2])]
    assert [r[0][:2] for r in runs] == [("ours", "fwd"), ("ours", "bwd"), ("torch", "fwd"), ("torch", "bwd")] * 2
    for r in runs:  # a system's first key: untimed calls for WARM_S, then the timed one
        if r[0][1] == "fwd":
            assert len(r) >= 2 and r[-1][2] - r[0][2] >= bench_kernels.WARM_S
        else:
            assert len(r) == 1
    calls.clear()
    bench_kernels.time_interleaved(fns, 0.0, 2, warmup=0)
    assert [c[:2] for c in calls] == list(fns) * 2
