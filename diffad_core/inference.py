"""Batched one-step inference over a split or a stack of images, shared by evaluation, the
benchmarks, the notebooks and prediction on new images.

    pred = predict_split(model, open_dataset(root, "bottle", "test"), EvalConfig(batch_size=32))
    pred.maps, pred.scores              # (N, H, W) anomaly maps, (N,) image scores, NumPy

One loop (:func:`run_batches`) does the work for everyone: it moves the model to the device,
picks autocast and compiled networks by the rule of :mod:`diffad_core.runtime`, draws the noises
eps_s, eps_b from one ``torch.Generator`` seeded with ``EvalConfig.seed`` on that device and
consumed batch after batch, and hands each batch's :class:`~diffad_core.model.Prediction` to a
callback. On a CPU the same model, images, seed and ``batch_size`` give the same maps bit for bit;
a different ``batch_size`` hands each image other noise draws, and another device or ``amp`` other
arithmetic (the results then differ by the randomness of the one-step estimate, not systematically).

Speed: the seconds returned are the time of the loop alone (host-to-device copies included). On
CUDA one untimed warm-up batch runs first and the clock is read after ``torch.cuda.synchronize()``;
inside the loop nothing waits for the device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .config import EvalConfig
from .runtime import compile_networks, memory_format, resolve_device, use_bf16

__all__ = [
    "EvalConfig",
    "Predictions",
    "predict_split",
    "predict_images",
    "run_batches",
    "reconstruction_psnr",
    "figure_indices",
    "as_split",
    "to_unit_float",
]



# --------------------------------------------------------------------------- configuration


class _Predictor(Protocol):
    """What :func:`predict_split` needs from a model (``DiffusionAD`` is one)."""

    def predict(self, images: Tensor, **kwargs: Any) -> Any: ...
    def eval(self) -> Any: ...
    def to(self, *args: Any, **kwargs: Any) -> Any: ...


# --------------------------------------------------------------------------- results


@dataclass
class Predictions:
    """Everything inference produced on one split (N images of H x W), on the host.

    Fields:
        scores: (N,) float32 image scores (mean of the top-k values of M).
        labels: (N,) int64, 0 good / 1 defect.
        maps: (N, H, W) anomaly maps M in [0, 1], float32 (or float16, ``EvalConfig.map_dtype``).
        masks: (N, H, W) uint8 ground truth in {0, 1}.
        paths, defects: N image paths and defect names ("good" for normal images).
        seconds: time of the inference loop; images_per_second: N / seconds.
        figure_indices: (K,) indices of the samples kept for pictures (:func:`figure_indices`).
        figure_images: (K, 3, H, W) float32 inputs of those samples, or None when K = 0.
        reconstructions: (K, 3, H, W) float32 x0_g of those samples in [0, 1], or None.
        mask_known: (N,) bool, False for defect images without a ground-truth mask; None = all known.
    """

    scores: np.ndarray
    labels: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    paths: list[str]
    defects: list[str]
    seconds: float
    images_per_second: float
    figure_indices: np.ndarray
    figure_images: Optional[np.ndarray] = None
    reconstructions: Optional[np.ndarray] = None
    mask_known: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])


# --------------------------------------------------------------------------- inference


def figure_indices(labels: Union[np.ndarray, Tensor, Sequence[int]], k: int) -> np.ndarray:
    """Up to ``k`` sample indices for pictures, with both good and defect images when present.

    Half of ``k`` (rounded down) goes to good images and the rest to defect images (a class with
    too few images leaves its share to the other); within a class the picks are evenly spaced
    over its images in split order, so several defect types show up. Deterministic; returned
    sorted. Example: labels [0, 0, 0, 1, 1, 1], k = 4 -> [0, 2, 3, 5].
    """
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).ravel()
    good, bad = np.flatnonzero(y == 0), np.flatnonzero(y != 0)
    k = max(0, min(int(k), y.size))
    k_good = min(good.size, k // 2)
    k_bad = min(bad.size, k - k_good)
    k_good = min(good.size, k - k_bad)

    def spread(idx: np.ndarray, m: int) -> np.ndarray:
        if m == 0:
            return idx[:0]
        return idx[np.linspace(0, idx.size - 1, m).round().astype(np.int64)]

    return np.sort(np.concatenate([spread(good, k_good), spread(bad, k_bad)])).astype(np.int64)


@dataclass
class _Split:
    images: Tensor  # (N, 3, H, W) uint8 or float in [0, 1]
    masks: Tensor  # (N, H, W) uint8
    labels: Tensor  # (N,) long
    paths: list[str]
    defects: list[str]
    mask_known: Optional[Tensor] = None  # (N,) bool; None: every mask is known


def as_split(data: Any) -> _Split:
    """A split as tensors, from a ``SplitTensors`` (or any object with its fields) or a Dataset of
    sample dicts (loaded with :func:`diffad_core.data.load_tensors`)."""
    if not all(hasattr(data, a) for a in ("images", "masks", "labels")):
        if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
            raise TypeError(
                f"data must be a SplitTensors (diffad_core.data.load_tensors) or a Dataset of sample "
                f"dicts (diffad_core.data.open_dataset(root, category, 'test')), got {type(data).__name__}"
            )
        from .data import load_tensors

        data = load_tensors(data)
    images = torch.as_tensor(data.images)
    masks = torch.as_tensor(data.masks)
    labels = torch.as_tensor(data.labels).long().view(-1)
    n = labels.shape[0]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3 or masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"masks must be (N, 1, H, W) or (N, H, W) matching images {tuple(images.shape)}, "
            f"got {tuple(masks.shape)}"
        )
    if images.shape[0] != n or n == 0:
        raise ValueError(f"got {images.shape[0]} images but {n} labels; the split must hold >= 1 image")
    paths = [str(p) for p in getattr(data, "paths", None) or [f"#{i}" for i in range(n)]]
    defects = [str(d) for d in getattr(data, "defects", None) or ["good" if y == 0 else "defect" for y in labels.tolist()]]
    if len(paths) != n or len(defects) != n:
        raise ValueError(f"got {n} images but {len(paths)} paths and {len(defects)} defect names")
    known = getattr(data, "mask_known", None)
    known = torch.as_tensor(known, dtype=torch.bool).view(-1) if known is not None else None
    if known is not None and known.numel() != n:
        raise ValueError(f"got {n} images but {known.numel()} mask_known flags")
    return _Split(images, (masks > 0).to(torch.uint8), labels, paths, defects, known)


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 images -> float32 in [0, 1]; float images -> float32 unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def run_batches(
    model: _Predictor,
    images: Tensor,
    config: EvalConfig,
    on_batch: Callable[[int, Any], None],
) -> float:
    """Predict ``images`` (N, 3, H, W), uint8 or float in [0, 1], ``config.batch_size`` at a time.

    ``on_batch(start, prediction)`` receives each batch's prediction (still on the device) with the
    index of its first image. Returns the seconds of the loop (see the module docstring).
    """
    device = resolve_device(config.device)
    model.eval()
    model.to(device)
    fmt = memory_format(config.channels_last)
    if config.channels_last:
        model.to(memory_format=fmt)
    kwargs: dict[str, Any] = dict(t_s=config.t_s, t_b=config.t_b, w=config.w, top_k=config.top_k)
    if use_bf16(config.amp, device):
        kwargs["bf16_unet"] = True
    if config.compile:
        kwargs["nets"] = compile_networks(model)
    source = images.pin_memory() if device.type == "cuda" else images
    n, bs = images.shape[0], config.batch_size

    def batch(start: int) -> Tensor:
        x = to_unit_float(source[start : start + bs].to(device, non_blocking=True))
        return x.contiguous(memory_format=fmt)

    with torch.inference_mode():
        if device.type == "cuda":  # untimed warm-up (kernel selection, allocator), its own noise
            warm = torch.Generator(device=device).manual_seed(config.seed + 1)
            model.predict(batch(0), generator=warm, **kwargs)
            torch.cuda.synchronize(device)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        start_time = time.perf_counter()
        for start in range(0, n, bs):
            on_batch(start, model.predict(batch(start), generator=generator, **kwargs))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return time.perf_counter() - start_time


def _check_size(model: Any, h: int, w: int, what: str) -> None:
    size = getattr(model, "image_size", None)
    if size is not None and (h, w) != (int(size), int(size)):
        raise ValueError(
            f"{what} are {h} x {w} but the model was built for {size} x {size}; "
            f"open the dataset with image_size={size}"
        )


def predict_split(model: _Predictor, data: Any, config: Optional[EvalConfig] = None) -> Predictions:
    """Anomaly maps and image scores for every image of a split, in batches.

    Args:
        model: a :class:`~diffad_core.model.DiffusionAD` (or any object with the same
            ``predict(images, *, t_s, t_b, w, top_k, generator)``, ``eval`` and ``to``). It is put
            in eval mode and moved to ``config.device``.
        data: a ``SplitTensors`` (images (N, 3, H, W) uint8 or float in [0, 1], masks (N, 1, H, W),
            labels (N,), paths, defects), or a Dataset of sample dicts (loaded with
            ``diffad_core.data.load_tensors`` first, which quantises images to uint8).
        config: inference settings (:class:`EvalConfig`).

    Returns:
        :class:`Predictions` (NumPy arrays on the host).
    """
    config = config or EvalConfig()
    split = as_split(data)
    n, (h, w) = split.images.shape[0], split.images.shape[-2:]
    _check_size(model, h, w, "the test images")
    map_dtype = torch.float16 if config.map_dtype == "float16" else torch.float32
    picks = figure_indices(split.labels, config.num_figures)
    pick_set = set(picks.tolist())
    maps: list[Tensor] = []
    scores: list[Tensor] = []
    recs: list[Tensor] = []

    def keep(start: int, out: Any) -> None:
        maps.append(out.anomaly_map[:, 0].to(map_dtype))
        scores.append(out.score.float())
        for i in range(start, start + out.score.shape[0]):
            if i in pick_set:
                recs.append(out.reconstruction[i - start : i - start + 1].float())

    seconds = run_batches(model, split.images, config, keep)
    maps_np = torch.cat(maps).cpu().numpy()
    if maps_np.shape != (n, h, w):
        raise ValueError(f"the model returned anomaly maps of shape {maps_np.shape[1:]}, expected ({h}, {w})")
    figure_images = reconstructions = None
    if picks.size:
        reconstructions = torch.cat(recs).cpu().numpy()
        figure_images = to_unit_float(split.images[torch.from_numpy(picks)]).numpy()
    return Predictions(
        scores=torch.cat(scores).cpu().numpy().astype(np.float32),
        labels=split.labels.numpy().astype(np.int64),
        maps=maps_np,
        masks=split.masks.numpy(),
        paths=split.paths,
        defects=split.defects,
        seconds=float(seconds),
        images_per_second=float(n / seconds) if seconds > 0 else float("inf"),
        figure_indices=picks,
        figure_images=figure_images,
        reconstructions=reconstructions,
        mask_known=split.mask_known.numpy() if split.mask_known is not None else None,
    )


@dataclass
class ImagePredictions:
    """What :func:`predict_images` returns, on the host: maps (N, H, W) float32, scores (N,),
    reconstructions x0_g (N, 3, H, W) in [0, 1] (or None), and the loop's seconds."""

    maps: np.ndarray
    scores: np.ndarray
    reconstructions: Optional[np.ndarray]
    seconds: float


