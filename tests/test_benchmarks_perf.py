"""benchmarks/bench_inference.py and bench_train.py --quick run on the CPU and end with their JSON line.

These check that the benchmarks run and report what they promise, never how fast anything is.
"""

from __future__ import annotations

import pytest

from _bench import run_benchmark

INFERENCE_KEYS = {
    "benchmark", "device", "preset", "image_size", "batch", "released_style_img_s", "fast_img_s", "speedup",
    "onestep_vs_ddpm1000_ratio", "onestep_vs_ddpm_ts_ratio", "ddpm_extrapolated", "onestep_s", "ddpm1000_s",
    "ddpm_ts_s",
}
TRAIN_KEYS = {
    "benchmark", "device", "preset", "image_size", "batch", "fp32_step_s", "fast_step_s", "speedup",
    "peak_mem_gb", "fp32_peak_mem_gb",
}


def _run(script: str) -> dict:
    return run_benchmark(script, "--quick", "--device", "cpu", "--threads", "1")


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_bench_inference_quick_prints_json_line() -> None:
    result = _run("bench_inference.py")
    assert INFERENCE_KEYS <= set(result), INFERENCE_KEYS - set(result)
    assert result["benchmark"] == "inference" and result["device"].startswith("cpu")
    assert (result["preset"], result["image_size"], result["batch"]) == ("tiny", 64, 4)
    for key in ("released_style_img_s", "fast_img_s", "speedup", "onestep_s", "ddpm1000_s", "ddpm_ts_s",
                "onestep_vs_ddpm1000_ratio", "onestep_vs_ddpm_ts_ratio"):
        assert _positive(result[key]), (key, result[key])
    # On the CPU a few DDPM steps are measured and extrapolated, and the JSON says so.
    assert result["ddpm_extrapolated"] is True and result["ddpm_steps_measured"] == 3
    assert result["speedup"] == pytest.approx(result["fast_img_s"] / result["released_style_img_s"], rel=0.02)
    # 1000 vs 201 UNet calls at the same time per call.
    assert result["ddpm1000_s"] / result["ddpm_ts_s"] == pytest.approx(1000 / 201, rel=0.01)


def test_bench_train_quick_prints_json_line() -> None:
    result = _run("bench_train.py")
    assert TRAIN_KEYS <= set(result), TRAIN_KEYS - set(result)
    assert result["benchmark"] == "train" and result["device"].startswith("cpu")
    assert (result["preset"], result["image_size"], result["batch"]) == ("tiny", 64, 4)
    assert _positive(result["fp32_step_s"]) and _positive(result["fast_step_s"])
    assert result["speedup"] == pytest.approx(result["fp32_step_s"] / result["fast_step_s"], rel=0.02)
    # No CUDA memory on the CPU: null, with the process's peak RSS beside it.
    assert result["peak_mem_gb"] is None and result["fp32_peak_mem_gb"] is None
    assert _positive(result["cpu_peak_rss_gb"])
    assert result["fast_compile"] is False
    # Efficiency: counted FLOPs over measured time, beside the CPU peak estimate.
    assert result["step_gflop"] > 1 and result["threads"] == 1 and _positive(result["cpu_bf16_step_s"])
    assert result["fp32_gflop_s"] == pytest.approx(result["step_gflop"] / result["fp32_step_s"], rel=0.02)
    if result["peak_gflop_s"] is not None:
        assert result["efficiency"] == pytest.approx(result["fp32_gflop_s"] / result["peak_gflop_s"], rel=0.02)
