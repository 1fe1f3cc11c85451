"""Where in the gap of F1-optimal image thresholds should calibration put the threshold?

    python tools/threshold_gap.py                  # ~3 min on one CPU thread

Held-out normals and the synthetic anomalies made from them usually separate completely, so every
threshold between the highest normal score and the lowest synthetic score is F1-optimal on the
calibration set. This tool measures, for the shipped mini models, how thresholds placed at
several fractions of that gap decide on real (mini) defects:

- calibration set: the 30 normal images ``tools/calibrate_shipped.py`` uses (mini seed 1's
  ``train/good``) and their synthetic anomalies, scored as :func:`diffad_core.calibration.calibrate` does;
- judged on: the *test* sets of mini seeds 1 and 2 (never seed 0, the demo's and the quality
  table's own); seed 1's test images come after its 60 training images in the generator's stream,
  so they are not calibration images;
- besides all 30 normals, ``--draws`` random draws of ``--held-out`` normals (and as many synthetic
  anomalies), the share ``fit`` holds out of the mini benchmark's 60 training images.

Prints precision / recall / share of normal test images flagged / F1 per category and fraction,
their means, and a JSON line. Stop 26 used it to move ``calibration.GAP_FRACTION`` from the
midpoint (0.5) to 0.01 (docs/results.md, "Decision thresholds: where in the gap").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffad_core import PRETRAINED, EvalConfig, category_kind, load_model, load_tensors, make_mini_benchmark, open_dataset  # noqa: E402
from diffad_core.calibration import _synthetic_set, at_threshold  # noqa: E402
from diffad_core.inference import predict_split  # noqa: E402
from diffad_core.pretrained import WEIGHTS_DIR  # noqa: E402

VAL_SEEDS = (1, 2)
N_NORMALS = 30


def gap_threshold(normal: np.ndarray, synthetic: np.ndarray, fraction: float) -> float:
    """The threshold ``fraction`` of the way from the highest normal score to the lowest synthetic one.

    Raises ValueError when the two overlap (then there is no gap to place it in).
    """
    high, low = float(np.max(normal)), float(np.min(synthetic))
    if low <= high:
        raise ValueError(f"normal and synthetic scores overlap (normal max {high:.4g} >= synthetic min {low:.4g})")
    return high + fraction * (low - high)


def decisions(scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """(precision, recall, share of normals flagged, F1) of "score >= threshold means defect".

    Precision is 0 when nothing is flagged (so that means over draws stay defined).
    """
    m = at_threshold(scores, labels, threshold)
    flagged = at_threshold(scores, np.asarray(labels) == 0, threshold)["recall"]
    return np.nan_to_num(np.array([m["precision"], m["recall"], flagged, m["f1"]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25, 0.01, 0.0])
    parser.add_argument("--held-out", type=int, default=6, help="normals per random draw (fit holds out 6 of 60)")
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    sizes = {"all": N_NORMALS, "draws": args.held_out}
    table: dict[str, dict[str, dict[str, list[float]]]] = {k: {} for k in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        calib_root = make_mini_benchmark(Path(tmp) / "calib", seed=1, categories=list(PRETRAINED), num_train=N_NORMALS,
                                         num_test_good=1, num_per_defect=1)
        val_roots = [make_mini_benchmark(Path(tmp) / f"seed{s}", seed=s, categories=list(PRETRAINED)) for s in VAL_SEEDS]
        for category, name in PRETRAINED.items():
            model = load_model(WEIGHTS_DIR / name)
            model.calibration = None
            size = model.image_size
            train = load_tensors(open_dataset(calib_root, category, "train", image_size=size))
            scores, labels, _, _ = _synthetic_set(model, train.images, category_kind(category, "mini"), train.foreground,
                                                  EvalConfig(seed=0), 0, None)
            normal, synthetic = scores[labels == 0], scores[labels == 1]
            tests = [predict_split(model, load_tensors(open_dataset(r, category, "test", image_size=size)),
                                   EvalConfig(num_figures=0, device="cpu")) for r in val_roots]
            for key, k in sizes.items():
                rows = {f: [] for f in args.fractions}
                for _ in range(1 if k == N_NORMALS else args.draws):
                    pick_n = rng.choice(len(normal), k, replace=False) if k < len(normal) else slice(None)
                    pick_s = rng.choice(len(synthetic), min(k, len(synthetic)), replace=False) if k < len(normal) else slice(None)
                    for f in args.fractions:
                        thr = gap_threshold(normal[pick_n], synthetic[pick_s], f)
                        rows[f] += [decisions(t.scores, t.labels, thr) for t in tests]
                table[key][category] = {f"{f:g}": np.mean(v, axis=0).tolist() for f, v in rows.items()}
                print(f"{category:7s} {k:2d} normals  " + "  ".join(
                    f"{f}: " + "/".join(f"{100 * x:.1f}" for x in v) for f, v in table[key][category].items()), flush=True)
    means = {key: {f: np.mean([per[f] for per in cats.values()], axis=0).tolist() for f in next(iter(cats.values()))}
             for key, cats in table.items()}
    for key, k in sizes.items():
        print(f"mean, {k} normals (precision / recall / normals flagged / F1): " + "  ".join(
            f"{f}: " + "/".join(f"{100 * x:.1f}" for x in v) for f, v in means[key].items()))
    print(json.dumps({"per_category": table, "mean": means, "held_out": args.held_out, "draws": args.draws}))


if __name__ == "__main__":
    main()
