"""Torch datasets over the supported layouts, layout detection, and whole-split caching.

Every reader yields the same sample dict (docs/method.md §5)::

    image       float32 (3, H, W) in [0, 1]        RGB, resized bilinear with antialiasing
    mask        float32 (1, H, W) in {0, 1}        ground truth (zeros for normal images)
    label       int, 0 normal / 1 anomalous
    defect      str, the defect folder name ("good" for normal images)
    path        str, the image file
    foreground  float32 (1, H, W) in {0, 1}        where synthetic anomalies may go (see below)

Problems with the folder (missing root, category, images or masks, unreadable files, masks
whose shape does not match their image) raise one
:class:`~diffad_core.data.errors.DatasetError` at construction or load time, naming the path.
Defect images whose mask is empty (or becomes empty when resized) are kept, with label 1, and
reported in one :class:`~diffad_core.data.errors.EmptyMaskWarning`.

Foreground (``foreground=``): "auto" uses a foreground file when the category folder has one
(:mod:`diffad_core.data.layouts` lists the places), else the whole image for textures and
:func:`~diffad_core.data.foreground.estimate_foreground` for objects; "estimate" always runs the
heuristic; "whole" always gives ones. Foreground files are binarised at 0.5.

Example (the mini benchmark stands in for MVTec AD)::

    root = make_mini_benchmark("data/mini")
    train = MVTecDataset(root, "brick", "train", image_size=128)
    cache = load_tensors(train)            # cache.images: uint8 (60, 3, 128, 128)
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from .categories import CategoryKind, category_kind
from .errors import DatasetError, EmptyMaskWarning
from .foreground import FOREGROUND_MODES, ForegroundMode, estimate_foreground
from .imageio import (
    ImageSize,
    normalize_size,
    read_image,
    read_image_size,
    read_mask,
    resize_image,
    resize_mask,
)
from .layouts import Record, Split, detect_layout, parse_dagm, parse_mvtec, parse_visa

__all__ = [
    "AnomalyDataset",
    "MVTecDataset",
    "VisADataset",
    "DAGMDataset",
    "DatasetName",
    "open_dataset",
    "SplitTensors",
    "load_tensors",
]

DatasetName = Literal["auto", "mvtec", "mpdd", "mini", "visa", "dagm"]
_DATASET_NAMES: tuple[str, ...] = ("auto", "mvtec", "mpdd", "mini", "visa", "dagm")

_ASPECT_TOLERANCE = 0.01  # relative aspect-ratio difference accepted between a mask and its image
_WARN_LIST = 10  # how many file names an empty-mask warning spells out


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two (H, W) sizes have the same aspect ratio within 1 %."""
    ratio_a, ratio_b = a[0] / a[1], b[0] / b[1]
    return abs(ratio_a - ratio_b) <= _ASPECT_TOLERANCE * max(ratio_a, ratio_b)


