"""Benchmark: how much a short run's last snapshot swings, and whether the weight average steadies it.

Per mini category, the ``tiny`` preset trains from the pretrained start as ``make demo`` does
(batch 16, bf16 autocast where the CPU has native bf16) for ``--first`` steps, then on in
``--every``-step pieces (exact resumes) up to ``--snapshots`` snapshots, with the weight average
of ``TrainConfig.ema_decay = --decay`` kept beside the live weights. At every snapshot both the
last step's weights ("last") and their average ("average") are scored

* on synthetic anomalies of fresh normal images (``make_mini_benchmark(seed=1)``'s train/good,
  neither a training nor a test image; :func:`diffad_core.calibration.synthetic_auroc`): what a
  setting may be chosen on;
* on the mini test set (seed 0): reported, never used to choose.

Categories train in parallel processes (``--workers``, 1 thread each, as the demo on 2 cores).

    python benchmarks/bench_average.py                      # 4 categories, 240..290 steps, ~25 min
    python benchmarks/bench_average.py --quick              # tests: brick, 2 + 2 steps

The last stdout line is one JSON object: per category and arm the values at each snapshot, and
over all snapshots and categories the mean and the mean spread (max - min over a run's snapshots).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np

from common import emit, environment

_ARMS = {"last": "model", "average": "average"}  # arm -> checkpoint entry
_METRICS = ("synthetic_image", "synthetic_pixel", "test_image", "test_pixel", "test_aupro")


def _category(category: str, root: Path, fresh: Path, run: Path, first: int, every: int, snapshots: int,
              decay: float, amp: str) -> dict[str, Any]:
    """Train one category snapshot by snapshot and score both arms at each (runs in a worker)."""
    import torch

    from diffad_core import DiffusionAD, EvalConfig, TrainConfig, evaluate, fit, load_tensors, open_dataset
    from diffad_core.calibration import synthetic_auroc
    from diffad_core.checkpoint import load_checkpoint
    from diffad_core.data import category_kind
    from diffad_core.model import ModelConfig

    torch.set_num_threads(1)
    kind = category_kind(category, "mini")
    train = open_dataset(root, category, "train", image_size=64)
    test = open_dataset(root, category, "test", image_size=64)
    normal = load_tensors(open_dataset(fresh, category, "train", image_size=64))
    config = EvalConfig(device="cpu", num_figures=0)
    out: dict[str, Any] = {"steps": [], **{arm: {m: [] for m in _METRICS} for arm in _ARMS}}
    for i in range(snapshots):
        steps = first + i * every
        cfg = TrainConfig.from_preset("tiny", steps=steps, ema_decay=decay, amp=amp, device="cpu")
        fit(cfg, train, kind=kind, out_dir=run, resume=i > 0, progress=False)
        state = load_checkpoint(run / "checkpoint.pt")
        out["steps"].append(int(state["step"]))
        for arm, entry in _ARMS.items():
            model = DiffusionAD(ModelConfig.from_dict(state["model_config"]))
            model.load_state_dict(state[entry])
            model.eval()
            synthetic = synthetic_auroc(model, normal.images, kind=kind, foreground=normal.foreground,
                                        config=config, seed=1)
            metrics = evaluate(model, test, config, category=category).metrics
            values = (synthetic["image_auroc"], synthetic["pixel_auroc"], metrics["image_auroc"],
                      metrics["pixel_auroc"], metrics["aupro"])
            for name, value in zip(_METRICS, values):
                out[arm][name].append(round(float(value), 4))
    return out


def _summary(per: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per arm and metric: the mean over every snapshot of every category, and the mean spread."""
    summary: dict[str, dict[str, float]] = {}
    for arm in _ARMS:
        summary[arm] = {}
        for m in _METRICS:
            runs = [np.asarray(per[c][arm][m]) for c in per]
            summary[arm][m] = round(float(np.mean(np.concatenate(runs))), 4)
            summary[arm][m + "_spread"] = round(float(np.mean([r.max() - r.min() for r in runs])), 4)
    return summary


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    from diffad_core import MINI_CATEGORIES, make_mini_benchmark
    from diffad_core.runtime import cpu_has_native_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", nargs="+", default=None, help="default: the four mini categories")
    parser.add_argument("--first", type=int, default=240, help="steps at the first snapshot")
    parser.add_argument("--every", type=int, default=10, help="steps between snapshots")
    parser.add_argument("--snapshots", type=int, default=6)
    parser.add_argument("--decay", type=float, default=0.99, help="ema_decay of the weight average")
    parser.add_argument("--workers", type=int, default=2, help="categories trained at once (1 thread each)")
    parser.add_argument("--quick", action="store_true", help="brick only, 2 + 2 steps (tests)")
    args = parser.parse_args(argv)
    categories = args.categories or (["brick"] if args.quick else list(MINI_CATEGORIES))
    first, every, snapshots = (2, 2, 2) if args.quick else (args.first, args.every, args.snapshots)
    amp = "bf16" if cpu_has_native_bf16() else "off"
    with tempfile.TemporaryDirectory(prefix="diffad-average-") as tmp:
        root = make_mini_benchmark(Path(tmp) / "mini", seed=0, categories=categories)
        fresh = make_mini_benchmark(Path(tmp) / "fresh", seed=1, categories=categories, num_train=40,
                                    num_test_good=1, num_per_defect=1)
        jobs = [(c, Path(root), Path(fresh), Path(tmp) / "runs" / c, first, every, snapshots, args.decay, amp)
                for c in categories]
        with ProcessPoolExecutor(min(args.workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            per = dict(zip(categories, pool.map(_category, *zip(*jobs))))
    result = {"benchmark": "weight_average", "decay": args.decay, "amp": amp, "categories": per,
              "summary": _summary(per), **environment()}
    return emit(result)


if __name__ == "__main__":
    main()
