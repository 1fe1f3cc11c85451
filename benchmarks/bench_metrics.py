"""Benchmark: exact AUPRO (diffad_core.metrics.aupro) vs a released-style 1000-threshold loop.

What the figure stands for: the time to score the AUPRO of one test set of ``--n-maps`` anomaly
maps of ``--image-size`` pixels on the CPU, and how far the binned estimate of the released
DiffusionAD evaluation code lies from the exact value on the same maps.

The released-style loop follows the released ``eval.py`` recipe, written here from scratch and
made reasonably fast so the comparison is fair: ground-truth regions are labelled once (not per
threshold), and each of the 1000 thresholds ``max - k (max - min) / 1000`` (k = 0..999) costs one
comparison over the pixels and one ``bincount`` over the anomalous ones. A pixel is positive
when its score is ``> thr``; points with FPR <= 0.3 are kept, their FPR rescaled by min-max to
[0, 1] (as released; ours divides by 0.3 after interpolating at exactly 0.3) and integrated with
the trapezoid rule.

Data: seeded synthetic maps, half of the images anomalous with 1-3 elliptic regions, the maps a
sigmoid of blurred noise plus the blurred mask (float32), so they look like segmentation output.

Timing: wall clock (time.perf_counter), both including input checks and region labelling; the
exact AUPRO is the best of ``--repeat`` runs, the loop (1000 passes itself) runs once.

    python benchmarks/bench_metrics.py            # 200 maps of 256 x 256
    python benchmarks/bench_metrics.py --quick    # 20 maps of 64 x 64, a few seconds

The last line printed is one JSON object with the measured figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc

try:
    from diffad_core.metrics import aupro
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from diffad_core.metrics import aupro

N_THRESHOLDS = 1000
FPR_LIMIT = 0.3


def synthetic_maps(n_maps: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded anomaly maps (n_maps, size, size) float32 in (0, 1) and masks (same shape) bool."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_maps, size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n_maps // 2, n_maps):  # the second half of the images is anomalous
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0.1, 0.9, size=2) * size
            ry, rx = rng.uniform(0.02, 0.12, size=2) * size
            masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    sigma = (0, size / 64, size / 64)
    noise = ndimage.gaussian_filter(rng.standard_normal(masks.shape).astype(np.float32), sigma)
    noise /= noise.std()
    signal = ndimage.gaussian_filter(masks.astype(np.float32), sigma)
    logits = 4.0 * signal + 1.2 * noise - 2.5
    maps = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return maps, masks


def aupro_released_style(maps: np.ndarray, masks: np.ndarray) -> float:
    """AUPRO with 1000 evenly spaced thresholds, as the released evaluation computes it.

    maps: (N, H, W) float; masks: (N, H, W) bool.
    """
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity inside an image, never across images
    regions, n_regions = ndimage.label(masks, structure=structure)
    sizes = np.bincount(regions.ravel(), minlength=n_regions + 1)[1:]
    anomalous = masks.ravel()
    scores_a, regions_a = maps.ravel()[anomalous], regions.ravel()[anomalous]
    scores_n = maps.ravel()[~anomalous]
    top, bottom = float(maps.max()), float(maps.min())
    delta = (top - bottom) / N_THRESHOLDS
    fprs, pros = np.empty(N_THRESHOLDS), np.empty(N_THRESHOLDS)
    for k in range(N_THRESHOLDS):
        thr = top - k * delta
        hits = np.bincount(regions_a[scores_a > thr], minlength=n_regions + 1)[1:]
        pros[k] = np.mean(hits / sizes)
        fprs[k] = np.count_nonzero(scores_n > thr) / scores_n.size
    order = np.argsort(fprs, kind="stable")
    fprs, pros = fprs[order], pros[order]
    keep = fprs <= FPR_LIMIT
    fprs, pros = fprs[keep], pros[keep]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return float(auc(fprs, pros))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 maps of 64 x 64 (a few seconds)")
    parser.add_argument("--n-maps", type=int, default=None, help="number of maps (default 200)")
    parser.add_argument("--image-size", type=int, default=None, help="map side (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="best-of runs for the exact AUPRO")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n_maps = args.n_maps or (20 if args.quick else 200)
    size = args.image_size or (64 if args.quick else 256)

    maps, masks = synthetic_maps(n_maps, size, args.seed)

    exact_s = float("inf")
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        exact = aupro(maps, masks, fpr_limit=FPR_LIMIT)
        exact_s = min(exact_s, time.perf_counter() - start)
    start = time.perf_counter()
    binned = aupro_released_style(maps, masks)
    binned_s = time.perf_counter() - start

    print(f"{n_maps} maps of {size} x {size}, {masks.mean():.2%} anomalous pixels")
    print(f"exact AUPRO           {exact:.6f} in {exact_s:.3f} s (best of {args.repeat})")
    print(f"1000-threshold AUPRO  {binned:.6f} in {binned_s:.3f} s")
    result = {
        "benchmark": "metrics",
        "device": "cpu",
        "preset": None,
        "image_size": size,
        "n_maps": n_maps,
        "aupro_exact_s": round(exact_s, 4),
        "aupro_1000thr_s": round(binned_s, 4),
        "aupro_speedup": round(binned_s / exact_s, 2),
        "aupro_exact": round(exact, 6),
        "aupro_1000thr": round(binned, 6),
        "aupro_abs_diff": round(abs(exact - binned), 6),
        "anomalous_pixel_fraction": round(float(masks.mean()), 5),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
