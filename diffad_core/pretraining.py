"""Pretrained starting points: a broad offline corpus of normal-looking images and :func:`pretrain`.

Why: the released recipe trains each category from scratch for ~60,000 steps of the paper model
(about 16 A100-hours). A CPU affords a few hundred steps of the ``tiny`` preset, so we spend the
compute once, on a corpus that is not tied to one category, and ship the result. Denoising
(eps_theta) and "where do the input and its reconstruction differ" (the SegNet) are largely
category-agnostic, so :func:`diffad_core.fit` can start from these weights (``init="pretrained"``)
and adapt to a user's category in minutes.

The corpus (:func:`build_corpus`) is made only from images that ship with our dependencies:

* photographs and scientific images of ``skimage.data`` (astronaut, cat, coffee, coins, moon,
  retina, rocket, Hubble deep field, ...), **without** ``brick``, ``gravel`` and ``grass``: the mini
  benchmark's texture categories are cut from those three photos, so its *test* images would leak;
* scikit-learn's sample photographs (``china.jpg``, ``flower.jpg``) and matplotlib's
  ``grace_hopper.jpg``;
* our procedural textures (:func:`diffad_core.textures.procedural_textures`);
* the mini benchmark's **training** images (``train/good`` of every category; never test images).

Each corpus image is a random view of a source: a square crop covering 20-100 % of the short side
(75-100 % for mini images, which are already at benchmark framing), resized with antialiasing,
a random flip and quarter turn, then colour jitter (brightness, contrast, saturation, hue; photos
and textures only). Training on the corpus is ordinary :func:`diffad_core.fit` with ``kind="object"``
synthesis (texture and self-augmented anomaly sources), so the SegNet is pretrained too.
"""

from __future__ import annotations

import dataclasses

import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CORPUS_PHOTOS", "CORPUS_EXCLUDED", "CorpusSource", "corpus_sources", "build_corpus", "pretrain"]

#: ``skimage.data`` images used as corpus photographs (all ship inside scikit-image).
CORPUS_PHOTOS: tuple[str, ...] = (
    "astronaut", "camera", "cat", "coffee", "coins", "colorwheel", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "clock", "checkerboard",
)
#: ``skimage.data`` photos deliberately left out: the mini benchmark's textures are cut from them.
CORPUS_EXCLUDED: tuple[str, ...] = ("brick", "gravel", "grass")
#: Share of corpus images drawn from each group (mini training images, photographs, procedural).
_GROUP_SHARES = {"mini": 0.4, "photo": 0.45, "procedural": 0.15}
_CROP_SCALE = {"mini": (0.75, 1.0), "photo": (0.2, 1.0)}


class CorpusSource(NamedTuple):
    """One corpus source: ``name``, ``group`` ("mini" or "photo") and the image (H, W, 3) uint8."""

    name: str
    group: str
    image: np.ndarray


def _rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3]).astype(np.uint8)


def _photos() -> list[CorpusSource]:
    import matplotlib
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    out = [CorpusSource(f"skimage/{name}", "photo", _rgb(getattr(data, name)())) for name in CORPUS_PHOTOS]
    samples = load_sample_images()
    for name, image in zip(samples.filenames, samples.images):
        out.append(CorpusSource(f"sklearn/{Path(name).name}", "photo", _rgb(image)))
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(hopper) as img:
        out.append(CorpusSource("matplotlib/grace_hopper.jpg", "photo", _rgb(np.asarray(img.convert("RGB")))))
    return out


def _mini_train_images(seed: int = 0) -> list[CorpusSource]:
    """The mini benchmark's ``train/good`` images (generated in a temporary folder, then removed)."""
    from PIL import Image

    from .data import MINI_CATEGORIES, make_mini_benchmark

    out = []
    with tempfile.TemporaryDirectory(prefix="diffad-corpus-") as tmp:
        root = make_mini_benchmark(Path(tmp) / "mini", seed=seed)
        for category in MINI_CATEGORIES:
            for file in sorted((Path(root) / category / "train" / "good").glob("*.png")):
                with Image.open(file) as img:
                    out.append(CorpusSource(f"mini/{category}/{file.name}", "mini", _rgb(np.asarray(img.convert("RGB")))))
    return out


def corpus_sources(*, include_mini: bool = True, mini_seed: int = 0) -> list[CorpusSource]:
    """Every source image of the pretraining corpus (photographs, then mini training images)."""
    return _photos() + (_mini_train_images(mini_seed) if include_mini else [])


