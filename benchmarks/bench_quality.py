"""Benchmark: detection and reconstruction quality of the shipped mini models, and the ablation
"scratch vs pretrained start at equal CPU minutes".

Per mini category, the shipped model (``diffad_core.load_pretrained``) is evaluated on a freshly
generated mini benchmark (seed 0) at the paper's inference setting (t_s = 200, t_b = 400, w = 1,
top-50 image score): image AUROC, pixel AUROC, AUPRO, and the PSNR (dB) of the norm-guided
reconstruction x0_g of the normal test images against the input.

``--ablation CATEGORY --minutes M`` also trains the ``tiny`` preset on that category twice for M
minutes of wall clock each (``init="scratch"`` and ``init="pretrained"``, same seed, same
machine, one after the other) and evaluates both the same way.

    python benchmarks/bench_quality.py                                   # shipped models, ~1 min
    python benchmarks/bench_quality.py --ablation brick --minutes 5      # + 2 x 5 min training
    python benchmarks/bench_quality.py --quick                           # tests: brick, tiny budget

The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from common import device_name, emit, environment

from diffad_core import EvalConfig, MINI_CATEGORIES, TrainConfig, evaluate, fit, load_pretrained, make_mini_benchmark, open_dataset
from diffad_core.data import category_kind
from diffad_core.inference import reconstruction_psnr

_KEYS = ("image_auroc", "pixel_auroc", "aupro")


def quality(model: Any, root: Path, category: str, config: EvalConfig) -> dict[str, float]:
    """Image / pixel AUROC, AUPRO and normal-image PSNR of ``model`` on one mini category."""
    test = open_dataset(root, category, "test", image_size=model.image_size)
    result = evaluate(model, test, config, category=category)
    out = {k: round(float(result.metrics[k]), 4) for k in _KEYS}
    out["psnr_db"] = round(reconstruction_psnr(model, test, config), 2)
    return out


def _mean(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = next(iter(rows.values())).keys()
    return {k: round(float(np.mean([r[k] for r in rows.values()])), 4) for k in keys}


def ablation(root: Path, category: str, minutes: float, config: EvalConfig, image_size: int) -> dict[str, Any]:
    """Train tiny from scratch and from the pretrained start for ``minutes`` each; evaluate both."""
    train = open_dataset(root, category, "train", image_size=image_size)
    out: dict[str, Any] = {"category": category, "minutes": minutes}
    for init in ("scratch", "pretrained"):
        cfg = TrainConfig.from_preset("tiny", image_size=image_size, minutes=minutes, init=init)
        result = fit(cfg, train, kind=category_kind(category, "mini"), progress=False)
        out[init] = {**quality(result.model, root, category, config), "steps": result.steps}
    return out


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini-root", type=Path, default=None, help="existing mini benchmark (default: generate one)")
    parser.add_argument("--categories", nargs="+", default=None, help="default: every category with shipped weights")
    parser.add_argument("--ablation", default=None, metavar="CATEGORY", help="also run scratch vs pretrained on it")
    parser.add_argument("--minutes", type=float, default=5.0, help="training minutes per ablation arm")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="brick only; ablation of 0.1 min per arm")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    categories = args.categories or (["brick"] if args.quick else list(MINI_CATEGORIES))
    config = EvalConfig(device="cpu" if not torch.cuda.is_available() else "auto", num_figures=0)
    with tempfile.TemporaryDirectory(prefix="diffad-quality-") as tmp:
        root = args.mini_root or make_mini_benchmark(Path(tmp) / "mini", seed=0, categories=categories)
        rows = {c: quality(load_pretrained(c), Path(root), c, config) for c in categories}
        result: dict[str, Any] = {
            "benchmark": "quality", "device": device_name(torch.device(config.device if config.device != "auto" else "cpu")),
            "t_s": config.t_s, "t_b": config.t_b, "w": config.w, "categories": rows, "mean": _mean(rows),
        }
        target = args.ablation or ("brick" if args.quick else None)
        if target is not None:
            minutes = 0.1 if args.quick else args.minutes
            if args.mini_root is None and target not in categories:
                make_mini_benchmark(Path(root), seed=0, categories=[target])
            result["ablation"] = ablation(Path(root), target, minutes, config, image_size=64)
    result.update(environment())
    return emit(result)


if __name__ == "__main__":
    main()
