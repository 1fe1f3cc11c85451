"""Run a script of benchmarks/ in a subprocess and return the JSON object of its last line.

Shared by the tests/test_benchmarks_*.py files. Every benchmark ends by printing one JSON object;
these tests check that the script runs and reports what it promises, never how fast anything is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: How much of a failing script's stderr the assertion message shows.
STDERR_TAIL = 3000


def run_benchmark(script: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``python benchmarks/<script> *args`` from the repository root and parse its last line.

    The checkout is put first on PYTHONPATH, so the scripts import this tree's ``diffad_core``
    whether or not it is installed. A non-zero exit fails the calling test with the tail of the
    script's stderr; a run longer than ``timeout`` seconds raises ``subprocess.TimeoutExpired``.
    """
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} exited with {proc.returncode}:\n{proc.stderr[-STDERR_TAIL:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{script} printed nothing on stdout; stderr:\n{proc.stderr[-STDERR_TAIL:]}"
    return json.loads(lines[-1])
