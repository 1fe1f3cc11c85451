"""Datasets: readers for the MVTec / VisA / DAGM layouts, foreground masks, the mini benchmark.

Public names (re-exported by :mod:`diffad_core`):

* readers: :class:`MVTecDataset`, :class:`VisADataset`, :class:`DAGMDataset`,
  :func:`open_dataset`, :func:`load_tensors` -> :class:`SplitTensors`;
* categories: :data:`DATASET_CATEGORIES`, :func:`category_kind`, :func:`list_categories`;
* foreground: :func:`estimate_foreground`;
* mini benchmark: :func:`make_mini_benchmark`, :data:`MINI_CATEGORIES`;
* errors: :class:`DatasetError`, :class:`EmptyMaskWarning`.
"""

from .categories import DATASET_CATEGORIES, CategoryKind, category_kind
from .errors import DatasetError, EmptyMaskWarning
from .foreground import ForegroundMode, estimate_foreground
from .layouts import Record, detect_layout, list_categories
from .mini import MINI_CATEGORIES, MINI_DEFECTS, MiniSample, make_mini_benchmark, render_mini_sample
from .readers import (
    AnomalyDataset,
    DAGMDataset,
    MVTecDataset,
    SplitTensors,
    VisADataset,
    load_tensors,
    open_dataset,
)

__all__ = [
    "AnomalyDataset",
    "CategoryKind",
    "DAGMDataset",
    "DATASET_CATEGORIES",
    "DatasetError",
    "EmptyMaskWarning",
    "ForegroundMode",
    "MINI_CATEGORIES",
    "MINI_DEFECTS",
    "MiniSample",
    "MVTecDataset",
    "Record",
    "SplitTensors",
    "VisADataset",
    "category_kind",
    "detect_layout",
    "estimate_foreground",
    "list_categories",
    "load_tensors",
    "make_mini_benchmark",
    "open_dataset",
    "render_mini_sample",
]
