"""Tests for diffad_core.metrics: against scikit-learn, a slow reference and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import label as sk_label
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from diffad_core.metrics import (
    ProCurve,
    aupro,
    compute_all,
    f1_max,
    has_both_classes,
    image_ap,
    image_auroc,
    pixel_ap,
    pixel_auroc,
    pixel_f1_max,
    pro_curve,
    trapezoid_area,
)

# --------------------------------------------------------------------------- slow references


def slow_pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PRO curve by brute force: one pass over the data per distinct score, plus the origin.

    Regions come from scikit-image (connectivity=2 is 8-connectivity), one image at a time.
    """
    masks = masks > 0
    regions = []
    for i in range(masks.shape[0]):
        lab = sk_label(masks[i], connectivity=2)
        regions += [(i, lab == r) for r in range(1, lab.max() + 1)]
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for thr in np.unique(maps)[::-1]:
        pred = maps >= thr
        pros.append(np.mean([pred[i][region].mean() for i, region in regions]))
        fprs.append((pred & normal).sum() / normal.sum())
    return np.array(fprs), np.array(pros)


def slow_area(fprs: np.ndarray, pros: np.ndarray, limit: float) -> float:
    """Area under a piecewise-linear curve from fpr 0 to ``limit``, divided by ``limit``."""
    total = 0.0
    for f0, f1, p0, p1 in zip(fprs[:-1], fprs[1:], pros[:-1], pros[1:]):
        if f0 >= limit:
            break
        if f1 <= limit:
            total += (f1 - f0) * (p0 + p1) / 2
        else:
            p_at = p0 + (p1 - p0) * (limit - f0) / (f1 - f0)
            total += (limit - f0) * (p0 + p_at) / 2
            break
    return total / limit


