"""The embedded mini benchmark: a small MVTec-layout dataset the package generates itself.

Tests, notebooks and the demo need a benchmark that needs no download. :func:`make_mini_benchmark`
writes one, in the MVTec AD layout so the ordinary :class:`~diffad_core.data.readers.MVTecDataset`
reads it, from material that ships with our dependencies: the texture photographs of
``skimage.data`` (``brick``, ``gravel``, ``grass``) and objects drawn procedurally.

======== ======= =============================== ===================================================
category kind    normal appearance               test defects (5 images each by default)
======== ======= =============================== ===================================================
brick    texture ``brick`` photo, terracotta     scratch, hole, stain, crack, particle
gravel   texture ``gravel`` photo, warm grey     scratch, hole, stain, crack, particle
nut      object  hex nut with bore on green felt scratch, dent, stain, missing, particle
pill     object  speckled capsule on dark slate  scratch, crack, stain, missing, particle
======== ======= =============================== ===================================================

Default counts per category: 60 training images (``train/good``), 15 normal test images and
25 defective ones (5 per defect kind); 128 x 128 RGB PNG. Normal images differ by a random crop,
flip (and quarter turn for gravel), brightness and a faint colour cast (textures), or by the
object's position, rotation, size, speckles and lighting (objects).

Defect kinds (all drawn here, none of them the Perlin-blob pasting used to synthesise training
anomalies; sizes and contrasts are drawn uniformly from subtle to obvious ranges, never tuned to
a model; :mod:`diffad_core.data.mini_draw` has the painters):

* scratch: a thin curved line (0.6-2.2 px wide), brighter or darker than the surface;
* hole / dent: a shaded circular pit lit from the top left; a hole has a dark core;
* stain: a smooth-edged colour shift (rust, oil, bleach, ink) of random strength;
* crack: a dark, branching, jagged thin polyline;
* missing (objects): a bite out of the object's outline, showing the background;
* particle: a small opaque blob or fibre of another material (textured with the ``grass`` photo).

Exact masks: each defect is composited as ``x = x_clean (1 - a) + target a`` with an alpha map
``a``; alphas below 0.2 are set to 0, and the mask is the set of pixels with ``a > 0``. After
quantising to 8 bits, any masked pixel that differs from the defect-free rendering by no more than
2 grey levels in every channel is pushed to differ by 3, so the saved mask is exactly
``max_c |x - x_clean| > 2`` (in 0-255 levels) - the pixels the defect changed.
:func:`render_mini_sample` returns the defect-free rendering with each sample, for checking.

Foreground truth of the object categories is saved as
``<category>/foreground/<split>/<defect>/<name>.png`` (255 = object, coverage >= 0.5; the
missing piece is excluded); the readers pick these files up (``foreground="auto"``).
Generation is deterministic: the same seed gives the same bytes (numpy ``Generator`` seeded from
``(seed, crc32(category))``, PNG written with fixed options), so categories do not depend on which
others are generated.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Literal, NamedTuple, Optional, Sequence

import numpy as np

from .mini_draw import PAINTERS, Scene, quantise, render_scene

__all__ = [
    "MINI_CATEGORIES",
    "MINI_DEFECTS",
    "MiniSample",
    "render_mini_sample",
    "make_mini_benchmark",
]

#: Category -> kind of the mini benchmark (registered as ``DATASET_CATEGORIES["mini"]``).
MINI_CATEGORIES: dict[str, Literal["texture", "object"]] = {
    "brick": "texture",
    "gravel": "texture",
    "nut": "object",
    "pill": "object",
}

#: Category -> defect kinds of its test set (folder names under ``test/``).
MINI_DEFECTS: dict[str, tuple[str, ...]] = {
    "brick": ("scratch", "hole", "stain", "crack", "particle"),
    "gravel": ("scratch", "hole", "stain", "crack", "particle"),
    "nut": ("scratch", "dent", "stain", "missing", "particle"),
    "pill": ("scratch", "crack", "stain", "missing", "particle"),
}

ALPHA_MIN = 0.2  # alpha below this is not part of a defect (set to 0)
TOLERANCE = 2  # grey levels: a masked pixel differs from the clean rendering by more than this
_MIN_DEFECT_PIXELS = 10  # a defect smaller than this (after clipping to the object) is re-drawn
_MIN_ON_OBJECT = 0.7  # fraction of a defect's alpha that must fall on the object, else re-drawn


class MiniSample(NamedTuple):
    """One rendered sample: ``image`` and ``clean`` uint8 (H, W, 3), ``mask`` and ``foreground``
    bool (H, W), ``defect`` name ("good" for normal samples, then ``image == clean``)."""

    image: np.ndarray
    clean: np.ndarray
    mask: np.ndarray
    foreground: np.ndarray
    defect: str


def _apply(scene: Scene, alpha: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Composite and quantise; returns (image uint8 (H, W, 3), mask bool (H, W)) with the mask
    exactly the pixels that differ from the clean rendering by more than TOLERANCE levels."""
    alpha = np.where(alpha >= ALPHA_MIN, alpha, 0.0)
    mask = alpha > 0
    clean = quantise(scene.clean).astype(np.int16)
    composite = scene.clean * (1 - alpha[..., None]) + target * alpha[..., None]
    image = quantise(composite).astype(np.int16)
    image[~mask] = clean[~mask]
    weak = mask & (np.abs(image - clean).max(axis=-1) <= TOLERANCE)
    if weak.any():
        direction = np.sign((target - scene.clean).mean(axis=-1))
        direction[direction == 0] = 1
        step = direction[..., None] * (TOLERANCE + 1)
        pushed = np.clip(clean + step, 0, 255)
        # Where clipping kept every channel within the tolerance, push the other way instead.
        stuck = (np.abs(pushed - clean).max(axis=-1, keepdims=True) <= TOLERANCE)
        pushed = np.where(stuck, np.clip(clean - step, 0, 255), pushed)
        image[weak] = pushed[weak]
    return image.astype(np.uint8), mask


