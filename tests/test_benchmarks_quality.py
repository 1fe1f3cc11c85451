"""benchmarks/bench_quality.py --quick evaluates a shipped model and runs a short ablation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quality_quick_prints_json_line():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_quality.py"), "--quick", "--threads", "1"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "quality" and (result["t_s"], result["t_b"], result["w"]) == (200, 400, 1.0)
    row = result["categories"]["brick"]
    assert set(row) == {"image_auroc", "pixel_auroc", "aupro", "psnr_db"}
    assert all(0.0 <= row[k] <= 1.0 for k in ("image_auroc", "pixel_auroc", "aupro")) and 5 < row["psnr_db"] < 60
    assert result["mean"] == row
    arms = result["ablation"]
    assert arms["category"] == "brick" and arms["scratch"]["steps"] >= 1 and arms["pretrained"]["steps"] >= 1
