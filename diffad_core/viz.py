"""Figures: image grids, anomaly-map overlays, ROC / PRO curves, score histograms, loss curves,
noise schedules.

Every ``plot_*`` / ``show_*`` function builds a :class:`matplotlib.figure.Figure` directly (not
through ``pyplot``) and returns it; nothing here calls ``plt.show``. So the functions work under
the headless ``Agg`` backend, leave no figure open in pyplot's registry, and in a notebook a
returned figure is displayed once, as the cell's value. :func:`save_figure` writes a figure
atomically and closes it.

Inputs may be NumPy arrays or torch tensors (any device). Images are (3, H, W) or (H, W, 3)
(a batch adds a leading N), float in [0, 1] or uint8 in 0..255; anomaly maps are (H, W) or
(1, H, W) with values in [0, 1] (the segmentation output M); masks are {0, 1} or {0, 255}.
:func:`as_image` and :func:`as_map` are the conversions every function here applies to its
inputs; they are public so that other figures (the course's explorers, :mod:`diffad_core.course`)
read their inputs the same way.

Display only: :func:`overlay_anomaly_map` can blur the map with a Gaussian (sigma = 4 px, as the
released code does for its pictures). The blur is for pictures only; every metric uses the raw
map M (docs/method.md §1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import ndimage

from .metrics import ArrayLike, has_both_classes

__all__ = [
    "as_image",
    "as_map",
    "show_images",
    "overlay_anomaly_map",
    "plot_samples",
    "plot_roc",
    "plot_pro",
    "plot_score_histogram",
    "plot_loss_curves",
    "plot_schedules",
    "save_figure",
    "DISPLAY_BLUR_SIGMA",
]

#: Gaussian blur (pixels) the released code applies to anomaly maps for pictures only.
DISPLAY_BLUR_SIGMA: float = 4.0

_PLOT_POINTS = 2001  # curves with more points are resampled on this many FPR values for drawing
_SAMPLE_ROWS = ("input", "reconstruction", "anomaly map", "ground truth")
_LOSS_KEYS = ("loss", "noise", "focal", "smooth_l1")


# --------------------------------------------------------------------------- conversions


def _numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def as_image(image: ArrayLike) -> np.ndarray:
    """One image as a NumPy array ready for ``imshow``: float32 (H, W, 3), or (H, W) for grey.

    Args:
        image: (3, H, W), (H, W, 3), (1, H, W), (H, W, 1) or (H, W); NumPy or torch (any device).
            uint8 is divided by 255, bool becomes {0, 1}, float is clipped to [0, 1].

    Returns:
        float32 (H, W, 3) or (H, W) in [0, 1], a new array.

    Raises:
        ValueError: any other shape (e.g. a batch (N, 3, H, W): pass one image).
    """
    a = _numpy(image)
    if a.ndim == 3 and a.shape[-1] not in (1, 3) and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C); (H, W, C) is taken as it is
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(
            f"an image must be (3, H, W), (H, W, 3) or (H, W); got shape {a.shape}"
        )
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == bool:
        return a.astype(np.float32)
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def as_map(amap: ArrayLike, name: str = "anomaly map") -> np.ndarray:
    """One anomaly map (or mask) as float32 (H, W), from (H, W) or (1, H, W); values unchanged.

    Args:
        amap: the map M (or a mask), NumPy or torch (any device).
        name: what to call it in the error message.

    Raises:
        ValueError: any other shape.
    """
    a = _numpy(amap)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (H, W) or (1, H, W); got shape {a.shape}")
    return a.astype(np.float32)


def _batch(x: ArrayLike) -> list[np.ndarray]:
    """Split a batch (N, ...) or a sequence of arrays into a list of arrays."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return [_numpy(x[i]) for i in range(len(x))]
    return [_numpy(v) for v in x]


def _maps_stack(x: ArrayLike, name: str) -> np.ndarray:
    a = _numpy(x)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W) or (N, 1, H, W); got shape {a.shape}")
    return a


