"""benchmarks/bench_precision.py --quick compares float32 and bf16-UNet metrics of a shipped model."""

from __future__ import annotations

from _bench import run_benchmark

from diffad_core import METRIC_KEYS


def test_bench_precision_quick_prints_json_line():
    result = run_benchmark("bench_precision.py", "--quick", "--device", "cpu", timeout=600)
    assert result["benchmark"] == "precision"
    row = result["categories"]["brick"]
    assert set(row) == {"float32", "bf16_unet", "abs_diff"}
    for k in METRIC_KEYS:
        assert row["abs_diff"][k] == round(abs(row["bf16_unet"][k] - row["float32"][k]), 5)
    assert result["max_abs_diff"] == max(row["abs_diff"].values())
    assert result["within_0.001"] == (result["max_abs_diff"] <= 0.001)
