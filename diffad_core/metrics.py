"""Anomaly-detection metrics: AUROC, AP, F1-max (image and pixel level) and AUPRO.

Every metric takes anomaly *scores* (higher means more anomalous) and binary ground truth, as
NumPy arrays or torch tensors (any device; they are copied to the CPU).

- Image level: ``scores`` of shape (N,) (one score per test image, e.g. the mean of the top-50
  values of the anomaly map M, docs/method.md §1) and ``labels`` of shape (N,) with values in
  {0, 1} (or bool); 1 means anomalous.
- Pixel level: anomaly ``maps`` of shape (N, H, W) or (N, 1, H, W) and ground-truth ``masks`` of
  the same shape (either layout each). Masks are binarised with ``mask > 0``, so 0/255 PNG masks
  and soft masks work as read.

Definitions (which variant, since implementations in the field differ):

- AUROC: area under the ROC curve (trapezoid), the value of ``sklearn.metrics.roc_auc_score``
  (images: ``auc(*roc_curve(...)[:2])``; pixels: the same area read from one sort of all pixels,
  shared by pixel AP, F1-max and AUPRO, since scikit-learn re-sorts and re-checks millions of
  pixels per call). Pixel AUROC pools all pixels of all test images, as the released code does.
- AP: average precision, the value of ``sklearn.metrics.average_precision_score``: the
  step-wise sum sum_n (R_n - R_{n-1}) P_n over ``precision_recall_curve``, no interpolation.
- F1-max: the largest F1 = 2 P R / (P + R) over *all* thresholds, exactly (every distinct score is
  a threshold; a sample is predicted anomalous when its score >= threshold), read from
  ``sklearn.metrics.precision_recall_curve``.
- AUPRO (Bergmann et al., MVTec AD): the normalised area under the per-region-overlap curve.
  See :func:`aupro` for the exact definition; ours is threshold-free and exact.

Undefined metrics raise, they never return NaN: every metric here needs both classes, so

- image labels that are all 0 or all 1 raise ``ValueError`` ("all 12 test images have label 0");
- masks without any anomalous pixel (or without any normal pixel) raise ``ValueError`` from
  every pixel metric and from AUPRO.

:func:`has_both_classes` is the one test of "both classes present" (for callers that want to
skip an undefined metric instead of catching the error).

The one NaN in this module is deliberate and explicit: :func:`compute_all` called without maps
and masks (a test set with no ground-truth masks) fills the pixel keys with ``nan``.

Other input errors (all ``ValueError``, the message names the offending value): empty inputs,
NaN or infinite scores (the message says how many), maps/masks shape mismatch (both shapes are
named), labels outside {0, 1}, wrong numbers of dimensions, ``fpr_limit`` outside (0, 1].
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence, Union

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "ArrayLike",
    "ProCurve",
    "psnr",
    "aupro",
    "compute_all",
    "f1_max",
    "has_both_classes",
    "image_ap",
    "image_auroc",
    "pixel_ap",
    "pixel_auroc",
    "pixel_f1_max",
    "pro_curve",
    "trapezoid_area",
]

#: What the metrics (and the plotting and course helpers) accept as scores, labels, maps or masks:
#: a NumPy array, a torch tensor (any device and dtype; copied to the CPU) or a plain sequence.
ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]

#: Integration limit of AUPRO used by MVTec AD and by the DiffusionAD paper (30 % FPR).
DEFAULT_FPR_LIMIT = 0.3

# Connectivity of ground-truth regions: 8-connectivity inside one image (3 x 3 structure), and no
# connection across images, so the whole (N, H, W) stack is labelled in one scipy call.
_REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REGION_STRUCTURE[1] = True


class ProCurve(NamedTuple):
    """Per-region-overlap curve, one point per distinct threshold (highest threshold first).

    fpr: (K,) false-positive rate on normal pixels, non-decreasing, starting at 0.
    pro: (K,) mean overlap over ground-truth regions at the same thresholds, starting at 0.
    """

    fpr: np.ndarray
    pro: np.ndarray


# --------------------------------------------------------------------------- input checks


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a NumPy array (torch tensors are detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        msg = f"{name} must be a NumPy array or a torch tensor, not {type(x)!r}"
        raise ValueError(msg) from exc


def _as_float(x: np.ndarray, name: str) -> np.ndarray:
    """Scores as float32/float64 (other dtypes go to float64), checked to be finite."""
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    n_bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if n_bad:
        raise ValueError(
            f"{name} contain {n_bad} non-finite value(s) (NaN or inf) out of {x.size}; "
            "metrics need finite scores. A NaN anomaly map usually means the model diverged "
            "or an image failed to load: check those first."
        )
    return x


def _check_scores_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate image-level inputs; return scores (N,) float and labels (N,) bool."""
    s = _to_numpy(scores, "scores")
    y = _to_numpy(labels, "labels")
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(
            "scores and labels must be 1-D, one value per image; "
            f"got shapes {s.shape} and {y.shape}"
        )
    if s.shape != y.shape:
        raise ValueError(
            f"scores and labels differ in length: {s.shape[0]} scores vs {y.shape[0]} labels"
        )
    if s.size == 0:
        raise ValueError("scores and labels are empty; there is nothing to evaluate")
    s = _as_float(s, "scores")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"labels must be numeric or bool, got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise ValueError(
            f"labels must be 0 (normal) or 1 (anomalous); found {int(bad.sum())} other value(s), "
            f"e.g. {y[bad][0]!r}. Convert them first (e.g. labels = (labels > 0))."
        )
    return s, y.astype(bool)


