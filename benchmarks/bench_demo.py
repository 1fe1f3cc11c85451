"""Benchmark: how many training steps each demo category gets in the same wall-clock time.

Four plans train the ``tiny`` preset from the pretrained start on two mini categories, each plan
for the same wall-clock time ``2 x S`` on the CPU:

* ``sequential_fp32``: one category after the other, ``S`` seconds each, one process with every
  core's thread, float32 (how ``diffad demo`` trained before it had a plan);
* ``parallel_fp32``: both categories at once for ``2 x S`` seconds, one process and one thread each;
* ``parallel_plan``: the same with the demo's own plan (:func:`diffad_core.pipeline.demo_plan`:
  processes x threads; bf16 autocast when :func:`diffad_core.runtime.cpu_has_native_bf16`);
* ``parallel_demo``: the plan with every setting the demo adds on a CPU
  (:func:`diffad_core.pipeline.demo_settings`: bf16 where native and, from the pretrained start,
  the reconstruction UNet frozen and, with bf16, its passes channels-last and in OpenVINO where
  installed), i.e. the SegNet steps a demo category really gets.

Steps per category are what a demo category gets; the ratios split the gain between the processes,
bf16 and the frozen UNet. Every arm runs in fresh worker processes, so no thread setting leaks between arms. Run it
on a quiet machine (the JSON line records the load average at the start).

    python benchmarks/bench_demo.py --seconds 60     # 4 plans x 120 s, about 9 min with set-up
    python benchmarks/bench_demo.py --quick          # tests: 3 s per category

The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional

from common import emit, environment

from diffad_core import TrainConfig, make_mini_benchmark
from diffad_core.pipeline import DemoPlan, demo_plan, demo_settings, train_category
from diffad_core.runtime import available_cores, cpu_has_native_bf16

CATEGORIES = ("brick", "pill")


def _steps(root: Path, category: str, seconds: float, threads: int, settings: dict[str, Any], out: Path) -> int:
    """Train ``category`` for ``seconds`` of wall clock in this (worker) process; the steps done."""
    config = TrainConfig.from_preset("tiny", minutes=seconds / 60, device="cpu", **settings)
    return train_category(root, category, config, out, progress=False, threads=threads, log=None).steps


def _plan(root: Path, tmp: Path, name: str, plan: DemoPlan, *, seconds: float, **settings: Any) -> dict[str, Any]:
    """Train every category as ``plan`` says, with ``settings`` (TrainConfig overrides), in
    ``len(CATEGORIES) x seconds`` of wall clock (the demo's split)."""
    each = plan.minutes_each(seconds * len(CATEGORIES), len(CATEGORIES))
    with ProcessPoolExecutor(plan.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {c: pool.submit(_steps, root, c, each, plan.threads, settings, tmp / name / c) for c in CATEGORIES}
        steps = {c: f.result() for c, f in futures.items()}
    return {"processes": plan.workers, "threads": plan.threads, "amp": settings.get("amp", "auto"),
            "unet_frozen": settings.get("lr_unet") == 0, "channels_last": bool(settings.get("channels_last")),
            "unet_engine": settings.get("unet_engine", "torch"),
            "seconds_per_category": round(each, 1),
            "steps": steps, "mean_steps": sum(steps.values()) / len(steps)}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="S: a category's time in the sequential plan")
    parser.add_argument("--quick", action="store_true", help="S = 3 s (tests)")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else args.seconds
    cores = available_cores()
    plan = demo_plan(len(CATEGORIES), "cpu")
    bf16 = cpu_has_native_bf16()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="diffad-demo-bench-") as tmp_name:
        tmp = Path(tmp_name)
        root = make_mini_benchmark(tmp / "mini", seed=0, categories=list(CATEGORIES))
        arms = {
            "sequential_fp32": _plan(root, tmp, "seq", DemoPlan(1, cores), amp="off", seconds=seconds),
            "parallel_fp32": _plan(root, tmp, "par", plan, amp="off", seconds=seconds),
            "parallel_plan": _plan(root, tmp, "plan", plan, amp="bf16" if bf16 else "off", seconds=seconds),
            "parallel_demo": _plan(root, tmp, "demo", plan, seconds=seconds, **{"amp": "off", **demo_settings("cpu")}),
        }
    base = arms["sequential_fp32"]["mean_steps"]
    return emit({
        "benchmark": "demo_plan", "device": f"cpu ({cores} cores)", "native_bf16": bf16,
        "load_average_at_start": round(load, 2), "categories": list(CATEGORIES), "arms": arms,
        "ratio_processes": round(arms["parallel_fp32"]["mean_steps"] / base, 2),
        "ratio_plan": round(arms["parallel_plan"]["mean_steps"] / base, 2),
        "ratio_demo": round(arms["parallel_demo"]["mean_steps"] / base, 2),
        **environment(),
    })


if __name__ == "__main__":
    main()
