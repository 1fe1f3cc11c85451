"""Folders as users have them: defects without masks, a test folder of good/defect images only,
a category with nothing but train/good."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import write_tiny_mvtec

from diffad_core.data import DatasetError, load_tensors, open_dataset
from diffad_core.evaluate import evaluate
from diffad_core.inference import EvalConfig
from diffad_core.model import DiffusionAD


def _model() -> DiffusionAD:
    torch.manual_seed(0)
    return DiffusionAD.from_preset("tiny", image_size=32).eval()


def test_defects_without_masks_give_image_metrics_only(tmp_path: Path) -> None:
    root = write_tiny_mvtec(tmp_path / "data")
    shutil.rmtree(root / "widget" / "ground_truth")  # test/good + test/scratch, no masks at all
    test = open_dataset(root, "widget", "test", image_size=32)
    split = load_tensors(test)
    assert split.mask_known.tolist() == [True, True, False, False, False]
    with pytest.warns(UserWarning, match="3 of the 3 defect images have no ground-truth mask"):
        result = evaluate(_model(), split, EvalConfig(device="cpu", num_figures=0), category="widget")
    assert 0.0 <= result.metrics["image_auroc"] <= 1.0
    assert all(math.isnan(result.metrics[k]) for k in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"))
    assert len(result.warnings) == 1 and "image metrics only" in result.warnings[0]


def test_a_missing_mask_beside_others_is_still_an_error(tmp_path: Path) -> None:
    root = write_tiny_mvtec(tmp_path / "data")
    (root / "widget" / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match="001.png has no ground-truth mask"):
        open_dataset(root, "widget", "test", image_size=32)


def test_a_category_with_only_normal_training_images_trains(tmp_path: Path) -> None:
    from diffad_core.train import TrainConfig, fit

    root = write_tiny_mvtec(tmp_path / "data")
    shutil.rmtree(root / "widget" / "test")
    shutil.rmtree(root / "widget" / "ground_truth")
    train = open_dataset(root, "widget", "train", image_size=32)
    cfg = TrainConfig.from_preset("tiny", image_size=32, steps=1, batch_size=2, init="scratch", device="cpu")
    assert fit(cfg, train, progress=False).steps == 1
    with pytest.raises(DatasetError, match="No test/ folder"):
        open_dataset(root, "widget", "test", image_size=32)