def has_both_classes(y: ArrayLike) -> bool:
    """True when ``y`` holds at least one 0 entry and at least one non-zero entry.

    ``y``: labels (N,) or masks of any shape (bool, 0/1 or 0/255). Every metric of this module
    is defined only when this holds; they raise ``ValueError`` otherwise.
    """
    arr = _to_numpy(y, "y")
    n_pos = int(np.count_nonzero(arr))
    return 0 < n_pos < arr.size


def _require_both_classes(y: np.ndarray, what: str, metric: str) -> None:
    """Raise if ``y`` (bool) holds a single class; ``what`` is "test images" or "pixels"."""
    if not has_both_classes(y):
        n_pos = int(np.count_nonzero(y))
        label, name = (0, "normal") if n_pos == 0 else (1, "anomalous")
        if what == "pixels":
            raise ValueError(
                f"all {y.size} ground-truth pixels are {name} (mask "
                f"{'== 0' if n_pos == 0 else '> 0'}); {metric} needs both anomalous and normal "
                "pixels. Check that the ground-truth masks were found and loaded (MVTec layout: "
                "ground_truth/<defect>/<name>_mask.png)."
            )
        raise ValueError(
            f"all {y.size} test images have label {label} ({name}); {metric} needs at least one "
            "normal (0) and one anomalous (1) image. Evaluate on a test set with both."
        )


