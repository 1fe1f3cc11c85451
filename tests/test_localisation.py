"""tools/localisation.py: within-image and pooled pixel AUROC per defect kind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from _tools import load_tool
from conftest import write_tiny_mvtec

tool = load_tool("localisation")


def test_within_image_auroc_by_hand() -> None:
    maps = np.array([[[0.1, 0.9], [0.2, 0.3]],
                     [[0.1, 0.9], [0.05, 0.3]],
                     [[0.5, 0.5], [0.5, 0.5]]])
    masks = np.array([[[0, 1], [0, 0]],
                      [[0, 1], [1, 0]],  # positives 0.9, 0.05 against 0.1, 0.3: 2 of 4 pairs
                      [[0, 0], [0, 0]]], dtype=np.uint8)
    out = tool.within_image_auroc(maps, masks)
    assert out[0] == 1.0 and out[1] == 0.5 and math.isnan(out[2])


def test_an_offset_between_images_lowers_the_pooled_figure_only() -> None:
    # kind "dent": the defect pixel is the brightest of its image, but the whole image scores below
    # the normal image; kind "spot" is lit everywhere; "good" holds no defective pixel.
    maps = np.array([[[0.6, 0.7], [0.6, 0.6]],  # good
                     [[0.1, 0.3], [0.1, 0.1]],  # dent
                     [[0.9, 0.9], [0.9, 0.9]]])  # spot, its mask holds one pixel only
    masks = np.array([[[0, 0], [0, 0]], [[0, 1], [0, 0]], [[1, 0], [0, 0]]], dtype=np.uint8)
    figures = tool.kind_figures(maps, masks, ["good", "dent", "spot"])
    dent, spot = figures["dent"], figures["spot"]
    assert dent.within_mean == 1.0 and dent.images == 1 and dent.pixel_share == 0.5
    # pooled: 0.3 against the 4 good pixels (all higher) and the 3 dent normals (all lower) -> 3 / 7
    assert math.isclose(dent.pooled_auroc, 3 / 7)
    # spot: 0.9 ties its own 3 normals (half each) and beats the 4 good ones -> (4 + 1.5) / 7
    assert spot.within_mean == 0.5 and math.isclose(spot.pooled_auroc, 5.5 / 7)
    assert math.isnan(dent.error_within_mean)


def test_reconstruction_error_against_a_slow_reference() -> None:
    rng = np.random.default_rng(0)
    x, r = rng.random((2, 3, 5, 6)), rng.random((2, 3, 5, 6))
    got = tool.reconstruction_error(x, r, 3)
    err = np.abs(x - r).mean(axis=1)
    want = np.zeros_like(err)
    for n in range(2):
        for i in range(5):
            for j in range(6):
                want[n, i, j] = err[n, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].mean()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(tool.reconstruction_error(x, r, 0), err, rtol=1e-6)


def test_the_command_on_a_tiny_category(tmp_path: Path, capsys) -> None:
    from diffad_core.checkpoint import save_weights
    from diffad_core.model import DiffusionAD

    root = write_tiny_mvtec(tmp_path / "data")
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "m.safetensors", DiffusionAD.from_preset("tiny", image_size=32))
    argv = ["--checkpoint", str(weights), "--data", str(root), "--category", "widget", "--threads", "1"]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2].startswith("| scratch | 3 | 100.0 |")
    figures = json.loads(out[-1])["scratch"]
    assert figures["images"] == 3 and 0 <= figures["within_mean"] <= 1 and 0 <= figures["error_within_mean"] <= 1

    assert tool.main(argv[:-2] + ["--blur", "4"]) == 2
    assert "--blur 4" in capsys.readouterr().err
    assert tool.main(argv + ["--t-b", "1000"]) == 2
    assert "--t-b 1000 is outside the model's noise levels 0..999" in capsys.readouterr().err
    assert tool.main(["--checkpoint", str(tmp_path / "nope"), "--data", str(root), "--category", "widget"]) == 2
    assert "does not exist" in capsys.readouterr().err
