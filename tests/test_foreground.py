"""Tests for diffad_core.data.foreground.estimate_foreground."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffad_core.data.foreground import estimate_foreground
from diffad_core.data.mini import MINI_CATEGORIES, render_mini_sample

OBJECTS = [c for c, kind in MINI_CATEGORIES.items() if kind == "object"]


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float((a & b).sum() / (a | b).sum())


def _scene(size: int = 64) -> torch.Tensor:
    """Dark blue background with a bright square (rows/cols 16..47) in it."""
    image = torch.empty(3, size, size)
    image[:] = torch.tensor([0.1, 0.1, 0.3]).view(3, 1, 1)
    image[:, 16:48, 16:48] = torch.tensor([0.9, 0.8, 0.7]).view(3, 1, 1)
    return image


def test_square_on_plain_background_by_hand() -> None:
    mask = estimate_foreground(_scene())
    truth = torch.zeros(1, 64, 64)
    truth[:, 16:48, 16:48] = 1
    assert mask.shape == (1, 64, 64) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    # Exact except that smoothing may shave the four corner pixels of the square.
    wrong = (mask != truth)[0].nonzero().tolist()
    assert all(p in ([16, 16], [16, 47], [47, 16], [47, 47]) for p in wrong), wrong


def test_large_hole_kept_small_hole_filled() -> None:
    image = _scene()
    image[:, 26:38, 26:38] = torch.tensor([0.1, 0.1, 0.3]).view(3, 1, 1)  # 144 px bore: > 1 %
    mask = estimate_foreground(image)
    assert float(mask[0, 28:36, 28:36].sum()) == 0
    image = _scene()
    image[:, 31:33, 31:33] = torch.tensor([0.1, 0.1, 0.3]).view(3, 1, 1)  # 4 px speck: filled
    assert float(estimate_foreground(image)[0, 16:48, 16:48].min()) == 1.0


def test_implausible_results_fall_back_to_whole_image() -> None:
    flat = torch.full((3, 32, 32), 0.4)
    assert torch.equal(estimate_foreground(flat), torch.ones(1, 32, 32))
    tiny = torch.full((3, 64, 64), 0.4)
    tiny[:, 30:33, 30:33] = 1.0  # a 9 px dot: well under 2 % of the image even when smoothed
    assert torch.equal(estimate_foreground(tiny), torch.ones(1, 64, 64))
    small = torch.full((3, 64, 64), 0.4)
    small[:, 24:40, 24:40] = 1.0  # 256 px = 6 %: a plausible object, kept
    assert 200 < float(estimate_foreground(small).sum()) < 300


def test_batch_dtype_and_shape_errors() -> None:
    batch = torch.stack([_scene(), torch.full((3, 64, 64), 0.5)]).double()
    out = estimate_foreground(batch)
    assert out.shape == (2, 1, 64, 64) and out.dtype == torch.float32
    assert torch.equal(out[0], estimate_foreground(_scene()))
    assert torch.equal(out[1], torch.ones(1, 64, 64))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        estimate_foreground(torch.zeros(1, 64, 64))


@pytest.mark.parametrize("category", OBJECTS)
def test_iou_on_mini_objects(category: str) -> None:
    rng = np.random.default_rng(123)
    ious = []
    for defect in ("good", "good", "good", "missing", "stain", "particle"):
        sample = render_mini_sample(category, defect, rng=rng)
        image = torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255.0
        ious.append(_iou(estimate_foreground(image)[0], torch.from_numpy(sample.foreground)))
    assert min(ious) >= 0.8, ious
