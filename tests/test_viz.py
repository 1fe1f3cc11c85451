"""Tests of diffad_core.viz: every function returns a Figure with the expected axes."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from diffad_core import NoiseSchedule
from diffad_core.metrics import aupro
from diffad_core.viz import (
    as_image,
    as_map,
    overlay_anomaly_map,
    plot_loss_curves,
    plot_pro,
    plot_roc,
    plot_samples,
    plot_schedules,
    plot_score_histogram,
    save_figure,
    show_images,
)

RNG = np.random.default_rng(0)
H = W = 12


def maps_and_masks(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((n, H, W), np.uint8)
    masks[1, 2:5, 2:6] = 1
    masks[n - 1, 6:9, 1:4] = 1
    maps = np.clip(RNG.random((n, H, W)) * 0.6 + 0.3 * masks, 0, 1).astype(np.float32)
    return maps, masks


def test_as_image_and_as_map_by_hand() -> None:
    chw = torch.zeros(3, 2, 4)
    chw[0, 1, 3] = 2.0  # clipped to 1
    img = as_image(chw)
    assert img.shape == (2, 4, 3) and img.dtype == np.float32 and img[1, 3, 0] == 1.0 and img.sum() == 1.0
    assert as_image(np.full((2, 4, 3), 255, np.uint8)).max() == 1.0  # HWC uint8 / 255
    assert as_image(torch.ones(1, 2, 4, dtype=torch.float16)).shape == (2, 4)  # grey
    np.testing.assert_array_equal(as_image(np.eye(2, dtype=bool)), np.eye(2, dtype=np.float32))
    with pytest.raises(ValueError, match="an image must be"):
        as_image(torch.zeros(2, 3, 4, 4))  # a batch
    m = as_map(torch.full((1, 2, 4), 3.0))  # values are not clipped
    assert m.shape == (2, 4) and m.dtype == np.float32 and m.max() == 3.0
    with pytest.raises(ValueError, match="mask must be"):
        as_map(np.zeros((2, 2, 2)), "mask")


def test_show_images_has_one_axes_per_image() -> None:
    images = torch.rand(5, 3, H, W)
    fig = show_images(images, titles=list("abcde"), ncols=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 5
    assert fig.axes[4].get_title() == "e"
    hwc_uint8 = (RNG.random((2, H, W, 3)) * 255).astype(np.uint8)
    assert len(show_images(hwc_uint8).axes) == 2
    assert len(show_images([np.zeros((H, W)), np.ones((1, H, W))]).axes) == 2  # grey images
    with pytest.raises(ValueError, match="titles"):
        show_images(images, titles=["a"])


def test_overlay_blends_jet_colours() -> None:
    image = RNG.random((3, H, W)).astype(np.float32)
    amap = np.zeros((H, W), np.float32)
    out = overlay_anomaly_map(image, amap, alpha=0.0)
    assert out.shape == (H, W, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, image.transpose(1, 2, 0), atol=1e-6)
    cold = np.array(matplotlib.colormaps["jet"](0.0)[:3], np.float32)
    np.testing.assert_allclose(overlay_anomaly_map(image, amap, alpha=1.0), np.broadcast_to(cold, (H, W, 3)), atol=1e-6)
    half = overlay_anomaly_map(image, torch.ones(1, H, W), alpha=0.5)
    hot = np.array(matplotlib.colormaps["jet"](1.0)[:3], np.float32)
    np.testing.assert_allclose(half, 0.5 * image.transpose(1, 2, 0) + 0.5 * hot, atol=1e-6)
    # display blur spreads a single hot pixel
    spike = np.zeros((H, W), np.float32)
    spike[6, 6] = 1.0
    sharp = overlay_anomaly_map(image, spike, alpha=1.0)
    blurred = overlay_anomaly_map(image, spike, alpha=1.0, blur_sigma=2.0)
    assert not np.allclose(sharp[6, 8], blurred[6, 8])
    with pytest.raises(ValueError, match="resize"):
        overlay_anomaly_map(image, np.zeros((H + 1, W)))


def test_plot_samples_is_four_rows_of_k() -> None:
    maps, masks = maps_and_masks(3)
    images = torch.rand(3, 3, H, W)
    fig = plot_samples(images, images * 0.9, maps, masks[:, None], titles=["a", "b", "c"])
    assert len(fig.axes) == 12
    assert fig.axes[0].get_ylabel() == "input" and fig.axes[9].get_ylabel() == "ground truth"
    with pytest.raises(ValueError, match="same number"):
        plot_samples(images, images[:2], maps, masks)


def test_plot_roc_panels() -> None:
    maps, masks = maps_and_masks()
    scores = maps.reshape(4, -1).max(1)
    labels = np.array([0, 1, 0, 1])
    fig = plot_roc(scores, labels, maps, masks)
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["image ROC", "pixel ROC"]
    assert len(plot_roc(scores, labels).axes) == 1
    one_class = plot_roc(scores, np.zeros(4), maps, masks)  # image ROC undefined, no crash
    assert len(one_class.axes) == 2
    assert "undefined" in " ".join(t.get_text() for t in one_class.axes[0].texts)


def test_plot_pro_shows_the_metric_aupro() -> None:
    maps, masks = maps_and_masks()
    fig = plot_pro(maps, masks)
    assert len(fig.axes) == 1
    label = fig.axes[0].get_legend().get_texts()[0].get_text()
    shown = float(re.search(r"= ([\d.]+) %", label).group(1))
    assert shown == pytest.approx(100 * aupro(maps, masks), abs=0.051)
    empty = plot_pro(maps, np.zeros_like(masks))
    assert len(empty.axes) == 1 and "undefined" in empty.axes[0].texts[0].get_text()


def test_plot_score_histogram() -> None:
    fig = plot_score_histogram(RNG.random(20), np.r_[np.zeros(10), np.ones(10)], threshold=0.5)
    assert len(fig.axes) == 1
    assert len(plot_score_histogram(RNG.random(5), np.zeros(5)).axes) == 1


def test_plot_loss_curves_one_axes_per_term() -> None:
    records = [dict(step=s, loss=1.0 / (s + 1), noise=0.5, focal=0.1, smooth_l1=0.05, lr=1e-4) for s in range(20)]
    fig = plot_loss_curves(records, smoothing=0.5)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "noise", "focal", "smooth_l1"]
    assert len(plot_loss_curves([{"step": 0, "loss": 1.0}]).axes) == 1
    with pytest.raises(ValueError, match="no records"):
        plot_loss_curves([])
    with pytest.raises(ValueError, match="keys"):
        plot_loss_curves([{"step": 0, "lr": 1.0}])


def test_save_figure_is_atomic_and_closes(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = show_images(torch.rand(2, 3, H, W))
    path = save_figure(fig, tmp_path / "sub" / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
    assert fig.axes == []  # released

    pyplot_fig = plt.figure()
    pyplot_fig.add_subplot().plot([0, 1])
    save_figure(pyplot_fig, tmp_path / "p.pdf")
    assert (tmp_path / "p.pdf").read_bytes()[:4] == b"%PDF"
    assert pyplot_fig.number not in plt.get_fignums()


def test_plot_schedules_draws_one_curve_per_schedule():
    fig = plot_schedules({"linear": NoiseSchedule(100), "cosine": NoiseSchedule(100, "cosine")}, marks=(20,))
    assert len(fig.axes) == 2 and len(fig.axes[0].get_lines()) == 3  # two curves + one mark
    with pytest.raises(ValueError):
        plot_schedules({})
