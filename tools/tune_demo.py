"""Score demo training settings on validation test sets, never on the demo's own test set.

    python tools/tune_demo.py --out runs/tune/base
    python tools/tune_demo.py --out runs/tune/b8 --set batch_size=8 --set lr_seg=3e-3

Trains every mini category the way ``diffad demo`` does (the ``tiny`` preset from the pretrained
start, on the seed-0 mini benchmark's ``train/good`` images, :func:`diffad_core.pipeline.demo_plan`'s
processes and threads, :func:`diffad_core.pipeline.demo_settings` (bf16 on CPUs with native bf16,
a frozen reconstruction UNet), ``--minutes`` of wall clock per category)
with the ``--set`` overrides of :class:`~diffad_core.TrainConfig`, and evaluates each model on the
*test* sets of other mini seeds (``--val-seeds``, default 1 and 2): the same generator, other
images and defects, none of them seen by the demo, the pretraining corpus (seed-0 training images)
or the shipped models. Prints the mean over the validation seeds per category and overall, and a
JSON line at the end. Settings are chosen on these figures; the demo's own seed-0 test set only
reports the choice.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffad_core import MINI_CATEGORIES, EvalConfig, TrainConfig, make_mini_benchmark  # noqa: E402
from diffad_core.config import DEMO_MINUTES  # noqa: E402
from diffad_core.pipeline import demo_plan, demo_settings, evaluate_category, train_category  # noqa: E402

KEYS = ("image_auroc", "pixel_auroc", "aupro")


def parse_setting(text: str) -> tuple[str, Any]:
    """``name=value`` for a TrainConfig field; the value is read as JSON when it parses, else as text."""
    name, sep, value = text.partition("=")
    known = {f.name for f in fields(TrainConfig)}
    if not sep or name not in known:
        raise SystemExit(f"--set {text!r}: expected name=value with name one of {sorted(known)}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def run_category(train_root: Path, val_roots: list[Path], category: str, config: TrainConfig, out: Path,
                 threads: int) -> dict[str, Any]:
    fit = train_category(train_root, category, config, out / category / "train", progress=False, threads=threads,
                         log=None)
    scores = [evaluate_category(fit.weights, root, category, None, EvalConfig(num_figures=0), threads=threads).metrics
              for root in val_roots]
    return {"steps": fit.steps, **{k: float(np.mean([s[k] for s in scores])) for k in KEYS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", dest="settings", action="append", default=[], type=parse_setting,
                        help="a TrainConfig override, name=value (repeatable)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training wall clock per category (default: the demo's share of DEMO_MINUTES)")
    parser.add_argument("--val-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--categories", nargs="+", choices=MINI_CATEGORIES, default=list(MINI_CATEGORIES))
    args = parser.parse_args()
    if 0 in args.val_seeds:
        raise SystemExit("--val-seeds must not contain 0: seed 0's test set is the demo's own")
    plan = demo_plan(len(args.categories), "cpu")
    if args.minutes is None:
        args.minutes = plan.minutes_each(DEMO_MINUTES, len(args.categories))
    settings = dict(args.settings)
    demo = demo_settings("cpu", "tiny", settings.get("init"), amp=settings.get("amp"), lr_unet=settings.get("lr_unet"))
    overrides = {**demo, **settings}  # the demo's unless --set says otherwise
    config = TrainConfig.from_preset("tiny", minutes=args.minutes, device="cpu", **overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    train_root = args.out.parent / "data-seed0"
    if not (train_root / args.categories[0] / "train").is_dir():
        make_mini_benchmark(train_root, seed=0)
    val_roots = []
    for seed in args.val_seeds:
        root = args.out.parent / f"data-seed{seed}"
        if not (root / args.categories[0] / "test").is_dir():
            make_mini_benchmark(root, seed=seed)
        val_roots.append(root)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(plan.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {c: pool.submit(run_category, train_root, val_roots, c, config, args.out, plan.threads)
                   for c in args.categories}
        results = {c: f.result() for c, f in futures.items()}
    label = " ".join(f"{k}={v}" for k, v in overrides.items())
    print(f"settings: {label} ({plan.workers} processes x {plan.threads} thread(s), {args.minutes} min each, "
          f"validation seeds {args.val_seeds}, {time.perf_counter() - t0:.0f} s)")
    for c, r in results.items():
        print(f"  {c:8s} {r['steps']:5d} steps  " + "  ".join(f"{k} {100 * r[k]:5.1f}" for k in KEYS))
    mean = {k: float(np.mean([r[k] for r in results.values()])) for k in KEYS}
    print("  mean                " + "  ".join(f"{k} {100 * mean[k]:5.1f}" for k in KEYS))
    print(json.dumps({"settings": overrides, "minutes": args.minutes, "val_seeds": args.val_seeds,
                      "mean": mean, "categories": results}))


if __name__ == "__main__":
    main()