def render_mini_sample(
    category: str, defect: str = "good", *, rng: np.random.Generator, image_size: int = 128
) -> MiniSample:
    """Render one sample of a mini-benchmark category, with or without a defect.

    Args:
        category: a key of :data:`MINI_CATEGORIES`.
        defect: "good" or one of ``MINI_DEFECTS[category]``.
        rng: the random generator (consumed).
        image_size: side of the square image in pixels.

    Returns:
        :class:`MiniSample`; ``mask`` is exactly the pixels where ``image`` and ``clean`` differ
        by more than 2 levels in some channel, and is non-empty for defects.
    """
    if category not in MINI_CATEGORIES:
        valid = ", ".join(MINI_CATEGORIES)
        raise ValueError(f"Unknown mini category {category!r}; valid: {valid}.")
    if defect != "good" and defect not in MINI_DEFECTS[category]:
        valid = ", ".join(("good",) + MINI_DEFECTS[category])
        raise ValueError(f"Unknown defect {defect!r} for {category!r}; valid: {valid}.")
    scene = render_scene(category, rng, image_size)
    clean = quantise(scene.clean)
    foreground = scene.coverage >= 0.5
    if defect == "good":
        return MiniSample(clean, clean, np.zeros_like(foreground), foreground, "good")
    for _ in range(100):
        alpha, target = PAINTERS[defect](scene, rng)
        if defect != "missing":
            drawn = alpha.sum()
            alpha = alpha * scene.coverage  # defects stay on the object
            if alpha.sum() < _MIN_ON_OBJECT * drawn:
                continue  # mostly off the object: draw again
        image, mask = _apply(scene, alpha, target)
        if mask.sum() >= _MIN_DEFECT_PIXELS:
            if defect == "missing":  # the bitten-off part is background now
                kept = 1 - np.where(alpha >= ALPHA_MIN, alpha, 0.0)
                foreground = scene.coverage * kept >= 0.5
            return MiniSample(image, clean, mask, foreground, defect)
    raise RuntimeError(f"could not place a {defect!r} defect on {category!r}")  # pragma: no cover