def _grid(n: int, ncols: int, cell_w: float, cell_h: float) -> tuple[Figure, list]:
    """A figure with exactly ``n`` axes on a grid of ``ncols`` columns (unused cells removed)."""
    if n < 1:
        raise ValueError("nothing to show: got 0 images")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(cell_w * ncols, cell_h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


# --------------------------------------------------------------------------- images


def show_images(
    images: Union[ArrayLike, Sequence[ArrayLike]],
    titles: Optional[Sequence[str]] = None,
    ncols: int = 4,
    *,
    cmap: str = "gray",
    cell_size: float = 2.5,
) -> Figure:
    """A grid of images, one axes per image (exactly ``len(images)`` axes).

    Args:
        images: a batch (N, 3, H, W) / (N, H, W, 3) / (N, H, W), or a list of single images.
        titles: optional N titles.
        ncols: columns of the grid (fewer if there are fewer images).
        cmap: colormap for single-channel images (maps, masks).
    """
    items = _batch(images)
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"got {len(items)} images but {len(titles)} titles")
    fig, axes = _grid(len(items), ncols, cell_size, cell_size)
    for i, (ax, item) in enumerate(zip(axes, items)):
        img = as_image(item)
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    return fig


def overlay_anomaly_map(
    image: ArrayLike,
    amap: ArrayLike,
    alpha: float = 0.5,
    *,
    blur_sigma: Optional[float] = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "jet",
) -> np.ndarray:
    """Blend a jet-coloured anomaly map over an image: (1 - alpha) image + alpha colour(M).

    Args:
        image: (3, H, W) or (H, W, 3) in [0, 1] (or uint8); grey (H, W) is repeated to RGB.
        amap: anomaly map M, (H, W) or (1, H, W), same H x W as the image.
        alpha: opacity of the colour map in [0, 1].
        blur_sigma: if given, Gaussian-blur M by this many pixels first (``DISPLAY_BLUR_SIGMA``
            = 4 is the released code's choice). Display only: metrics use the raw map.
        vmin, vmax: map values shown as the coldest / hottest colour. The default [0, 1] is the
            absolute scale of M, so maps of different images are comparable; pass the map's own
            min / max to stretch a faint map.

    Returns:
        RGB array (H, W, 3), float32 in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not vmax > vmin:
        raise ValueError(f"vmax must be greater than vmin, got vmin={vmin}, vmax={vmax}")
    img = as_image(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    m = as_map(amap)
    if m.shape != img.shape[:2]:
        raise ValueError(f"anomaly map is {m.shape} but the image is {img.shape[:2]} (H, W); resize one of them")
    if blur_sigma is not None and blur_sigma > 0:
        m = ndimage.gaussian_filter(m, sigma=float(blur_sigma))
    level = np.clip((m - vmin) / (vmax - vmin), 0.0, 1.0)
    heat = matplotlib.colormaps[cmap](level)[..., :3].astype(np.float32)
    return ((1.0 - alpha) * img + alpha * heat).astype(np.float32)


def plot_samples(
    images: ArrayLike,
    reconstructions: ArrayLike,
    maps: ArrayLike,
    masks: ArrayLike,
    titles: Optional[Sequence[str]] = None,
    *,
    blur_sigma: Optional[float] = None,
    cell_size: float = 2.0,
) -> Figure:
    """K test samples in columns; rows: input, reconstruction x0_g, map overlay, ground truth.

    Args:
        images, reconstructions: (K, 3, H, W) in [0, 1] (or lists of K images).
        maps: anomaly maps M (K, H, W) or (K, 1, H, W) in [0, 1].
        masks: ground truth (K, H, W) or (K, 1, H, W).
        titles: optional K column titles (e.g. "defect  s=0.73").
        blur_sigma: display-only blur of the overlays (see :func:`overlay_anomaly_map`).

    Returns:
        Figure with 4 x K axes (row-major).
    """
    cols = [_batch(images), _batch(reconstructions), _batch(maps), _batch(masks)]
    k = len(cols[0])
    if k == 0:
        raise ValueError("plot_samples got 0 samples")
    if any(len(c) != k for c in cols):
        raise ValueError(
            "images, reconstructions, maps and masks must hold the same number of samples; got "
            + ", ".join(str(len(c)) for c in cols)
        )
    if titles is not None and len(titles) != k:
        raise ValueError(f"got {k} samples but {len(titles)} titles")
    fig = Figure(figsize=(cell_size * k + 0.6, cell_size * 4), layout="constrained")
    axes = fig.subplots(4, k, squeeze=False)
    for j in range(k):
        img = as_image(cols[0][j])
        panels = [
            img,
            as_image(cols[1][j]),
            overlay_anomaly_map(img, cols[2][j], blur_sigma=blur_sigma),
            (as_map(cols[3][j], "mask") > 0).astype(np.float32),
        ]
        for r, panel in enumerate(panels):
            ax = axes[r, j]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(_SAMPLE_ROWS[r], fontsize=9)
        if titles is not None:
            axes[0, j].set_title(str(titles[j]), fontsize=8)
    return fig


# --------------------------------------------------------------------------- curves


def _resample(x: np.ndarray, y: np.ndarray, n: int = _PLOT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Thin a monotone-in-x curve to at most ``n`` points for drawing (keeps both ends)."""
    if x.size <= n:
        return x, y
    idx = np.unique(np.linspace(0, x.size - 1, n).round().astype(np.int64))
    return x[idx], y[idx]