def slow_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    best = 0.0
    for thr in np.unique(scores):
        pred = scores >= thr
        tp = np.sum(pred & labels)
        if tp:
            precision, recall = tp / pred.sum(), tp / labels.sum()
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def random_case(seed: int, n: int = 4, size: int = 12, levels: int | None = None):
    """Random maps (n, size, size) and blobby masks; ``levels`` quantises scores (ties)."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n, size, size)) < 0.12
    masks[0] = False  # a normal image
    masks[1, 2:5, 3:7] = True  # at least one region
    maps = rng.random((n, size, size)) + 0.6 * masks
    if levels is not None:
        maps = np.round(maps * levels) / levels
    return maps, masks


# --------------------------------------------------------------------------- AUPRO


def hand_case():
    """One 1 x 7 image. Regions A = pixels 0-1 (size 2), B = pixel 3 (size 1); 4 normal pixels.

    Pixel weights 1/(R |r|): A pixels 1/4, B pixel 1/2. In decreasing score order:
    .9 A -> (0, .25); .8 N -> (.25, .25); .6 B -> (.25, .75); .5 N -> (.5, .75);
    .4 A -> (.5, 1); .2 N -> (.75, 1); .1 N -> (1, 1).
    """
    maps = np.array([[[0.9, 0.4, 0.8, 0.6, 0.5, 0.1, 0.2]]])
    masks = np.array([[[1, 1, 0, 1, 0, 0, 0]]])
    return maps, masks


def test_pro_curve_hand_case():
    curve = pro_curve(*hand_case())
    assert isinstance(curve, ProCurve)
    np.testing.assert_allclose(curve.fpr, [0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1])
    np.testing.assert_allclose(curve.pro, [0, 0.25, 0.25, 0.75, 0.75, 1, 1, 1])


@pytest.mark.parametrize(
    "limit, expected",
    [
        (1.0, 0.25 * 0.25 + 0.25 * 0.75 + 0.5 * 1.0),  # 0.75
        (0.5, (0.25 * 0.25 + 0.25 * 0.75) / 0.5),  # 0.5
        (0.3, (0.25 * 0.25 + 0.05 * 0.75) / 0.3),  # 1/3, the cut falls on a flat part
    ],
)
def test_aupro_hand_case(limit, expected):
    assert aupro(*hand_case(), fpr_limit=limit) == pytest.approx(expected, abs=1e-12)


def test_pro_curve_is_cut_and_interpolated_at_limit():
    curve = pro_curve(*hand_case(), fpr_limit=0.3)
    np.testing.assert_allclose(curve.fpr, [0, 0, 0.25, 0.25, 0.3])
    np.testing.assert_allclose(curve.pro, [0, 0.25, 0.25, 0.75, 0.75])


def test_tie_between_normal_and_anomalous_pixel_is_a_diagonal():
    # Both pixels share the score: the curve goes straight from (0, 0) to (1, 1).
    maps, masks = np.array([[[0.5, 0.5]]]), np.array([[[1, 0]]])
    np.testing.assert_allclose(pro_curve(maps, masks).fpr, [0, 1])
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.5)
    assert aupro(maps, masks) == pytest.approx(0.15)  # integral of y = x up to 0.3, / 0.3


def test_aupro_perfect_and_inverted():
    maps, masks = random_case(0)
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0)
    assert aupro(maps + 10 * masks, masks) == pytest.approx(1.0)
    assert aupro(-(maps + 10 * masks), masks) == pytest.approx(0.0)


def test_eight_connectivity_diagonal_pixels_form_one_region():
    # (0,0)-(0,1) and (1,2) touch diagonally: one region of 3 pixels under 8-connectivity
    # (PRO = 1/3 when only (1,2) is detected), two regions under 4-connectivity (PRO = 1/2).
    masks = np.zeros((1, 3, 3), dtype=bool)
    masks[0, 0, 0] = masks[0, 0, 1] = masks[0, 1, 2] = True
    maps = np.zeros((1, 3, 3))
    maps[0, 1, 2] = 1.0
    curve = pro_curve(maps, masks)
    assert curve.pro[1] == pytest.approx(1 / 3)
    assert curve.fpr[1] == 0.0


def test_regions_never_join_across_images():
    # The same pixel position in two consecutive images: two regions (sizes 2 and 1), not one.
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[0, 0, 0:2] = True
    masks[1, 0, 0] = True
    maps = np.zeros((2, 3, 3))
    maps[1, 0, 0] = 1.0  # only the second region is detected
    assert pro_curve(maps, masks).pro[1] == pytest.approx(0.5)  # one region out of 2 (3D: 1/3)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [None, 5, 20])
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_aupro_matches_slow_reference(seed, levels, limit):
    maps, masks = random_case(seed, levels=levels)
    fprs, pros = slow_pro_curve(maps, masks)
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(
        slow_area(fprs, pros, limit), abs=1e-9
    )


@pytest.mark.parametrize("levels", [None, 7])
def test_full_pro_curve_matches_slow_reference(levels):
    maps, masks = random_case(3, levels=levels)
    fprs, pros = slow_pro_curve(maps, masks)
    curve = pro_curve(maps, masks)
    np.testing.assert_allclose(curve.fpr, fprs, atol=1e-12)
    np.testing.assert_allclose(curve.pro, pros, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    levels=st.sampled_from([None, 2, 3, 10]),
    limit=st.floats(0.01, 1.0),
)
def test_aupro_property_against_slow_reference(seed, levels, limit):
    maps, masks = random_case(seed, n=3, size=7, levels=levels)
    fprs, pros = slow_pro_curve(maps, masks)
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(
        slow_area(fprs, pros, limit), abs=1e-9
    )


def test_aupro_of_random_maps_is_about_half_the_limit():
    rng = np.random.default_rng(0)
    masks = np.zeros((20, 32, 32), dtype=bool)
    masks[:10, 8:20, 8:20] = True
    assert aupro(rng.random(masks.shape), masks) == pytest.approx(0.15, abs=0.02)


# --------------------------------------------------------------------------- AUROC, AP, F1


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("ties", [False, True])
def test_image_metrics_match_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    labels = rng.random(60) < 0.4
    scores = rng.normal(size=60) + labels
    if ties:
        scores = np.round(scores, 1)
    assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert image_ap(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    assert f1_max(scores, labels) == pytest.approx(f1.max(), abs=1e-12)
    assert f1_max(scores, labels) == pytest.approx(slow_f1_max(scores, labels), abs=1e-12)


@pytest.mark.parametrize("levels", [None, 10])
def test_pixel_metrics_match_sklearn(levels):
    maps, masks = random_case(4, n=6, size=16, levels=levels)
    s, y = maps.ravel(), masks.ravel()
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert pixel_ap(maps, masks) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert pixel_f1_max(maps, masks) == pytest.approx(slow_f1_max(s, y), abs=1e-12)


def test_hand_computable_image_metrics():
    labels = np.array([0, 0, 1, 1])
    assert image_auroc([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    assert image_auroc([0.9, 0.8, 0.2, 0.1], labels) == 0.0
    assert image_ap([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    assert f1_max([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    # One mis-ranked pair out of 4: AUROC 3/4. Ranking 1 0 1 0: AP = (1 + 2/3) / 2.
    assert image_auroc([0.1, 0.3, 0.2, 0.9], labels) == pytest.approx(0.75)
    assert image_ap([0.1, 0.8, 0.2, 0.9], labels) == pytest.approx(5 / 6)
    # All predicted anomalous: P = 1/2, R = 1 -> F1 = 2/3, the best here.
    assert f1_max([0.5, 0.5, 0.5, 0.5], labels) == pytest.approx(2 / 3)


def test_pixel_metrics_perfect_and_inverted():
    maps, masks = random_case(5)
    perfect = maps + 10 * masks
    assert pixel_auroc(perfect, masks) == 1.0
    assert pixel_ap(perfect, masks) == pytest.approx(1.0)
    assert pixel_f1_max(perfect, masks) == pytest.approx(1.0)
    assert pixel_auroc(-perfect, masks) == 0.0


def test_torch_and_channel_layouts_give_the_same_values():
    maps, masks = random_case(6)
    ref = compute_all(maps.max(axis=(1, 2)), masks.any(axis=(1, 2)), maps, masks)
    got = compute_all(
        torch.from_numpy(maps.max(axis=(1, 2))),
        torch.from_numpy(masks.any(axis=(1, 2))),
        torch.from_numpy(maps).float()[:, None],  # (N, 1, H, W), float32
        torch.from_numpy(masks)[:, None],
    )
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert aupro(torch.from_numpy(maps).half(), masks) == pytest.approx(ref["aupro"], abs=0.02)


def test_masks_are_binarised_above_zero():
    maps, masks = random_case(7)
    soft = masks * np.float32(255.0)
    soft[masks] -= 0.5 * np.random.default_rng(0).random(masks.sum())
    assert aupro(maps, soft) == aupro(maps, masks)
    assert pixel_ap(maps, soft.astype(np.uint8)) == pixel_ap(maps, masks)


def test_compute_all_keys_and_values():
    maps, masks = random_case(8)
    scores, labels = maps.max(axis=(1, 2)), masks.any(axis=(1, 2))
    out = compute_all(scores, labels, maps, masks)
    assert list(out) == [
        "image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max",
        "aupro",
    ]
    assert out["image_auroc"] == image_auroc(scores, labels)
    assert out["image_ap"] == image_ap(scores, labels)
    assert out["image_f1_max"] == f1_max(scores, labels)
    assert out["pixel_auroc"] == pixel_auroc(maps, masks)
    assert out["pixel_ap"] == pixel_ap(maps, masks)
    assert out["pixel_f1_max"] == pixel_f1_max(maps, masks)
    assert out["aupro"] == aupro(maps, masks)
    assert compute_all(scores, labels, maps, masks, fpr_limit=1.0)["aupro"] == aupro(
        maps, masks, fpr_limit=1.0
    )


def test_compute_all_without_masks_gives_nan_pixel_metrics():
    out = compute_all([0.1, 0.9], [0, 1])
    assert out["image_auroc"] == 1.0
    assert all(math.isnan(out[k]) for k in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [image_auroc, image_ap, f1_max])
@pytest.mark.parametrize("value, word", [(0, "label 0"), (1, "label 1")])
def test_single_class_image_labels_raise(fn, value, word):
    with pytest.raises(ValueError, match=f"all 3 test images have {word}"):
        fn([0.1, 0.2, 0.3], [value] * 3)


@pytest.mark.parametrize("fn", [pixel_auroc, pixel_ap, pixel_f1_max, aupro, pro_curve])
def test_masks_without_anomalous_or_normal_pixels_raise(fn):
    maps = np.random.default_rng(0).random((2, 4, 4))
    with pytest.raises(ValueError, match="all 32 ground-truth pixels are normal"):
        fn(maps, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="all 32 ground-truth pixels are anomalous"):
        fn(maps, np.ones((2, 4, 4)))


def test_non_finite_scores_raise_with_count():
    with pytest.raises(ValueError, match="2 non-finite"):
        image_auroc([0.1, np.nan, np.inf, 0.4], [0, 1, 0, 1])
    maps, masks = random_case(0)
    maps[0, 0, :3] = np.nan
    with pytest.raises(ValueError, match="maps contain 3 non-finite"):
        aupro(maps, masks)
    with pytest.raises(ValueError, match="maps contain 3 non-finite"):
        pixel_auroc(torch.from_numpy(maps), masks)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"maps \(2, 4, 4\) and masks \(2, 1, 4, 5\)"):
        aupro(np.zeros((2, 4, 4)), np.zeros((2, 1, 4, 5)))
    with pytest.raises(ValueError, match="3 scores vs 2 labels"):
        image_auroc([0.1, 0.2, 0.3], [0, 1])


def test_bad_dimensions_raise():
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, 1, H, W\).*add a batch axis"):
        pixel_auroc(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, 1, H, W\), got \(2, 3, 4, 4\)"):
        pixel_auroc(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="must be 1-D"):
        image_auroc(np.zeros((2, 2)), np.zeros((2, 2)))


def test_empty_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        image_auroc([], [])
    with pytest.raises(ValueError, match="empty"):
        aupro(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))


def test_labels_outside_zero_one_raise():
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1 \\(anomalous\\); found 1 other"):
        image_auroc([0.1, 0.2, 0.3], [0, 1, -1])


@pytest.mark.parametrize("limit", [0.0, -0.1, 1.5])
def test_bad_fpr_limit_raises(limit):
    with pytest.raises(ValueError, match="fpr_limit must be in"):
        aupro(*hand_case(), fpr_limit=limit)


def test_compute_all_input_errors():
    maps, masks = random_case(0)
    scores, labels = maps.max(axis=(1, 2)), masks.any(axis=(1, 2))
    with pytest.raises(ValueError, match="maps were given without masks"):
        compute_all(scores, labels, maps)
    with pytest.raises(ValueError, match="5 image scores but 4 anomaly maps"):
        compute_all(np.append(scores, 0.5), np.append(labels, True), maps, masks)


def test_psnr_by_hand():
    from diffad_core.metrics import psnr

    ref = np.zeros((2, 3, 4, 4))
    est = ref.copy()
    est[0] += 0.1  # MSE 0.01 -> 20 dB
    est[1, 0, 0, 0] = 1.0  # MSE 1/48 -> 10 log10(48)
    np.testing.assert_allclose(psnr(est, ref), [20.0, 10 * np.log10(48)])
    assert np.isinf(psnr(ref, ref)).all()
    with pytest.raises(ValueError, match="same shape"):
        psnr(ref, ref[:1])


def test_has_both_classes_by_hand():
    assert has_both_classes([0, 1, 0])
    assert has_both_classes(np.array([[0, 255], [0, 0]], dtype=np.uint8))  # a 0/255 mask
    assert has_both_classes(torch.tensor([False, True]))
    assert not has_both_classes([0, 0, 0]) and not has_both_classes([1, 1]) and not has_both_classes([])
    assert not has_both_classes(np.full((2, 4, 4), 255))


def test_trapezoid_area_by_hand_and_against_numpy():
    assert trapezoid_area(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.5  # the diagonal
    assert trapezoid_area(np.array([0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0])) == 1.0  # a perfect ROC
    assert trapezoid_area(np.array([0.3]), np.array([0.2])) == 0.0
    rng = np.random.default_rng(0)
    x, y = np.sort(rng.random(50)), rng.random(50)
    expected = sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(49))
    assert trapezoid_area(y, x) == pytest.approx(expected, rel=1e-12)