# ----------------------------------------------------------------------------- writing


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def _readme(categories: Sequence[str], counts: dict[str, int], image_size: int, seed: int) -> str:
    lines = [
        "# diffad mini benchmark",
        "",
        "Generated by `diffad_core.data.make_mini_benchmark` "
        f"(seed {seed}, {image_size} x {image_size} RGB PNG, MVTec AD layout).",
        "Textures come from the photographs bundled with scikit-image (`skimage.data`); objects",
        "are drawn procedurally. Test defects are drawn by hand-written painters, not by the",
        "Perlin-blob synthesis used for training; their sizes and contrasts vary from subtle to",
        "obvious. Each mask is exactly the set of pixels that differ from the defect-free",
        "rendering by more than 2 grey levels (in some channel).",
        "",
        "| category | kind | train/good | test/good | test defects (images each) |",
        "|---|---|---|---|---|",
    ]
    for cat in categories:
        kinds = ", ".join(MINI_DEFECTS[cat])
        lines.append(
            f"| {cat} | {MINI_CATEGORIES[cat]} | {counts['train']} | {counts['test_good']} | "
            f"{kinds} ({counts['per_defect']}) |"
        )
    lines += [
        "",
        "Defect kinds: scratch (thin curved line, brighter or darker), hole / dent (shaded",
        "circular pit; a hole has a dark core), stain (smooth-edged colour shift), crack (dark",
        "branching jagged line), missing (a bite out of an object's outline), particle (small",
        "opaque blob or fibre of another material).",
        "",
        "Layout: `<category>/train/good/NNN.png`, `<category>/test/<good|defect>/NNN.png`,",
        "`<category>/ground_truth/<defect>/NNN_mask.png` (0 / 255). Object categories also have",
        "their true foreground in `<category>/foreground/<split>/<defect>/NNN.png` (255 = object).",
        "",
    ]
    return "\n".join(lines)


def make_mini_benchmark(
    root: str | os.PathLike,
    seed: int = 0,
    *,
    categories: Optional[Sequence[str]] = None,
    image_size: int = 128,
    num_train: int = 60,
    num_test_good: int = 15,
    num_per_defect: int = 5,
) -> Path:
    """Write the mini benchmark under ``root`` (MVTec layout, see the module docstring).

    Args:
        root: output folder (created; existing files of the same names are overwritten).
        seed: generation seed; the same seed gives byte-identical files.
        categories: subset of :data:`MINI_CATEGORIES` (default: all, in that order).
        image_size: side of the square images.
        num_train, num_test_good, num_per_defect: image counts per category (lower them for
            quick tests; raise the test counts for a validation set that can rank close models).

    Returns:
        ``Path(root)``, ready for ``MVTecDataset(root, category, split)``.
    """
    names = list(MINI_CATEGORIES) if categories is None else list(categories)
    unknown = [c for c in names if c not in MINI_CATEGORIES]
    if unknown:
        raise ValueError(f"Unknown mini categories {unknown}; valid: {', '.join(MINI_CATEGORIES)}.")
    if min(num_train, num_test_good, num_per_defect) < 1 or image_size < 32:
        raise ValueError(
            f"make_mini_benchmark needs image counts >= 1 and image_size >= 32; got num_train={num_train}, "
            f"num_test_good={num_test_good}, num_per_defect={num_per_defect}, image_size={image_size}."
        )
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for category in names:
        rng = np.random.default_rng([seed, zlib.crc32(category.encode("utf-8"))])
        cat_dir = root / category
        plan = [("train", "good", i) for i in range(num_train)]
        plan += [("test", "good", i) for i in range(num_test_good)]
        plan += [("test", d, i) for d in MINI_DEFECTS[category] for i in range(num_per_defect)]
        for split, defect, index in plan:
            sample = render_mini_sample(category, defect, rng=rng, image_size=image_size)
            name = f"{index:03d}"
            _save_png(sample.image, cat_dir / split / defect / f"{name}.png")
            if defect != "good":
                mask = sample.mask.astype(np.uint8) * 255
                _save_png(mask, cat_dir / "ground_truth" / defect / f"{name}_mask.png")
            if MINI_CATEGORIES[category] == "object":
                fg = sample.foreground.astype(np.uint8) * 255
                _save_png(fg, cat_dir / "foreground" / split / defect / f"{name}.png")
    counts = {"train": num_train, "test_good": num_test_good, "per_defect": num_per_defect}
    (root / "README.md").write_text(_readme(names, counts, image_size, seed), encoding="utf-8")
    return root