def _view(image: np.ndarray, size: int, scale: tuple[float, float], rng: np.random.Generator) -> Tensor:
    """A random square crop (side = scale x short side) resized to ``size``: (3, size, size) float in [0, 1]."""
    height, width = image.shape[:2]
    side = max(8, int(round(min(height, width) * rng.uniform(*scale))))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = torch.from_numpy(image[top:top + side, left:left + side]).permute(2, 0, 1).float().div_(255.0)
    if side != size:
        crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)[0]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    return torch.rot90(crop, int(rng.integers(0, 4)), dims=(-2, -1))


def _jitter(x: Tensor, rng: np.random.Generator) -> Tensor:
    """Per-image colour jitter with kornia: brightness x[0.75, 1.25], contrast [0.75, 1.25],
    saturation [0.6, 1.4], hue shift [-0.05, 0.05] turns. x: (N, 3, H, W) in [0, 1]."""
    import kornia.enhance as ke

    n = x.shape[0]

    def draw(low: float, high: float) -> Tensor:
        return torch.from_numpy(rng.uniform(low, high, n)).float()

    x = ke.adjust_brightness(x, draw(-0.25, 0.25), clip_output=True)
    x = ke.adjust_contrast(x, draw(0.75, 1.25), clip_output=True)
    x = ke.adjust_saturation(x, draw(0.6, 1.4))
    x = ke.adjust_hue(x, draw(-0.05, 0.05) * 2 * np.pi)
    return x.clamp_(0.0, 1.0)


def build_corpus(
    image_size: int,
    num_images: int,
    *,
    seed: int = 0,
    sources: Optional[list[CorpusSource]] = None,
    include_mini: bool = True,
) -> Tensor:
    """The pretraining corpus: ``num_images`` random views, (N, 3, S, S) uint8, S = ``image_size``.

    Deterministic in ``seed`` (so a resumed :func:`pretrain` sees the same corpus). Shares: 40 %
    mini training images, 45 % photographs, 15 % procedural textures (photographs take the mini
    share when ``include_mini`` is False).
    """
    from .textures import procedural_textures

    if image_size < 8 or num_images < 1:
        raise ValueError(f"build_corpus needs image_size >= 8 and num_images >= 1, got {image_size}, {num_images}")
    sources = sources if sources is not None else corpus_sources(include_mini=include_mini)
    groups = {g: [s for s in sources if s.group == g] for g in ("mini", "photo")}
    if not groups["photo"] and not groups["mini"]:
        raise ValueError("build_corpus got no source images")
    shares = dict(_GROUP_SHARES)
    if not groups["mini"]:
        shares["photo"] += shares.pop("mini")
    elif not groups["photo"]:
        shares["mini"] += shares.pop("photo")
    rng = np.random.default_rng(seed)
    n_proc = int(round(num_images * shares["procedural"]))
    n_mini = int(round(num_images * shares.get("mini", 0.0))) if groups["mini"] else 0
    n_photo = num_images - n_proc - n_mini
    out = torch.empty(num_images, 3, image_size, image_size, dtype=torch.uint8)
    pos = 0
    for group, count in (("mini", n_mini), ("photo", n_photo)):
        pool = groups[group]
        views = torch.stack([_view(pool[int(rng.integers(len(pool)))].image, image_size, _CROP_SCALE[group], rng)
                             for _ in range(count)]) if count else torch.empty(0, 3, image_size, image_size)
        if group == "photo" and count:
            views = _jitter(views, rng)
        out[pos:pos + count] = (views * 255).round().to(torch.uint8)
        pos += count
    if n_proc:
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        out[pos:] = (procedural_textures(n_proc, image_size, generator=gen) * 255).round().to(torch.uint8)
    perm = torch.from_numpy(rng.permutation(num_images))
    return out[perm]


def pretrain(
    config: Any,
    *,
    num_images: int = 6000,
    corpus_seed: int = 0,
    out_dir: Optional[Union[str, os.PathLike]] = None,
    resume: bool = False,
    progress: bool = True,
) -> Any:
    """Train both networks on :func:`build_corpus` (``config.image_size``) and return the :class:`FitResult`.

    ``config`` is a :class:`diffad_core.train.TrainConfig` with a budget; anomalies are synthesised
    with ``kind="object"`` (texture and self-augmented sources) everywhere in the image. The run
    folder is an ordinary training run (checkpoint.pt, log.jsonl, model.safetensors), so
    ``resume=True`` continues it exactly. ``config.init`` is usually "scratch"; "pretrained" (or a
    file) continues an existing start, e.g. the 64 px one at 128 px.
    """
    from .train import fit

    corpus = build_corpus(config.image_size, num_images, seed=corpus_seed)
    config = dataclasses.replace(config, val_fraction=0.0)  # a category-agnostic start has no thresholds
    return fit(config, corpus, kind="object", out_dir=out_dir, resume=resume, progress=progress)
