"""benchmarks/bench_metrics.py --quick runs and ends with its JSON result line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "benchmark", "device", "preset", "image_size", "n_maps", "aupro_exact_s", "aupro_1000thr_s",
    "aupro_speedup", "aupro_exact", "aupro_1000thr", "aupro_abs_diff",
}


def test_bench_metrics_quick_prints_json_line():
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_metrics.py"), "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert result["benchmark"] == "metrics" and result["device"] == "cpu"
    assert result["preset"] is None
    assert (result["n_maps"], result["image_size"]) == (20, 64)
    assert 0.0 < result["aupro_exact"] <= 1.0 and 0.0 < result["aupro_1000thr"] <= 1.0
    # The binned estimate is close to the exact value (they differ by binning only).
    assert result["aupro_abs_diff"] < 0.02
    diff = abs(result["aupro_exact"] - result["aupro_1000thr"])
    assert abs(result["aupro_abs_diff"] - diff) < 2e-6
