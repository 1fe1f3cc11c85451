"""diffad_core: DiffusionAD (Zhang et al., arXiv 2303.08730) as a small, tested library.

The public API is ``__all__`` below, plus two documented namespaces with their own ``__all__``:

* :mod:`diffad_core.viz` - the figures (samples, ROC / PRO curves, histograms, schedules);
* :mod:`diffad_core.course` - the notebook layer (examples, widgets); it needs the ``[course]``
  extra (ipywidgets, IPython) and nothing in the library imports it.

Lower-level pieces stay in their modules (e.g. :mod:`diffad_core.losses` for the loss parts,
:mod:`diffad_core.runtime` for the device / autocast / compile rule, :mod:`diffad_core.pipeline` for
the flows the ``diffad`` command runs) and are imported from there.
"""

from __future__ import annotations

import os as _os

# OpenMP threads that spin while they wait make torch ~5x slower when another process is busy on a
# small machine (measured on 2 cores: 1.7 s vs 10-18 s per tiny step); passive waiting costs ~20 %
# on an idle one and keeps all threads useful. Only effective when torch is not imported yet.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .checkpoint import CheckpointError, load_checkpoint, load_model, save_weights
from .data import (
    DATASET_CATEGORIES,
    MINI_CATEGORIES,
    MINI_DEFECTS,
    DAGMDataset,
    DatasetError,
    EmptyMaskWarning,
    MVTecDataset,
    SplitTensors,
    VisADataset,
    category_kind,
    estimate_foreground,
    list_categories,
    load_tensors,
    make_mini_benchmark,
    open_dataset,
)
from .evaluate import METRIC_KEYS, PAPER_RESULTS, EvalResult, evaluate, per_defect_table, summarize, write_summary
from .inference import EvalConfig, Predictions, predict_images, predict_split, reconstruction_psnr
from .losses import diffusionad_loss
from .metrics import ProCurve, aupro, compute_all, f1_max, image_ap, image_auroc, pixel_ap, pixel_auroc, pixel_f1_max, pro_curve
from .model import DiffusionAD, ModelConfig, Prediction, image_scores
from .networks import (
    RECON_PRESETS,
    SEG_PRESETS,
    ReconUNet,
    ReconUNetConfig,
    SegUNet,
    SegUNetConfig,
)
from .perlin import perlin_mask
from .pipeline import demo, evaluate_category, run_categories, train_category
from .predict import predict_folder
from .pretrained import PRETRAINED, PRETRAINED_STARTS, load_pretrained, pretrained_path, pretrained_start
from .pretraining import build_corpus, pretrain
from .reconstruction import PAPER_INFERENCE, Reconstruction, iterative_reconstruct, norm_guided_forward, reconstruct
from .schedule import NoiseSchedule
from .synthesis import AnomalySynthesizer, SynthesisConfig, SynthesisOutput
from .textures import procedural_textures, shuffle_grid
from .runtime import resolve_device, set_threads
from .train import TRAIN_PRESETS, FitResult, TrainConfig, TrainingError, fit

__all__ = [
    "__version__",
    # schedule and method
    "NoiseSchedule", "reconstruct", "iterative_reconstruct", "norm_guided_forward", "Reconstruction",
    "PAPER_INFERENCE", "diffusionad_loss",
    # networks and model
    "ReconUNet", "ReconUNetConfig", "SegUNet", "SegUNetConfig", "RECON_PRESETS", "SEG_PRESETS",
    "DiffusionAD", "ModelConfig", "Prediction", "image_scores",
    # data and synthesis
    "MVTecDataset", "VisADataset", "DAGMDataset", "open_dataset", "load_tensors", "SplitTensors",
    "DATASET_CATEGORIES", "MINI_CATEGORIES", "MINI_DEFECTS", "category_kind", "list_categories",
    "estimate_foreground", "make_mini_benchmark", "DatasetError", "EmptyMaskWarning",
    "AnomalySynthesizer", "SynthesisConfig", "SynthesisOutput", "perlin_mask", "procedural_textures",
    "shuffle_grid",
    # metrics
    "image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "f1_max", "pixel_f1_max", "aupro", "pro_curve",
    "ProCurve", "compute_all", "METRIC_KEYS",
    # training, checkpoints, inference, evaluation
    "TrainConfig", "TRAIN_PRESETS", "fit", "FitResult", "TrainingError", "load_checkpoint", "save_weights",
    "load_model", "CheckpointError", "EvalConfig", "Predictions", "predict_split", "predict_images",
    "reconstruction_psnr", "EvalResult", "evaluate", "summarize", "write_summary", "per_defect_table",
    "PAPER_RESULTS", "resolve_device", "set_threads",
    # whole-category flows (what the diffad command runs) and new images
    "train_category", "evaluate_category", "run_categories", "demo", "predict_folder",
    # shipped weights and pretraining
    "PRETRAINED", "load_pretrained", "pretrained_path", "PRETRAINED_STARTS", "pretrained_start",
    "build_corpus", "pretrain",
]