def predict_images(
    model: _Predictor, images: Tensor, config: Optional[EvalConfig] = None, *, reconstructions: bool = False
) -> ImagePredictions:
    """Anomaly maps and scores of a stack of images (N, 3, H, W), uint8 or float in [0, 1], at the
    model's size; ``reconstructions=True`` also keeps every x0_g (memory: N x 3 x H x W floats)."""
    config = config or EvalConfig()
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, 3, H, W) with N >= 1, got {tuple(images.shape)}")
    _check_size(model, int(images.shape[-2]), int(images.shape[-1]), "the images")
    maps: list[Tensor] = []
    scores: list[Tensor] = []
    recs: list[Tensor] = []

    def keep(start: int, out: Any) -> None:
        maps.append(out.anomaly_map[:, 0].float())
        scores.append(out.score.float())
        if reconstructions:
            recs.append(out.reconstruction.float())

    seconds = run_batches(model, images, config, keep)
    return ImagePredictions(
        maps=torch.cat(maps).cpu().numpy(),
        scores=torch.cat(scores).cpu().numpy().astype(np.float32),
        reconstructions=torch.cat(recs).cpu().numpy() if reconstructions else None,
        seconds=float(seconds),
    )


def reconstruction_psnr(model: Any, data: Any, config: Optional[EvalConfig] = None) -> float:
    """Mean PSNR (dB) of the norm-guided reconstruction x0_g against the input, over the *normal*
    images of a split (how well eps_theta reproduces what it should leave unchanged).

    Same inference settings, noise seed and loop as :func:`predict_split`, on the normal images only.
    """
    from .metrics import psnr

    config = config or EvalConfig()
    split = as_split(data)
    normal = (split.labels == 0).nonzero().squeeze(1)
    if normal.numel() == 0:
        raise ValueError("reconstruction_psnr needs at least one normal image in the split")
    images = split.images[normal]
    values: list[np.ndarray] = []

    def keep(start: int, out: Any) -> None:
        x = to_unit_float(images[start : start + out.score.shape[0]])
        values.append(psnr(out.reconstruction.float().cpu().numpy(), x.numpy()))

    run_batches(model, images, config, keep)
    return float(np.mean(np.concatenate(values)))