def _squeeze_map(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim != 3:
        hint = " (add a batch axis, e.g. x[None])" if x.ndim == 2 else ""
        raise ValueError(f"{name} must have shape (N, H, W) or (N, 1, H, W), got {x.shape}{hint}")
    return x


def _check_maps_masks(maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate pixel-level inputs; return maps (N, H, W) float and masks (N, H, W) bool."""
    m0 = _to_numpy(maps, "maps")
    g0 = _to_numpy(masks, "masks")
    m = _squeeze_map(m0, "maps")
    g = _squeeze_map(g0, "masks")
    if m.shape != g.shape:
        raise ValueError(
            f"maps and masks must have the same shape; got maps {m0.shape} and masks {g0.shape}"
        )
    if m.size == 0:
        raise ValueError(f"maps and masks are empty (shape {m0.shape}); nothing to evaluate")
    m = _as_float(m, "maps")
    if g.dtype != bool:
        if g.dtype.kind not in "biuf":
            raise ValueError(f"masks must be numeric or bool, got dtype {g.dtype}")
        if g.dtype.kind == "f" and not np.isfinite(g).all():
            raise ValueError("masks contain NaN or inf; masks must be 0 (normal) / > 0 (anomalous)")
        g = g > 0
    return m, g


# --------------------------------------------------------------------------- AUROC, AP, F1


def trapezoid_area(y: np.ndarray, x: np.ndarray) -> float:
    """Area under the piecewise-linear curve through the points (x_i, y_i), x in curve order.

    sum_i (x_{i+1} - x_i) (y_i + y_{i+1}) / 2: the trapezoid rule, used for AUROC and AUPRO.
    y, x: (K,) arrays of the same length; fewer than two points give 0.
    """
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _sorted_pixels(m: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten pixels and return (scores, is_anomalous) sorted by decreasing score, and the
    scores of the normal pixels sorted ascending (AUPRO reuses them).

    Sorting the two classes separately (SIMD sort, no index array) and placing the few anomalous
    pixels among the normal ones by binary search is much faster than one argsort of all pixels.
    """
    s, y = m.ravel(), g.ravel()
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    where_pos = np.searchsorted(neg, pos, side="left") + np.arange(pos.size)
    y_sorted = np.zeros(s.size, dtype=bool)
    y_sorted[where_pos] = True
    s_sorted = np.empty_like(s)
    s_sorted[where_pos] = pos
    s_sorted[~y_sorted] = neg
    return s_sorted[::-1], y_sorted[::-1], neg


def _auroc(s: np.ndarray, y: np.ndarray) -> float:
    """AUROC of validated scores s (P,) and labels y (P,) bool: roc_auc_score's value."""
    from sklearn.metrics import auc, roc_curve  # local: scikit-learn takes seconds to import

    fpr, tpr, _ = roc_curve(y, s)
    return float(auc(fpr, tpr))


def _ap_f1_max(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(AP, F1-max) from one precision-recall curve of validated s (P,) and y (P,) bool.

    AP is scikit-learn's step-wise sum -sum_n (R_{n+1} - R_n) P_n over the curve (its
    curve ends at P = 1, R = 0), the value of ``average_precision_score``.
    """
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, s)
    ap = max(0.0, float(-np.sum(np.diff(recall) * precision[:-1])))
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return ap, float(f1.max())


def _ranked_curve_metrics(s_desc: np.ndarray, y_desc: np.ndarray) -> tuple[float, float, float]:
    """(AUROC, AP, F1-max) of scores sorted in decreasing order s_desc (P,) with labels y_desc (P,) bool.

    The same values as :func:`_auroc` and :func:`_ap_f1_max` (scikit-learn's definitions), read
    straight from the one ranking: at each distinct score (the last pixel of each run of equal
    scores), TP = the positives so far and FP = the pixels so far minus TP. Then
    AUROC = trapezoid area of (FP / N_neg, TP / N_pos) from (0, 0); AP = sum_n (R_n - R_{n-1}) P_n
    with P = TP / (TP + FP), R = TP / N_pos; F1-max = max 2 P R / (P + R). Linear time after the
    sort, where scikit-learn re-sorts and re-checks millions of pixels.
    """
    last = np.flatnonzero(np.append(s_desc[1:] != s_desc[:-1], True))
    tp = np.cumsum(y_desc, dtype=np.int64)[last].astype(np.float64)
    fp = (last + 1).astype(np.float64) - tp
    fpr = np.concatenate(([0.0], fp / fp[-1]))
    tpr = np.concatenate(([0.0], tp / tp[-1]))
    auroc = trapezoid_area(tpr, fpr)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    ap = float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return auroc, max(0.0, ap), float(f1.max())


def image_auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Image-level AUROC of ``scores`` (N,) against ``labels`` (N,) in {0, 1}."""
    s, y = _check_scores_labels(scores, labels)
    _require_both_classes(y, "test images", "image AUROC")
    return _auroc(s, y)


def image_ap(scores: ArrayLike, labels: ArrayLike) -> float:
    """Image-level average precision (step-wise, scikit-learn definition)."""
    s, y = _check_scores_labels(scores, labels)
    _require_both_classes(y, "test images", "image AP")
    return _ap_f1_max(s, y)[0]


def f1_max(scores: ArrayLike, labels: ArrayLike) -> float:
    """Maximum F1 over all thresholds, exact (every distinct score is tried; score >= thr -> 1).

    scores, labels: (N,) as for :func:`image_auroc`. For pixels use :func:`pixel_f1_max`.
    """
    s, y = _check_scores_labels(scores, labels)
    _require_both_classes(y, "test images", "F1-max")
    return _ap_f1_max(s, y)[1]


def pixel_auroc(maps: ArrayLike, masks: ArrayLike) -> float:
    """Pixel-level AUROC over all pixels of all images; maps, masks (N, H, W) or (N, 1, H, W)."""
    m, g = _check_maps_masks(maps, masks)
    _require_both_classes(g, "pixels", "pixel AUROC")
    return _ranked_curve_metrics(*_sorted_pixels(m, g)[:2])[0]


def pixel_ap(maps: ArrayLike, masks: ArrayLike) -> float:
    """Pixel-level average precision over all pixels of all images (step-wise definition)."""
    m, g = _check_maps_masks(maps, masks)
    _require_both_classes(g, "pixels", "pixel AP")
    return _ranked_curve_metrics(*_sorted_pixels(m, g)[:2])[1]


def pixel_f1_max(maps: ArrayLike, masks: ArrayLike) -> float:
    """Pixel-level F1-max over all pixels of all images, exact over all thresholds."""
    m, g = _check_maps_masks(maps, masks)
    _require_both_classes(g, "pixels", "pixel F1-max")
    return _ranked_curve_metrics(*_sorted_pixels(m, g)[:2])[2]


# --------------------------------------------------------------------------- PRO / AUPRO


def _check_fpr_limit(fpr_limit: float) -> float:
    limit = float(fpr_limit)
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r} (the usual value is 0.3)")
    return limit


def _pro_points(
    m: np.ndarray, g: np.ndarray, fpr_limit: float | None, normal_sorted: np.ndarray | None = None
) -> ProCurve:
    """Exact PRO curve of validated maps m (N, H, W) and masks g (N, H, W) bool.

    Notation: R regions r with |r| pixels; a pixel of region r carries weight 1 / (R |r|), so the
    weights of the pixels of r that are >= thr sum to overlap_r(thr) / R and PRO(thr) is the sum
    of the weights of all anomalous pixels >= thr. FPR(thr) counts the normal pixels >= thr.
    ``normal_sorted``: the scores of the normal pixels sorted ascending, when the caller has them
    already (:func:`compute_all` shares the sort of the pixel metrics).
    """
    # Regions: label only the images that have anomalous pixels (the others hold no region).
    has_region = g.reshape(g.shape[0], -1).any(axis=1)
    regions, n_regions = ndimage.label(g[has_region], structure=_REGION_STRUCTURE)
    region_ids = regions.ravel()
    sizes = np.bincount(region_ids, minlength=n_regions + 1)
    anomalous_scores = m[has_region].ravel()
    is_anomalous = region_ids > 0
    anomalous_scores = anomalous_scores[is_anomalous]
    anomalous_regions = region_ids[is_anomalous]
    n_normal = int(g.size - is_anomalous.sum())

    # 1. Only the top of the ranking matters for AUPRO: keep the pixels whose score is >= the
    #    score of the k-th highest normal pixel, k just past fpr_limit * n_normal, so the lowest
    #    kept threshold already has FPR > fpr_limit (">=" keeps tied pixels together).
    k = n_normal
    if fpr_limit is not None and fpr_limit < 1.0:
        k = min(n_normal, int(math.floor(fpr_limit * n_normal)) + 1)
    if normal_sorted is None:
        normal_scores = m.ravel()[~g.ravel()]
        if k < n_normal:
            t_keep = np.partition(normal_scores, n_normal - k)[n_normal - k]
            normal_scores = normal_scores[normal_scores >= t_keep]
        normal_sorted = np.sort(normal_scores)
    else:
        t_keep = normal_sorted[n_normal - k]
        normal_sorted = normal_sorted[np.searchsorted(normal_sorted, t_keep, side="left"):]
    if k < n_normal:
        keep = anomalous_scores >= t_keep
        anomalous_scores, anomalous_regions = anomalous_scores[keep], anomalous_regions[keep]

    # 2. One ranking of the kept pixels: the anomalous scores are sorted (ascending), then merged
    #    with the sorted normal scores by a stable sort, which finds the two sorted runs and
    #    merges them in linear time. Each pixel adds 1 to the false positives (normal) or its
    #    weight 1 / (R |r|) to PRO (anomalous) once the threshold passes below its score.
    order = np.argsort(anomalous_scores, kind="stable")
    merged = np.concatenate((normal_sorted, anomalous_scores[order]))
    rank = np.argsort(merged, kind="stable")[::-1]  # highest score first
    values = merged[rank]
    n_kept_normal = normal_sorted.size
    from_anomalous = rank >= n_kept_normal
    weight = np.zeros(n_regions + 1, dtype=np.float64)
    weight[1:] = 1.0 / (n_regions * sizes[1:])
    pixel_weight = np.zeros(values.size, dtype=np.float64)
    pixel_weight[from_anomalous] = weight[anomalous_regions[order][rank[from_anomalous] - n_kept_normal]]

    # 3. Thresholds: every distinct score. Pixels with equal scores cross a threshold together,
    #    so a tie between normal and anomalous pixels is one diagonal step of the curve: read the
    #    running sums at the last pixel of each run of equal scores.
    last = np.flatnonzero(np.append(values[1:] != values[:-1], True))
    n_fp = np.cumsum(~from_anomalous)[last]
    pro_at = np.cumsum(pixel_weight)[last]
    # Highest threshold first, preceded by the origin (a threshold above every score).
    fpr = np.concatenate(([0.0], n_fp / n_normal))
    pro = np.concatenate(([0.0], pro_at))

    # 4. Cut the curve at fpr_limit, interpolating linearly to a last point at exactly fpr_limit.
    if fpr_limit is not None:
        i = int(np.searchsorted(fpr, fpr_limit, side="right"))  # points with fpr <= limit
        if i < fpr.size and fpr[i - 1] < fpr_limit:
            f0, f1, p0, p1 = fpr[i - 1], fpr[i], pro[i - 1], pro[i]
            p_limit = p0 + (p1 - p0) * (fpr_limit - f0) / (f1 - f0)
            fpr = np.append(fpr[:i], fpr_limit)
            pro = np.append(pro[:i], p_limit)
        else:
            fpr, pro = fpr[:i], pro[:i]
    return ProCurve(fpr=fpr, pro=pro)


def pro_curve(
    maps: ArrayLike, masks: ArrayLike, *, fpr_limit: float | None = None
) -> ProCurve:
    """Exact per-region-overlap curve (for plotting, or to see what :func:`aupro` integrates).

    Args:
        maps: anomaly maps (N, H, W) or (N, 1, H, W).
        masks: ground truth of the same shape, binarised with ``> 0``.
        fpr_limit: if given, the curve stops at exactly this FPR (the last point is linearly
            interpolated); if None, the full curve from (0, 0) to (1, 1) is returned.

    Returns:
        ProCurve(fpr, pro): one point per distinct map value plus the origin (the threshold above
        the maximum). The full curve may have millions of points; subsample it for plotting.
    """
    m, g = _check_maps_masks(maps, masks)
    _require_both_classes(g, "pixels", "the PRO curve")
    limit = None if fpr_limit is None else _check_fpr_limit(fpr_limit)
    return _pro_points(m, g, limit)


def aupro(maps: ArrayLike, masks: ArrayLike, fpr_limit: float = DEFAULT_FPR_LIMIT) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``fpr_limit``, exact.

    Definition (Bergmann et al., MVTec AD; the threshold-free variant of its evaluation code):

    1. Ground-truth regions are the connected components of each mask, 8-connectivity
       (scipy.ndimage.label with a 3 x 3 structure), never joined across images. Let R be the
       number of regions over all N images.
    2. At threshold thr a pixel is predicted anomalous when its score >= thr. The overlap of a
       region r is the fraction of its pixels predicted anomalous; PRO(thr) is the mean overlap
       over the R regions (every region counts equally, whatever its size).
    3. FPR(thr) is the fraction of *normal* pixels (mask 0, in all images, anomalous images
       included) predicted anomalous.
    4. AUPRO = (1 / fpr_limit) * integral_0^fpr_limit PRO d(FPR), trapezoid rule over the curve,
       whose last point is interpolated linearly at exactly FPR = fpr_limit. 1.0 is perfect,
       and a random map scores about fpr_limit / 2.

    Exact, not binned: every distinct value of ``maps`` is a threshold. No loop over
    thresholds: a partition finds the score where FPR passes fpr_limit, the pixels above it are
    sorted once, and PRO and FPR at every threshold are cumulative sums (weight 1 / (R |r|) per
    pixel of region r, 1 per normal pixel), O(P log P) for P pixels (200 maps of 256 x 256 take
    about 0.3 s on one CPU core). Ties: pixels with equal scores cross a threshold together,
    so a tie between normal and anomalous pixels is a straight (diagonal) segment of the curve,
    exactly what the threshold definition gives; the order of tied pixels never matters.

    Other implementations sweep 200 (anomalib's first versions, CFlow) or 1000 (the released
    DiffusionAD code) evenly spaced thresholds, use ``score > thr``, and some rescale the kept
    FPR values by their own maximum instead of dividing by fpr_limit; their values differ from
    this one slightly (see benchmarks/bench_metrics.py for the measured difference).

    Args:
        maps: anomaly maps (N, H, W) or (N, 1, H, W), higher is more anomalous.
        masks: ground truth, same shape, binarised with ``> 0``.
        fpr_limit: upper integration limit in (0, 1]; 0.3 in MVTec AD and in the paper.

    Returns:
        AUPRO in [0, 1].

    Raises:
        ValueError: masks with no anomalous pixel or no normal pixel (AUPRO is undefined), and
            the input errors listed in the module docstring.
    """
    limit = _check_fpr_limit(fpr_limit)
    m, g = _check_maps_masks(maps, masks)
    _require_both_classes(g, "pixels", "AUPRO")
    curve = _pro_points(m, g, limit)
    return trapezoid_area(curve.pro, curve.fpr) / limit


# --------------------------------------------------------------------------- all at once


def compute_all(
    image_scores: ArrayLike,
    labels: ArrayLike,
    maps: ArrayLike | None = None,
    masks: ArrayLike | None = None,
    *,
    fpr_limit: float = DEFAULT_FPR_LIMIT,
) -> dict[str, float]:
    """All metrics of docs/method.md §6 at once, the inputs validated once.

    Args:
        image_scores: (N,) image scores; labels: (N,) in {0, 1}.
        maps, masks: (N, H, W) or (N, 1, H, W) anomaly maps and ground truth, or both None when
            the test set has no masks (the pixel keys are then ``nan``).
        fpr_limit: AUPRO integration limit.

    Returns:
        dict with keys image_auroc, image_ap, image_f1_max, pixel_auroc, pixel_ap,
        pixel_f1_max, aupro (floats in [0, 1]).
    """
    s, y = _check_scores_labels(image_scores, labels)
    _require_both_classes(y, "test images", "image AUROC/AP/F1-max")
    limit = _check_fpr_limit(fpr_limit)
    ap_img, f1_img = _ap_f1_max(s, y)
    out = {"image_auroc": _auroc(s, y), "image_ap": ap_img, "image_f1_max": f1_img}
    if maps is None and masks is None:
        nan = float("nan")
        out.update(pixel_auroc=nan, pixel_ap=nan, pixel_f1_max=nan, aupro=nan)
        return out
    if maps is None or masks is None:
        given, missing = ("maps", "masks") if masks is None else ("masks", "maps")
        raise ValueError(f"{given} were given without {missing}; pass both or neither")
    m, g = _check_maps_masks(maps, masks)
    if m.shape[0] != s.shape[0]:
        raise ValueError(
            f"{s.shape[0]} image scores but {m.shape[0]} anomaly maps; they must describe the "
            "same test images in the same order"
        )
    _require_both_classes(g, "pixels", "pixel metrics and AUPRO")
    ps, py, normal_sorted = _sorted_pixels(m, g)
    auroc_pix, ap_pix, f1_pix = _ranked_curve_metrics(ps, py)
    curve = _pro_points(m, g, limit, normal_sorted=normal_sorted)  # shares the sort of the normal pixels
    out.update(
        pixel_auroc=auroc_pix,
        pixel_ap=ap_pix,
        pixel_f1_max=f1_pix,
        aupro=trapezoid_area(curve.pro, curve.fpr) / limit,
    )
    return out


def psnr(estimate: ArrayLike, reference: ArrayLike, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per image, 10 log10(R^2 / MSE) in dB, of (N, ...) arrays.

    ``data_range`` R is the span of valid pixel values (1 for images in [0, 1]); identical
    images give +inf.
    """
    a = np.asarray(estimate, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"psnr needs two arrays of the same shape (N, ...), got {a.shape} and {b.shape}")
    mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)
