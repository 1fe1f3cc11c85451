"""Decision thresholds from held-out normal images and synthetic anomalies, stored with the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffad_core.calibration import (MIN_TRAIN_FOR_VALIDATION, _synthetic_set, at_threshold, calibrate, f1_threshold,
                                     synthetic_auroc, validation_split)
from diffad_core.inference import EvalConfig
from diffad_core.model import DiffusionAD


def test_f1_threshold_by_hand() -> None:
    # scores 0.9 (1), 0.8 (1), 0.4 (0), 0.3 (1), 0.1 (0): top two give F1 = 0.8, top four
    # (tp 3, fp 1) give 6/7, the best; every threshold in (0.1, 0.3] gives it, and the one
    # returned sits 1 % of that gap above 0.1
    thr, f1 = f1_threshold(np.array([0.9, 0.8, 0.4, 0.3, 0.1]), np.array([1, 1, 0, 1, 0]))
    assert f1 == pytest.approx(6 / 7) and thr == pytest.approx(0.102)
    thr, f1 = f1_threshold(np.array([0.2, 0.2, 0.1]), np.array([1, 0, 0]))  # ties stay together
    assert f1 == pytest.approx(2 / 3) and thr == pytest.approx(0.101)
    thr, f1 = f1_threshold(np.array([0.5, 0.4]), np.array([1, 0]))  # separated: just above the negative
    assert f1 == 1.0 and thr == pytest.approx(0.401)
    thr, f1 = f1_threshold(np.array([0.5, 0.2]), np.array([0, 1]))
    assert f1 == pytest.approx(2 / 3) and thr == 0.2  # the best flags everything: the lowest score
    with pytest.raises(ValueError, match="both"):
        f1_threshold(np.array([0.1, 0.2]), np.array([1, 1]))
    m = at_threshold(np.array([0.9, 0.8, 0.4, 0.3]), np.array([1, 0, 0, 1]), 0.5)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)


def test_validation_split_is_seeded_disjoint_and_skipped_for_small_sets() -> None:
    keep, held = validation_split(60, 0.1, seed=0)
    assert len(held) == 6 and len(keep) == 54 and not set(keep.tolist()) & set(held.tolist())
    assert torch.equal(held, validation_split(60, 0.1, seed=0)[1])
    assert not torch.equal(held, validation_split(60, 0.1, seed=1)[1])
    assert len(validation_split(MIN_TRAIN_FOR_VALIDATION - 1, 0.1, 0)[1]) == 0
    assert len(validation_split(25, 0.05, 0)[1]) == 3  # at least 3
    assert len(validation_split(60, 0.0, 0)[1]) == 0


def test_calibrate_returns_thresholds_in_range() -> None:
    torch.manual_seed(0)
    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    c = calibrate(model, images, kind="texture", seed=0)
    assert 0 <= c["image_threshold"] <= 1 and 0 <= c["pixel_threshold"] <= 1
    assert c["n_normal"] == 4 and 1 <= c["n_synthetic"] <= 4 and "F1-optimal" in c["rule"]
    assert c == calibrate(model, images, kind="texture", seed=0)  # deterministic


def test_synthetic_auroc_matches_scikit_learn_on_the_calibration_set() -> None:
    from sklearn.metrics import roc_auc_score

    torch.manual_seed(0)
    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    got = synthetic_auroc(model, images, kind="texture", seed=2)
    scores, labels, maps, masks = _synthetic_set(model, images, "texture", None, EvalConfig(seed=2), 2, None)
    assert labels.sum() >= 1 and (labels == 0).sum() == 5
    assert got["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert got["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel() > 0.5, maps.ravel()))


def test_fit_holds_out_images_and_stores_the_thresholds(tmp_path: Path) -> None:
    from diffad_core.checkpoint import load_checkpoint, load_model
    from diffad_core.evaluate import evaluate
    from diffad_core.inference import EvalConfig
    from diffad_core.train import TrainConfig, fit

    images = torch.rand(MIN_TRAIN_FOR_VALIDATION, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig.from_preset("tiny", image_size=32, steps=1, batch_size=2, init="scratch", device="cpu")
    result = fit(cfg, images, out_dir=tmp_path / "run", progress=False)
    assert result.calibration is not None and result.calibration["n_normal"] == 3
    assert load_model(result.weights).calibration == result.calibration
    assert load_checkpoint(result.checkpoint)["extra"]["calibration"] == result.calibration
    assert load_model(result.checkpoint).calibration == result.calibration

    from types import SimpleNamespace

    masks = torch.zeros(4, 1, 32, 32, dtype=torch.uint8)
    masks[1::2, :, 4:12, 4:12] = 1
    split = SimpleNamespace(images=(images[:4] * 255).to(torch.uint8), masks=masks, labels=torch.tensor([0, 1, 0, 1]),
                            paths=["a", "b", "c", "d"], defects=["good", "x", "good", "x"])
    model = load_model(result.weights)
    ev = evaluate(model, split, EvalConfig(device="cpu", num_figures=0))
    assert ev.metrics["threshold"] == result.calibration["image_threshold"]
    assert ev.metrics["threshold_source"] == "calibrated" and "image_f1_at_threshold" in ev.metrics
    given = evaluate(model, split, EvalConfig(device="cpu", num_figures=0, threshold=0.0))
    assert given.metrics["threshold_source"] == "given" and given.metrics["image_recall_at_threshold"] == 1.0
    small = fit(cfg, images[:4], progress=False)  # too few images for a hold-out: no thresholds
    assert small.calibration is None and small.model.calibration is None


def test_shipped_models_carry_their_calibration() -> None:
    from diffad_core import PRETRAINED, load_pretrained

    for category in PRETRAINED:
        c = load_pretrained(category).calibration
        assert c is not None and 0 < c["image_threshold"] < 1 and "seed=1" in c["images"]


def test_threshold_gap_tool_agrees_with_the_library_and_counts_decisions_by_hand():
    from _tools import load_tool

    from diffad_core.calibration import GAP_FRACTION

    gap = load_tool("threshold_gap")
    normal, synthetic = np.array([0.1, 0.3, 0.2]), np.array([0.7, 0.5, 0.9])
    assert gap.gap_threshold(normal, synthetic, 0.5) == pytest.approx(0.4)
    assert gap.gap_threshold(normal, synthetic, 0.0) == pytest.approx(0.3)
    # the library's threshold on a separated set is the tool's at GAP_FRACTION
    lib, f1 = f1_threshold(np.r_[normal, synthetic], np.r_[np.zeros(3), np.ones(3)])
    assert f1 == 1.0 and lib == pytest.approx(gap.gap_threshold(normal, synthetic, GAP_FRACTION))
    with pytest.raises(ValueError, match="overlap"):
        gap.gap_threshold(np.array([0.6]), synthetic, 0.5)
    # scores 0.9 (1), 0.6 (0), 0.5 (1), 0.2 (1), 0.1 (0) at 0.4: tp 2, fp 1 -> precision 2/3,
    # recall 2/3, one of two normals flagged, F1 2/3
    got = gap.decisions(np.array([0.9, 0.6, 0.5, 0.2, 0.1]), np.array([1, 0, 1, 1, 0]), 0.4)
    assert got == pytest.approx([2 / 3, 2 / 3, 0.5, 2 / 3])
