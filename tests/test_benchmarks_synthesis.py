"""Runs benchmarks/bench_synthesis.py in its quick mode (tiny images) and checks its JSON line."""

from __future__ import annotations

from _bench import run_benchmark


def test_bench_synthesis_quick_prints_json():
    result = run_benchmark("bench_synthesis.py", "--quick", "--image-size", "32", "--batch", "4", "--batches", "2",
                           "--device", "cpu",
                           "--large-batch", "8", "--train-steps", "tiny")
    expected = {"benchmark", "device", "image_size", "batch", "batched_img_s", "per_sample_img_s", "ratio"}
    assert expected <= set(result)
    assert result["benchmark"] == "synthesis" and result["device"] == "cpu"
    assert result["image_size"] == 32 and result["batch"] == 4
    assert result["batched_img_s"] > 0 and result["per_sample_img_s"] > 0
    assert abs(result["ratio"] - result["batched_img_s"] / result["per_sample_img_s"]) < 0.05
    assert result["large_batch"] == 8 and result["batched_img_s_large"] > 0 and result["per_sample_img_s_large"] > 0
    assert abs(result["ratio_large"] - result["batched_img_s_large"] / result["per_sample_img_s_large"]) < 0.05
    assert result["tiny64_step_s"] > 0 and result["tiny64_synthesis_s"] > 0
    assert 0 < result["tiny64_synthesis_share"] < 1
    assert "paper256_synthesis_share" not in result  # --train-steps tiny skips the paper step
    assert "gpu_img_s" not in result
