"""benchmarks/bench_average.py --quick scores the last weights and their average at each snapshot."""

from __future__ import annotations

from _bench import run_benchmark


def test_bench_average_quick_prints_json_line():
    result = run_benchmark("bench_average.py", "--quick", timeout=600)
    assert result["benchmark"] == "weight_average" and list(result["categories"]) == ["brick"]
    brick = result["categories"]["brick"]
    assert brick["steps"] == [2, 4]
    for arm in ("last", "average"):
        for values in brick[arm].values():
            assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
        summary = result["summary"][arm]
        assert 0.0 <= summary["test_pixel"] <= 1.0 and summary["test_pixel_spread"] >= 0.0
    assert brick["last"] != brick["average"]  # two different models were scored
