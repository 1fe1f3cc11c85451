"""Category lists of the paper's four benchmarks (plus our mini benchmark) and their kind.

The kind decides how training-time anomalies are synthesised (docs/method.md §4):

* ``"texture"``: the whole image may hold an anomaly (foreground = every pixel) and the anomaly
  source is a texture image;
* ``"object"``: anomalies are confined to the object's foreground, and half of them use the
  image itself ("self-augmentation") as the source.

The lists follow the released DiffusionAD code. Note that it treats MVTec AD ``zipper`` as a
texture (its ``texture_list``), unlike the MVTec AD paper; we keep the released choice so our
numbers stay comparable. MPDD's ``metal_plate`` is an object there, and every VisA category is an
object; all ten DAGM classes are textures.

A category we do not know is treated as a texture: the texture recipe is the safe default because
it needs no foreground estimate (a wrong object mask could hide half the image from the synthetic
anomalies). Pass ``kind=`` to a reader to override it.
"""

from __future__ import annotations

from typing import Literal, Optional

from .mini import MINI_CATEGORIES

__all__ = ["CategoryKind", "DATASET_CATEGORIES", "category_kind"]

CategoryKind = Literal["texture", "object"]

_T: CategoryKind = "texture"
_O: CategoryKind = "object"

#: ``DATASET_CATEGORIES[dataset][category] -> "texture" | "object"`` for "mvtec", "visa",
#: "mpdd", "dagm" and "mini" (the generated benchmark of :mod:`diffad_core.data.mini`).
DATASET_CATEGORIES: dict[str, dict[str, CategoryKind]] = {
    "mvtec": {
        "carpet": _T, "grid": _T, "leather": _T, "tile": _T, "wood": _T,
        "bottle": _O, "cable": _O, "capsule": _O, "hazelnut": _O, "metal_nut": _O,
        "pill": _O, "screw": _O, "toothbrush": _O, "transistor": _O,
        "zipper": _T,  # texture in the released code (texture_list), object in MVTec's paper
    },
    "visa": {
        name: _O
        for name in (
            "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
            "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
        )
    },
    "mpdd": {
        name: _O
        for name in (
            "bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes",
        )
    },
    "dagm": {f"Class{i}": _T for i in range(1, 11)},
    "mini": dict(MINI_CATEGORIES),
}


def category_kind(category: str, dataset: Optional[str] = None) -> CategoryKind:
    """Kind of ``category`` ("texture" or "object").

    With ``dataset`` given, only that dataset's list is consulted; otherwise every list is
    searched (in the order mvtec, visa, mpdd, dagm, mini). Unknown categories are "texture"
    (see the module docstring). An unknown ``dataset`` name raises ``ValueError``.
    """
    if dataset is not None:
        if dataset not in DATASET_CATEGORIES:
            raise ValueError(
                f"Unknown dataset {dataset!r}; valid names: {', '.join(DATASET_CATEGORIES)}."
            )
        return DATASET_CATEGORIES[dataset].get(category, "texture")
    for table in DATASET_CATEGORIES.values():
        if category in table:
            return table[category]
    return "texture"
