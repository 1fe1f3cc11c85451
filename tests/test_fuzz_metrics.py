"""Fuzzing the metrics: empty and one-class test sets, NaN/inf scores, bad labels and shapes.

Property (issue 7): every metric either returns the value of an independent reference
(scikit-learn for AUROC/AP, a brute-force threshold loop for F1-max, the definition's bounds for
AUPRO) or raises ONE ``ValueError`` that says what was wrong - never NaN, never a raw numpy or
scikit-learn error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from diffad_core import metrics as M
from reliability import CLEAR_ERROR, OK, flush_counts_after_module, fuzz_settings, record  # noqa: F401

AREA = "metric inputs (scores, labels, maps)"
_SPECIAL = [float("nan"), float("inf"), -float("inf")]


def _f1_max_reference(s: np.ndarray, y: np.ndarray) -> float:
    best = 0.0
    for thr in np.unique(s):
        pred = s >= thr
        tp = np.sum(pred & y)
        if tp:
            p, r = tp / pred.sum(), tp / y.sum()
            best = max(best, 2 * p * r / (p + r))
    return best


@st.composite
def image_inputs(draw):
    n = draw(st.integers(0, 12))
    scores = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=n, max_size=n))
    labels = draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n))
    kind = "valid"
    if n and draw(st.booleans()):
        which = draw(st.sampled_from(["non-finite score", "label not 0/1", "one class", "ties"]))
        i = draw(st.integers(0, n - 1))
        if which == "non-finite score":
            scores[i] = draw(st.sampled_from(_SPECIAL))
        elif which == "label not 0/1":
            labels[i] = draw(st.sampled_from([2, -1]))
        elif which == "one class":
            labels = [labels[0]] * n
        else:
            scores = [round(v / 1e5) for v in scores]  # few distinct values: many ties
        kind = which
    if n == 0:
        kind = "empty"
    as_tensor = draw(st.booleans())
    s = torch.tensor(scores, dtype=torch.float64) if as_tensor else np.array(scores, dtype=np.float64)
    return kind, s, np.array(labels, dtype=np.int64)


@fuzz_settings(150)
@given(inputs=image_inputs())
def test_image_metrics_are_right_or_refuse_clearly(inputs):
    kind, scores, labels = inputs
    s = np.asarray(scores, dtype=np.float64)
    valid = (
        s.size > 0 and np.isfinite(s).all() and np.isin(labels, (0, 1)).all() and 0 < labels.sum() < labels.size
    )
    fns = {"image_auroc": M.image_auroc, "image_ap": M.image_ap, "f1_max": M.f1_max}
    if not valid:
        for name, fn in fns.items():
            with pytest.raises(ValueError) as info:
                fn(scores, labels)
            msg = str(info.value)
            assert any(w in msg for w in ("empty", "non-finite", "label", "0 (normal)")), (name, msg)
        with pytest.raises(ValueError):
            M.compute_all(scores, labels)
        record(AREA, f"image scores: {kind}", CLEAR_ERROR)
        return
    y = labels.astype(bool)
    assert M.image_auroc(scores, labels) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.image_ap(scores, labels) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert M.f1_max(scores, labels) == pytest.approx(_f1_max_reference(s, y), abs=1e-12)
    out = M.compute_all(scores, labels)
    assert out["image_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert all(np.isnan(out[k]) for k in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"))
    record(AREA, f"image scores: {kind}", OK)


@st.composite
def pixel_inputs(draw):
    n, h, w = draw(st.sampled_from([2, 1, 3, 0])), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    maps = rng.random((n, h, w)).astype(draw(st.sampled_from([np.float32, np.float64])))
    masks = rng.random((n, h, w)) < draw(st.sampled_from([0.3, 0.5, 0.0, 1.0]))
    kind = "valid"
    which = draw(st.sampled_from(["none", "non-finite map", "shape mismatch", "channel axis", "soft 0-255 masks"]))
    if n and which == "non-finite map":
        maps[draw(st.integers(0, n - 1)), 0, 0] = draw(st.sampled_from(_SPECIAL))
        kind = which
    elif which == "shape mismatch":
        masks = masks[:, :, : w - 1] if w > 1 else np.concatenate([masks, masks], axis=1)
        kind = which
    elif which == "channel axis":
        maps, masks = maps[:, None], masks[:, None]
        kind = "(N, 1, H, W) layout"
    elif which == "soft 0-255 masks":
        masks = masks.astype(np.uint8) * 255
        kind = which
    if n == 0:
        kind = "empty"
    elif kind in ("valid", "(N, 1, H, W) layout", "soft 0-255 masks"):
        g = np.asarray(masks) > 0
        if not 0 < g.sum() < g.size:
            kind = "one pixel class"
    return kind, maps, masks


@fuzz_settings(120)
@given(inputs=pixel_inputs())
def test_pixel_metrics_are_right_or_refuse_clearly(inputs):
    kind, maps, masks = inputs
    fns = [M.pixel_auroc, M.pixel_ap, M.pixel_f1_max, M.aupro, M.pro_curve]
    if kind not in ("valid", "(N, 1, H, W) layout", "soft 0-255 masks"):
        for fn in fns:
            with pytest.raises(ValueError) as info:
                fn(maps, masks)
            msg = str(info.value)
            assert any(w in msg for w in ("empty", "non-finite", "shape", "pixels")), (fn.__name__, msg)
        record(AREA, f"pixel maps: {kind}", CLEAR_ERROR)
        return
    m = np.asarray(maps, dtype=np.float64).reshape(-1)
    g = (np.asarray(masks) > 0).reshape(-1)
    assert M.pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(g, m), abs=1e-9)
    assert M.pixel_ap(maps, masks) == pytest.approx(average_precision_score(g, m), abs=1e-9)
    assert M.pixel_f1_max(maps, masks) == pytest.approx(_f1_max_reference(m, g), abs=1e-9)
    value = M.aupro(maps, masks)
    assert np.isfinite(value) and 0.0 <= value <= 1.0 + 1e-12
    n = np.asarray(maps).shape[0]
    labels = np.array([1] + [0] * (n - 1)) if n > 1 else None
    if labels is not None:
        out = M.compute_all(np.arange(n, dtype=float), labels, maps, masks)
        assert out["aupro"] == pytest.approx(value, abs=1e-12)
        assert out["pixel_auroc"] == pytest.approx(roc_auc_score(g, m), abs=1e-9)
    record(AREA, f"pixel maps: {kind}", OK)


@fuzz_settings(30)
@given(limit=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 0.3, -0.1, 1.0001])))
def test_fpr_limit_is_checked(limit):
    maps = np.linspace(0, 1, 32).reshape(2, 4, 4)
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    if not 0.0 < limit <= 1.0:
        with pytest.raises(ValueError, match="fpr_limit"):
            M.aupro(maps, masks, fpr_limit=limit)
        record(AREA, "AUPRO fpr_limit out of range / NaN", CLEAR_ERROR)
        return
    assert 0.0 <= M.aupro(maps, masks, fpr_limit=limit) <= 1.0
    record(AREA, "AUPRO fpr_limit in (0, 1]", OK)
