"""Batched inference shared by evaluation, the benchmarks, the notebooks and prediction."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from diffad_core.inference import EvalConfig, figure_indices, predict_images, predict_split, reconstruction_psnr
from diffad_core.model import DiffusionAD
from diffad_core.reconstruction import PAPER_INFERENCE


def _model() -> DiffusionAD:
    torch.manual_seed(0)
    return DiffusionAD.from_preset("tiny", image_size=32)


class _Split:
    def __init__(self, n: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = (torch.rand(n, 3, 32, 32, generator=g) * 255).to(torch.uint8)
        self.masks = torch.zeros(n, 1, 32, 32, dtype=torch.uint8)
        self.masks[1::2, :, 8:16, 8:16] = 1
        self.labels = torch.tensor([i % 2 for i in range(n)])
        self.paths = [f"img{i}.png" for i in range(n)]
        self.defects = ["good" if i % 2 == 0 else "hole" for i in range(n)]


def test_defaults_are_the_paper_setting() -> None:
    cfg = EvalConfig()
    assert (cfg.t_s, cfg.t_b, cfg.w, cfg.top_k) == tuple(PAPER_INFERENCE) == (200, 400, 1.0, 50)
    assert cfg.amp == "auto" and cfg.map_dtype == "float32"


def test_figure_indices_by_hand() -> None:
    np.testing.assert_array_equal(figure_indices([0, 0, 0, 1, 1, 1], 4), [0, 2, 3, 5])
    np.testing.assert_array_equal(figure_indices([0, 1, 1, 1, 1, 1], 4), [0, 1, 3, 5])  # 1 good
    np.testing.assert_array_equal(figure_indices([1, 0], 8), [0, 1])  # k larger than N
    assert figure_indices([0, 1], 0).size == 0


def test_predict_images_matches_predict_split() -> None:
    split, cfg = _Split(), EvalConfig(device="cpu", batch_size=2, num_figures=2)
    a = predict_split(_model(), split, cfg)
    b = predict_images(_model(), split.images, cfg, reconstructions=True)
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.reconstructions, b.reconstructions[a.figure_indices])
    with pytest.raises(ValueError, match="built for 32 x 32"):
        predict_images(_model(), torch.rand(1, 3, 16, 16), cfg)


def test_psnr_uses_the_same_loop_and_noise() -> None:
    split, cfg = _Split(), EvalConfig(device="cpu", batch_size=2)
    value = reconstruction_psnr(_model(), split, cfg)
    normal = split.images[split.labels == 0]
    rec = predict_images(_model(), normal, cfg, reconstructions=True).reconstructions
    x = normal.float().numpy() / 255.0
    mse = ((rec - x) ** 2).reshape(len(x), -1).mean(1)
    assert value == pytest.approx(float(np.mean(10 * np.log10(1.0 / mse))), rel=1e-5)


class _Recorder(nn.Module):
    """Wraps a network and records whether bf16 autocast was on when it ran."""

    def __init__(self, net: nn.Module, log: list) -> None:
        super().__init__()
        self.net, self.log = net, log

    def forward(self, *args):
        self.log.append(torch.is_autocast_enabled("cpu"))
        return self.net(*args)


def test_bf16_on_cpu_autocasts_the_unet_passes_only_and_keeps_maps_float32() -> None:
    """Bug: amp='bf16' autocast training on CPU but evaluation warned and ran float32."""
    model = _model()
    unet_log: list = []
    seg_log: list = []
    model.unet = _Recorder(model.unet, unet_log)
    model.segnet = _Recorder(model.segnet, seg_log)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "CUDA only" warning any more
        pred = predict_split(model, _Split(2), EvalConfig(device="cpu", amp="bf16", batch_size=2, num_figures=0))
    assert unet_log == [True, True] and seg_log == [False]
    assert pred.maps.dtype == np.float32 and pred.scores.dtype == np.float32


def test_bf16_unet_passes_change_the_metrics_little() -> None:
    """The fp32 default is exact; bf16 UNet passes stay close (measured on real models in the README)."""
    from diffad_core.evaluate import compute_metrics

    split = _Split(8)
    a = predict_split(_model(), split, EvalConfig(device="cpu", amp="off", batch_size=4, num_figures=0))
    b = predict_split(_model(), split, EvalConfig(device="cpu", amp="bf16", batch_size=4, num_figures=0))
    assert np.abs(a.maps - b.maps).max() < 0.05
    ma, _ = compute_metrics(a)
    mb, _ = compute_metrics(b)
    assert abs(ma["pixel_auroc"] - mb["pixel_auroc"]) < 0.05
