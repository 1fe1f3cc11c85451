"""benchmarks/bench_metrics.py --quick runs and ends with its JSON result line."""

from __future__ import annotations

from _bench import run_benchmark

KEYS = {
    "benchmark", "device", "preset", "image_size", "n_maps", "aupro_exact_s", "aupro_1000thr_s",
    "aupro_speedup", "aupro_exact", "aupro_1000thr", "aupro_abs_diff",
}


def test_bench_metrics_quick_prints_json_line():
    result = run_benchmark("bench_metrics.py", "--quick")
    assert KEYS <= set(result)
    assert result["benchmark"] == "metrics" and result["device"] == "cpu"
    assert result["preset"] is None
    assert (result["n_maps"], result["image_size"]) == (20, 64)
    assert 0.0 < result["aupro_exact"] <= 1.0 and 0.0 < result["aupro_1000thr"] <= 1.0
    # The binned estimate is close to the exact value (they differ by binning only).
    assert result["aupro_abs_diff"] < 0.02
    diff = abs(result["aupro_exact"] - result["aupro_1000thr"])
    assert abs(result["aupro_abs_diff"] - diff) < 2e-6
