"""benchmarks/bench_demo.py --quick compares the demo's training plans and prints a JSON line."""

from __future__ import annotations

from _bench import run_benchmark

from diffad_core.engine import openvino_available


def test_bench_demo_quick_prints_json_line():
    result = run_benchmark("bench_demo.py", "--quick", timeout=600)
    assert result["benchmark"] == "demo_plan" and result["categories"] == ["brick", "pill"]
    arms = result["arms"]
    assert set(arms) == {"sequential_fp32", "parallel_fp32", "parallel_plan", "parallel_demo"}
    assert arms["parallel_demo"]["unet_frozen"] and not arms["parallel_plan"]["unet_frozen"]
    assert arms["sequential_fp32"]["processes"] == 1 and arms["sequential_fp32"]["amp"] == "off"
    assert arms["parallel_plan"]["amp"] == ("bf16" if result["native_bf16"] else "off")
    assert arms["parallel_demo"]["channels_last"] == result["native_bf16"] and not arms["parallel_plan"]["channels_last"]
    engine = "openvino" if result["native_bf16"] and openvino_available() else "torch"
    assert arms["parallel_demo"]["unet_engine"] == engine and arms["parallel_plan"]["unet_engine"] == "torch"
    for arm in arms.values():
        assert set(arm["steps"]) == {"brick", "pill"} and min(arm["steps"].values()) >= 1
    assert result["ratio_plan"] > 0 and result["ratio_processes"] > 0 and result["ratio_demo"] > 0