def _undefined(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=9, transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


def _roc_panel(ax, scores: np.ndarray, truth: np.ndarray, what: str) -> None:
    from sklearn.metrics import auc, roc_curve

    ax.set_title(f"{what} ROC")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    if not has_both_classes(truth):
        _undefined(ax, f"{what} ROC undefined:\nonly one class in the ground truth")
        return
    fpr, tpr, _ = roc_curve(truth, scores)
    area = auc(fpr, tpr)
    fpr, tpr = _resample(fpr, tpr)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.plot(fpr, tpr, lw=1.5, label=f"AUROC = {100 * area:.1f} %")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")


def plot_roc(
    scores: ArrayLike,
    labels: ArrayLike,
    maps: Optional[ArrayLike] = None,
    masks: Optional[ArrayLike] = None,
) -> Figure:
    """Image-level ROC of ``scores`` (N,) vs ``labels`` (N,), and pixel-level ROC of ``maps`` vs ``masks``.

    Pixel ROC pools every pixel of every image, like the pixel AUROC of
    :mod:`diffad_core.metrics`. Without maps and masks only the image panel is drawn. A panel
    whose ground truth holds one class only says so instead of drawing a curve.

    Returns:
        Figure with 2 axes (image, pixel), or 1 without maps.
    """
    s = _numpy(scores).astype(np.float64).ravel()
    y = _numpy(labels).ravel() > 0
    if s.shape != y.shape:
        raise ValueError(f"got {s.size} scores but {y.size} labels")
    with_pixels = maps is not None and masks is not None
    fig = Figure(figsize=(8.0 if with_pixels else 4.2, 4.0), layout="constrained")
    axes = fig.subplots(1, 2 if with_pixels else 1, squeeze=False).ravel()
    _roc_panel(axes[0], s, y, "image")
    if with_pixels:
        m, g = _maps_stack(maps, "maps"), _maps_stack(masks, "masks")
        if m.shape != g.shape:
            raise ValueError(f"maps {m.shape} and masks {g.shape} must have the same shape")
        _roc_panel(axes[1], m.astype(np.float32).ravel(), g.ravel() > 0, "pixel")
    return fig


def plot_pro(maps: ArrayLike, masks: ArrayLike, *, fpr_limit: float = 0.3) -> Figure:
    """Per-region-overlap curve up to FPR = ``fpr_limit``, with AUPRO (its normalised area).

    Uses :func:`diffad_core.metrics.pro_curve` (exact, threshold-free), so the area shown equals
    :func:`diffad_core.metrics.aupro`. Masks without both normal and anomalous pixels give a
    panel that says the curve is undefined.

    Returns:
        Figure with 1 axes.
    """
    from .metrics import pro_curve, trapezoid_area

    m, g = _maps_stack(maps, "maps"), _maps_stack(masks, "masks")
    fig = Figure(figsize=(4.5, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.set_title("per-region overlap (PRO)")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("PRO")
    if m.shape == g.shape and not has_both_classes(g > 0):
        _undefined(ax, "PRO undefined:\nthe masks need both normal and anomalous pixels")
        return fig
    curve = pro_curve(m, g, fpr_limit=fpr_limit)
    area = trapezoid_area(curve.pro, curve.fpr) / fpr_limit
    fpr, pro = _resample(curve.fpr, curve.pro)
    ax.plot(fpr, pro, lw=1.5, label=f"AUPRO@{fpr_limit:g} = {100 * area:.1f} %")
    ax.fill_between(fpr, pro, alpha=0.15)
    ax.set_xlim(0, fpr_limit)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    return fig


def plot_score_histogram(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    bins: int = 30,
    threshold: Optional[float] = None,
) -> Figure:
    """Histograms of image scores for good (label 0) and defect (label 1) images (seaborn).

    Args:
        scores, labels: (N,) image scores and labels in {0, 1}.
        bins: number of bins shared by both classes.
        threshold: if given, drawn as a vertical line (e.g. the F1-max threshold).

    Returns:
        Figure with 1 axes.
    """
    import seaborn as sns

    s = _numpy(scores).astype(np.float64).ravel()
    y = _numpy(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"got {s.size} scores but {y.size} labels")
    fig = Figure(figsize=(5.0, 3.5), layout="constrained")
    ax = fig.subplots()
    sns.histplot(
        x=s, hue=np.where(y > 0, "defect", "good"), hue_order=["good", "defect"],
        bins=bins, stat="count", element="step", common_bins=True, ax=ax,
    )
    if threshold is not None:
        ax.axvline(float(threshold), color="k", ls="--", lw=1)
    ax.set_xlabel("image score (mean of top-k map values)")
    ax.set_title("image scores")
    return fig


def _ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    if smoothing <= 0:
        return values
    out = np.empty_like(values)
    acc = values[0]
    for i, v in enumerate(values):
        acc = smoothing * acc + (1.0 - smoothing) * v
        out[i] = acc
    return out


def plot_loss_curves(
    records: Sequence[Mapping[str, float]],
    *,
    keys: Sequence[str] = _LOSS_KEYS,
    smoothing: float = 0.0,
) -> Figure:
    """Training curves: one axes per loss term present in ``records``.

    Args:
        records: training log, one dict per logged step with ``step`` and some of ``keys``
            (total ``loss`` = noise + 5 focal + smooth_l1, docs/method.md §2).
        keys: which terms to draw, in this order; terms absent from every record are skipped.
        smoothing: exponential moving average factor in [0, 1) (0 draws the raw values; the raw
            values stay visible, faint, when smoothing).

    Returns:
        Figure with one axes per drawn term (2 columns).
    """
    if not records:
        raise ValueError("plot_loss_curves got no records; pass the training log (a list of dicts)")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    present = [k for k in keys if any(k in r for r in records)]
    if not present:
        raise ValueError(f"no record has any of the keys {list(keys)}; keys seen: {sorted(set().union(*records))}")
    fig, axes = _grid(len(present), 2, 4.0, 3.0)
    for ax, key in zip(axes, present):
        rows = [r for r in records if key in r and r[key] is not None]
        steps = np.array([r.get("step", i) for i, r in enumerate(rows)], dtype=np.float64)
        values = np.array([float(r[key]) for r in rows], dtype=np.float64)
        if smoothing > 0:
            ax.plot(steps, values, color="C0", alpha=0.25, lw=0.8)
        ax.plot(steps, _ema(values, smoothing), color="C0", lw=1.5)
        ax.set_title(key)
        ax.set_xlabel("step")
    return fig


# --------------------------------------------------------------------------- saving


def save_figure(fig: Figure, path: Union[str, os.PathLike], *, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file + ``os.replace``) and close it.

    The format follows the file extension (.png, .pdf, .svg, ...). Parent folders are created.
    Returns the path written.
    """
    from .files import atomic_path

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    finally:
        _close(fig)
    return path


def _close(fig: Figure) -> None:
    """Release a figure: drop it from pyplot's registry if pyplot made it, free its artists."""
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    fig.clear()


# --------------------------------------------------------------------------- course figures


def plot_schedules(
    schedules: Mapping[str, "object"],
    *,
    marks: Sequence[int] = (),
) -> Figure:
    """abar_t (left) and the noise level sqrt(1 - abar_t) (right) of named noise schedules vs t.

    Args:
        schedules: name -> :class:`diffad_core.NoiseSchedule` (e.g. {"linear": ..., "cosine": ...}).
        marks: timesteps drawn as dotted vertical lines (e.g. the paper's t_s = 200, t_b = 400).

    Returns:
        Figure with 2 axes.
    """
    if not schedules:
        raise ValueError("plot_schedules got no schedules; pass e.g. {'linear': NoiseSchedule()}")
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for name, sched in schedules.items():
        abar = _numpy(sched.alphas_cumprod).astype(np.float64)  # type: ignore[attr-defined]
        t = np.arange(abar.size)
        left.plot(t, abar, lw=1.5, label=name)
        right.plot(t, np.sqrt(1.0 - abar), lw=1.5, label=name)
    for ax, title in ((left, "abar_t (share of the signal's variance)"), (right, "sqrt(1 - abar_t) (noise scale)")):
        for m in marks:
            ax.axvline(int(m), color="0.5", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("t")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="center right")
    return fig
