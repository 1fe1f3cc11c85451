"""Shared helpers of the reliability suites: outcome counters and the one-clear-error checks.

The fuzz and fault tests call :func:`record` once per input tried or fault injected. When the
environment variable ``DIFFAD_RELIABILITY_COUNTS`` names a JSON file (``make reliability`` sets it
to ``tests/reliability_counts.json``), each test module merges its rows into that file when it
finishes (:func:`flush`); ``tools/reliability_table.py`` renders the README table from it. Without
the variable nothing is written, so ordinary test runs leave the committed counts alone.

Row layout in the JSON file::

    {"rows": {"<area>": {"order": 10, "inputs": {"<kind>": n, ...}, "outcomes": {"<outcome>": n}}}}
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest

COUNTS_ENV = "DIFFAD_RELIABILITY_COUNTS"

#: Table rows, in README order: area -> (order, what the row tried).
AREAS: dict[str, int] = {
    "image and mask files (readers)": 10,
    "image modes, sizes and bit depths (readers)": 20,
    "masks vs image sizes (readers)": 30,
    "metric inputs (scores, labels, maps)": 40,
    "CLI flags": 50,
    "training killed (SIGKILL) and resumed": 60,
    "checkpoint / weights write failures (ENOSPC)": 70,
    "non-finite loss or weights": 80,
    "malicious or foreign checkpoints": 90,
    "same seed twice (determinism)": 100,
}

#: The outcomes a row may report; anything else is a test failure, never a count.
OK = "correct result"
CLEAR_ERROR = "one clear error naming the input"
CLI_EXIT_2 = "exit 2, one-line message"
SAME_WEIGHTS = "resumed to identical weights"
KEPT = "previous checkpoint kept intact"
REFUSED = "refused, nothing executed"
IDENTICAL = "identical results"

_inputs: dict[str, Counter] = {}
_outcomes: dict[str, Counter] = {}


def record(area: str, kind: str, outcome: str, n: int = 1) -> None:
    """Count ``n`` inputs of ``kind`` tried in ``area`` that ended in ``outcome``."""
    if area not in AREAS:
        raise KeyError(f"unknown reliability area {area!r}; add it to tests/reliability.py AREAS")
    _inputs.setdefault(area, Counter())[kind] += n
    _outcomes.setdefault(area, Counter())[outcome] += n


def flush(path: Optional[str] = None) -> Optional[Path]:
    """Merge the rows counted in this process into the JSON file named by ``COUNTS_ENV``.

    Rows recorded here replace the same rows in the file; other rows are kept. Returns the path
    written, or None when the variable is unset.
    """
    target = path or os.environ.get(COUNTS_ENV)
    if not target or not _inputs:
        return None
    file = Path(target)
    data = json.loads(file.read_text()) if file.is_file() else {"rows": {}}
    for area in _inputs:
        data["rows"][area] = {
            "order": AREAS[area],
            "inputs": dict(sorted(_inputs[area].items())),
            "outcomes": dict(sorted(_outcomes[area].items())),
        }
    data["rows"] = dict(sorted(data["rows"].items(), key=lambda kv: kv[1]["order"]))
    file.write_text(json.dumps(data, indent=2) + "\n")
    return file


@pytest.fixture(scope="module", autouse=True)
def flush_counts_after_module():
    """Autouse in every module that imports it: write the counts when the module is done."""
    yield
    flush()


def assert_names(message: str, *names: str) -> None:
    """The error message names at least one of ``names`` (file names or values)."""
    assert any(n in message for n in names), f"error does not name any of {names}: {message!r}"


def assert_one_line_cli_error(code: int, stderr: str, *needles: str) -> None:
    """A CLI user error: exit status 2, exactly one non-empty stderr line 'diffad...error...'."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (code, stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {stderr!r}"
    assert lines[0].startswith("diffad") and "error" in lines[0], lines[0]
    assert "Traceback" not in stderr
    if needles:
        assert_names(lines[0], *needles)


def fuzz_settings(max_examples: int):
    """Bounded, deterministic hypothesis settings: CI sees the same examples on every run."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