class AnomalyDataset(Dataset):
    """Base reader: loads the :class:`~diffad_core.data.layouts.Record` list of one split.

    Subclasses only choose the parse function (``parse``) and the category table used for
    ``kind`` (``dataset_name``). Attributes: ``records``, ``category``, ``split``, ``kind``,
    ``image_size`` ((H, W) or None), ``foreground_mode``.
    """

    parse: Callable[[Path, str, str], list[Record]] = staticmethod(parse_mvtec)
    dataset_name: Optional[str] = None

    def __init__(
        self,
        root: str | os.PathLike,
        category: str,
        split: Split = "train",
        image_size: ImageSize = 256,
        *,
        kind: Optional[CategoryKind] = None,
        foreground: ForegroundMode = "auto",
    ) -> None:
        if foreground not in FOREGROUND_MODES:
            raise ValueError(
                f"foreground={foreground!r} is not valid; use one of {', '.join(FOREGROUND_MODES)}."
            )
        if kind not in (None, "texture", "object"):
            raise ValueError(f"kind={kind!r} is not valid; use 'texture', 'object' or None.")
        self.root = Path(root)
        self.category = category
        self.split = split
        self.image_size = normalize_size(image_size)
        self.kind: CategoryKind = kind or category_kind(category, self.dataset_name)
        self.foreground_mode = foreground
        self.records: list[Record] = type(self).parse(self.root, category, split)
        self._check_masks()

    # -------------------------------------------------------------- validation

    def _check_masks(self) -> None:
        """Decode every mask once: shape against its image, and emptiness (one warning)."""
        empty: list[str] = []
        defects = [r for r in self.records if r.mask is not None]
        for rec in defects:
            mask = read_mask(rec.mask)
            image_hw = read_image_size(rec.image)
            if mask.shape != image_hw and not _same_aspect(mask.shape, image_hw):
                raise DatasetError(
                    f"Mask {rec.mask} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image "
                    f"{rec.image} is {image_hw[0]}x{image_hw[1]}, with a different aspect ratio. "
                    "Replace the mask with the one that belongs to this image."
                )
            size = self.image_size or image_hw
            if not mask.any() or not resize_mask(mask, size).numpy().any():
                empty.append(str(rec.image))
        if empty:
            names = ", ".join(Path(p).name for p in empty[:_WARN_LIST])
            more = f" and {len(empty) - _WARN_LIST} more" if len(empty) > _WARN_LIST else ""
            warnings.warn(
                f"{len(empty)} of {len(defects)} defect images of {self.category!r} ({self.split}) "
                f"in {self.root} have an empty ground-truth mask (or one that vanishes when "
                f"resized to {self.image_size or 'native size'}): {names}{more}. They are kept as "
                "anomalous images (label 1) without anomalous pixels.",
                EmptyMaskWarning,
                stacklevel=3,
            )

    # -------------------------------------------------------------- loading

    def __len__(self) -> int:
        return len(self.records)

    def _foreground(self, rec: Record, image: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        if self.foreground_mode == "whole":
            return torch.ones(1, *size)
        if self.foreground_mode == "auto" and rec.foreground is not None:
            return resize_mask(read_mask(rec.foreground, threshold=0.5), size)
        if self.foreground_mode == "auto" and self.kind == "texture":
            return torch.ones(1, *size)
        return estimate_foreground(image)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        array = read_image(rec.image)
        size = self.image_size or array.shape[:2]
        image = resize_image(array, size)
        if rec.mask is not None:
            mask = resize_mask(read_mask(rec.mask), size)
        else:
            mask = torch.zeros(1, *size)
        return {
            "image": image,
            "mask": mask,
            "label": rec.label,
            "defect": rec.defect,
            "path": str(rec.image),
            "foreground": self._foreground(rec, image),
            "mask_known": rec.mask is not None or rec.label == 0,
        }

    # -------------------------------------------------------------- summaries

    @property
    def labels(self) -> list[int]:
        """Image labels (0 normal, 1 anomalous) in record order, without loading images."""
        return [r.label for r in self.records]

    def counts(self) -> dict[str, int]:
        """Number of images per defect folder ("good" first, then alphabetical)."""
        tally = Counter(r.defect for r in self.records)
        order = sorted(tally, key=lambda d: (d != "good", d))
        return {d: tally[d] for d in order}

    @property
    def num_foreground_files(self) -> int:
        """How many records come with a foreground file (DISthresh/, thresh/ or foreground/)."""
        return sum(r.foreground is not None for r in self.records)

    def __repr__(self) -> str:
        counts = ", ".join(f"{d}: {n}" for d, n in self.counts().items())
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, category={self.category!r}, "
            f"split={self.split!r}, kind={self.kind!r}, image_size={self.image_size}, "
            f"{len(self)} images ({counts}))"
        )


class MVTecDataset(AnomalyDataset):
    """MVTec-layout reader: MVTec AD, MPDD, BTAD, MVTec 3D-AD (RGB), VisA prepared, the mini
    benchmark, or any folder ``root/<category>/train/good``, ``test/<good|defect>``,
    ``ground_truth/<defect>/<name>_mask.png`` (see :func:`~diffad_core.data.layouts.parse_mvtec`).

    ``kind=None`` looks the category up in every table of
    :data:`~diffad_core.data.categories.DATASET_CATEGORIES` (unknown -> "texture").
    """

    parse = staticmethod(parse_mvtec)


class VisADataset(AnomalyDataset):
    """VisA reader: the raw release (``root/split_csv/1cls.csv``) or the prepared per-category
    MVTec layout (``train/good``, ``test/good|bad``, ``ground_truth/bad``); anomalies are reported
    with defect name "bad". See :func:`~diffad_core.data.layouts.parse_visa`."""

    parse = staticmethod(parse_visa)
    dataset_name = "visa"


