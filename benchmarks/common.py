"""Shared helpers of the speed benchmarks: device choice, synchronised timing, memory, the JSON line.

Every benchmark ends by printing one JSON object on its last stdout line (:func:`emit`); tests and
``benchmarks/gpu_suite.sh`` read that line. Timings are wall clock (``time.perf_counter``) read
after ``torch.cuda.synchronize()`` on CUDA, so queued GPU work is inside the interval.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

try:
    import diffad_core  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pick_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU (the library's own rule, :func:`resolve_device`)."""
    from diffad_core.runtime import resolve_device

    return resolve_device(name)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int = 1) -> float:
    """Best wall-clock seconds of ``repeat`` calls of ``fn`` (synchronised before and after)."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> Optional[float]:
    """Peak memory allocated by tensors on a CUDA device since the last reset (GB = 1e9 B); None on CPU."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3)


def process_peak_rss_gb() -> float:
    """The process's peak resident set size so far (GB), for CPU runs (it never goes down)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return round(kb / 1e6, 3)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads, {platform.machine()})"


def environment() -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version()}


def emit(result: dict[str, Any]) -> dict[str, Any]:
    """Print ``result`` as the last stdout line (one JSON object) and return it."""
    print(json.dumps(result), flush=True)
    return result
