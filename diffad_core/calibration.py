"""Decision thresholds that never see test labels: calibrated on held-out normal images.

``fit`` holds out a seeded part of the normal training images (``TrainConfig.val_fraction``,
default 10 %, at least :data:`MIN_VALIDATION` images, only when the split has at least
:data:`MIN_TRAIN_FOR_VALIDATION`); they are never trained on. After training,
:func:`calibrate` scores them twice - as they are (label 0) and turned into synthetic anomalies by
the training synthesizer with ``p_anomaly = 1`` (label 1, with their masks) - and stores:

* ``image_threshold``: an image-score threshold with the highest F1 on that set, near the lowest
  such (a score at or above it means "defect"; see :func:`f1_threshold`). Held-out normals and
  synthetic anomalies usually separate completely, so every threshold between the highest normal
  score and the lowest synthetic one is optimal; real defects score lower than synthetic ones, so
  the threshold sits just above the normals. Measured with the shipped mini models (gravel of
  stop 25) on the test sets of mini seeds 1 and 2 (stop 26; recall / share of normal test images
  flagged / F1, against the midpoint of that gap, the rule before): calibrated on 30 normals 74.5 / 6.7 /
  82.2 % against 59.5 / 0 / 73.1 %; on 6 of them (200 random draws; what ``fit`` holds out of 60
  images) 83.0 / 14.7 / 85.9 % against 47.0 / 0 / 61.5 % (``tools/threshold_gap.py``). More
  held-out normals mean fewer false alarms (``diffad calibrate`` takes any number);
* ``pixel_threshold``: the same rule on every pixel of those maps;
* the F1 reached, the set's sizes, and the normal scores' mean and maximum;
* the score normalisation :mod:`diffad_core.predict` reports: score / image_threshold.

The values go into the weights file's metadata (``"calibration"``) and back onto
``model.calibration`` when the file is loaded. Synthetic anomalies are not real defects, so the
threshold is an informed default, not a guarantee: check it on labelled images of your own.
``diffad calibrate`` computes it for any model file from a folder of normal images.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from .inference import EvalConfig, predict_images

__all__ = ["MIN_VALIDATION", "MIN_TRAIN_FOR_VALIDATION", "RULE", "calibrate", "f1_threshold",
           "validation_split", "at_threshold", "synthetic_auroc"]

#: Fewest held-out images, and fewest training images for any hold-out at all.
MIN_VALIDATION = 3
MIN_TRAIN_FOR_VALIDATION = 20
#: Where in the gap of optimal thresholds the returned one sits (0: the lowest, 0.5: the midpoint).
GAP_FRACTION = 0.01
#: How the thresholds were chosen (stored with them).
RULE = ("F1-optimal on held-out normal training images and synthetic anomalies made from them, "
        f"{100 * GAP_FRACTION:g} % of the optimal gap above its low end")


def validation_split(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train indices, validation indices) of ``n`` images, seeded; no validation for small sets."""
    if fraction <= 0 or n < MIN_TRAIN_FOR_VALIDATION:
        return torch.arange(n), torch.arange(0)
    n_val = max(MIN_VALIDATION, int(round(fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 7919))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of "score >= threshold means positive", exact over all scores.

    Ties are kept together. Every threshold in (next lower distinct score, lowest score flagged]
    gives the optimal F1; the returned one sits 1 % of that gap above its lower end (near the
    lowest, yet clear of the ~1e-7 noise a score has between thread counts), or at the lowest
    score when all are flagged.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() > 0
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError("f1_threshold needs both positive and negative samples")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    f1 = 2 * tp / (tp + fp + n_pos)
    best = int(np.argmax(f1))
    threshold = s[last[best]]
    if best + 1 < last.size:
        below = s[last[best + 1]]
        threshold = below + GAP_FRACTION * (threshold - below)
    return float(threshold), float(f1[best])


def at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of "score >= threshold" against ``labels`` (NaN where undefined)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() > 0
    pred = s >= threshold
    tp = float(np.sum(pred & y))
    precision = tp / pred.sum() if pred.sum() else float("nan")
    recall = tp / y.sum() if y.sum() else float("nan")
    f1 = 2 * tp / (pred.sum() + y.sum()) if (pred.sum() + y.sum()) else float("nan")
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def calibrate(
    model: Any,
    images: Tensor,
    *,
    kind: str,
    foreground: Optional[Tensor] = None,
    config: Optional[EvalConfig] = None,
    seed: int = 0,
    anomaly_source: Optional[str] = None,
) -> dict[str, Any]:
    """Thresholds of ``model`` from normal ``images`` (N, 3, H, W), uint8 or float in [0, 1].

    See the module docstring. ``kind`` picks the synthetic anomalies (as in training); ``seed``
    seeds both the synthesizer and the inference noise.
    """
    scores, labels, maps, masks = _synthetic_set(model, images, kind, foreground, config or EvalConfig(seed=seed),
                                                 seed, anomaly_source)
    image_thr, image_f1 = f1_threshold(scores, labels)
    pixel_thr, pixel_f1 = f1_threshold(maps, masks)
    normal = scores[labels == 0]
    return {
        "rule": RULE,
        "image_threshold": image_thr,
        "image_f1": image_f1,
        "pixel_threshold": pixel_thr,
        "pixel_f1": pixel_f1,
        "n_normal": int(len(normal)),
        "n_synthetic": int(len(scores) - len(normal)),
        "normal_score_mean": float(np.mean(normal)),
        "normal_score_max": float(np.max(normal)),
        "kind": kind,
        "seed": int(seed),
        "normalization": "score / image_threshold",
    }


def synthetic_auroc(
    model: Any,
    images: Tensor,
    *,
    kind: str,
    foreground: Optional[Tensor] = None,
    config: Optional[EvalConfig] = None,
    seed: int = 0,
) -> dict[str, float]:
    """Image AUROC (normal vs synthetic) and pixel AUROC (on the synthetic masks) of ``model``.

    The same set :func:`calibrate` builds from normal ``images``: a measure of quality without any
    labelled defect, for choosing settings (never choose them on test labels).
    """
    from .metrics import image_auroc, pixel_auroc

    scores, labels, maps, masks = _synthetic_set(model, images, kind, foreground, config or EvalConfig(seed=seed),
                                                 seed, None)
    return {"image_auroc": float(image_auroc(scores, labels)),
            "pixel_auroc": float(pixel_auroc(maps, masks > 0.5))}


def _synthetic_set(model: Any, images: Tensor, kind: str, foreground: Optional[Tensor], config: EvalConfig,
                   seed: int, anomaly_source: Optional[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image scores, image labels, maps, masks) of ``images`` as they are and as synthetic anomalies."""
    from .synthesis import AnomalySynthesizer

    x = torch.as_tensor(images)
    x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
    if x.dim() != 4 or x.shape[0] < 1:
        raise ValueError(f"calibrate needs normal images (N, 3, H, W) with N >= 1, got {tuple(x.shape)}")
    synth = AnomalySynthesizer(kind=kind, p_anomaly=1.0, anomaly_source=anomaly_source)
    fg = foreground.float() if foreground is not None else None
    syn = synth(x, fg, generator=torch.Generator().manual_seed(int(seed) + 104729))
    keep = syn.label > 0  # a sample whose foreground was empty stays normal: leave it out
    if not bool(keep.any()):
        raise ValueError("no synthetic anomaly could be made from the calibration images (empty foregrounds?)")
    normal = predict_images(model, x, config)
    anomalous = predict_images(model, syn.image[keep], config)
    scores = np.concatenate([normal.scores, anomalous.scores])
    labels = np.r_[np.zeros(len(normal.scores)), np.ones(len(anomalous.scores))]
    maps = np.concatenate([normal.maps, anomalous.maps])
    masks = np.concatenate([np.zeros_like(normal.maps), syn.mask[keep][:, 0].numpy()])
    return scores, labels, maps, masks