class DAGMDataset(AnomalyDataset):
    """DAGM 2007 reader (``root/ClassN/Train|Test/*.PNG``, ``Label/<name>_label.PNG``,
    ``Label/Labels.txt``). The training split is the defect-free part of ``Train``: DAGM has no
    separate normal folder. Anomalies are reported with defect name "defect"."""

    parse = staticmethod(parse_dagm)
    dataset_name = "dagm"


def open_dataset(
    root: str | os.PathLike,
    category: str,
    split: Split = "train",
    image_size: ImageSize = 256,
    *,
    dataset: DatasetName = "auto",
    **kwargs: Any,
) -> AnomalyDataset:
    """Open one split of a category, recognising the layout.

    ``dataset="auto"`` picks VisA when ``root/split_csv/1cls.csv`` exists, DAGM when the
    category folder has ``Train/`` or ``Test/``, else the MVTec layout (``train/``, ``test/``);
    when none matches, the :class:`DatasetError` lists what was looked for. "mvtec", "mpdd" and
    "mini" use :class:`MVTecDataset` (with that dataset's category kinds), "visa"
    :class:`VisADataset`, "dagm" :class:`DAGMDataset`. ``kwargs`` go to the reader (``kind``,
    ``foreground``).
    """
    if dataset not in _DATASET_NAMES:
        valid = ", ".join(_DATASET_NAMES)
        raise ValueError(f"dataset={dataset!r} is not valid; use one of {valid}.")
    layout = detect_layout(root, category) if dataset == "auto" else dataset
    if dataset in ("mvtec", "mpdd", "mini") and kwargs.get("kind") is None:
        kwargs["kind"] = category_kind(category, dataset)
    reader = {"visa": VisADataset, "dagm": DAGMDataset}.get(layout, MVTecDataset)
    return reader(root, category, split, image_size, **kwargs)


class SplitTensors(NamedTuple):
    """A whole split cached in memory (N samples), compact dtypes.

    images (N, 3, H, W) uint8 0..255; masks (N, 1, H, W) uint8 0/1; labels (N,) long;
    foreground (N, 1, H, W) uint8 0/1; paths and defects: lists of N strings; kind: the
    category's kind ("texture" or "object") from the dataset, which ``fit`` reads (None if unknown);
    mask_known (N,) bool: False for defect images without a ground-truth mask (a test folder of
    ``good`` and defect image folders only: the pixel metrics are then not available).
    """

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    foreground: torch.Tensor
    paths: list[str]
    defects: list[str]
    kind: Optional[CategoryKind] = None
    mask_known: Optional[torch.Tensor] = None


def load_tensors(
    dataset: Dataset, num_workers: int = 0, *, batch_size: int = 32
) -> SplitTensors:
    """Load every sample of ``dataset`` into one :class:`SplitTensors` (for device-side batching).

    Images are quantised to uint8 (round(255 x)). ``num_workers > 0`` decodes files in that many
    DataLoader worker processes. The dataset needs a fixed ``image_size`` (all samples the same
    shape).
    """
    if getattr(dataset, "image_size", 0) is None:
        raise DatasetError(
            "load_tensors needs every image at the same size: open the dataset with an "
            "image_size (e.g. 256) instead of image_size=None."
        )
    if len(dataset) == 0:
        raise DatasetError("load_tensors got an empty dataset.")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    images, masks, labels, foreground, paths, defects, known = [], [], [], [], [], [], []
    for batch in loader:
        images.append((batch["image"] * 255.0).round_().clamp_(0, 255).to(torch.uint8))
        masks.append(batch["mask"].to(torch.uint8))
        labels.append(torch.as_tensor(batch["label"], dtype=torch.long))
        foreground.append(batch["foreground"].to(torch.uint8))
        paths += list(batch["path"])
        defects += list(batch["defect"])
        n_batch = len(batch["path"])
        known.append(torch.as_tensor(batch["mask_known"], dtype=torch.bool) if "mask_known" in batch
                     else torch.ones(n_batch, dtype=torch.bool))
    return SplitTensors(
        images=torch.cat(images),
        masks=torch.cat(masks),
        labels=torch.cat(labels),
        foreground=torch.cat(foreground),
        paths=paths,
        defects=defects,
        kind=getattr(dataset, "kind", None),
        mask_known=torch.cat(known),
    )
