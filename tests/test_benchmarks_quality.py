"""benchmarks/bench_quality.py --quick evaluates a shipped model and runs a short ablation."""

from __future__ import annotations

from _bench import run_benchmark


def test_bench_quality_quick_prints_json_line():
    result = run_benchmark("bench_quality.py", "--quick", "--threads", "1", timeout=600)
    assert result["benchmark"] == "quality" and (result["t_s"], result["t_b"], result["w"]) == (200, 400, 1.0)
    row = result["categories"]["brick"]
    assert set(row) == {"image_auroc", "pixel_auroc", "aupro", "psnr_db"}
    assert all(0.0 <= row[k] <= 1.0 for k in ("image_auroc", "pixel_auroc", "aupro")) and 5 < row["psnr_db"] < 60
    assert result["mean"] == row
    arms = result["ablation"]
    assert arms["category"] == "brick" and arms["scratch"]["steps"] >= 1 and arms["pretrained"]["steps"] >= 1
