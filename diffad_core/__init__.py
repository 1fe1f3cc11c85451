"""diffad_core: DiffusionAD (Zhang et al., arXiv 2303.08730) as a small, tested library.

The public API is listed in ``__all__``; notebooks, the README and the book use only these names.
"""

from __future__ import annotations

import os as _os

# OpenMP threads that spin while they wait make torch ~5x slower when another process is busy on a
# small machine (measured on 2 cores: 1.7 s vs 10-18 s per tiny step); passive waiting costs ~20 %
# on an idle one and keeps all threads useful. Only effective when torch is not imported yet.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint, save_weights
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
    render_mini_sample,
)
from .evaluate import PAPER_RESULTS, EvalConfig, EvalResult, Predictions, evaluate, predict_split, summarize, write_summary
from .losses import LossOutput, diffusionad_loss, focal_loss
from .metrics import ProCurve, aupro, compute_all, f1_max, image_ap, image_auroc, pixel_ap, pixel_auroc, pixel_f1_max, pro_curve
from .model import DiffusionAD, ModelConfig, Prediction, image_scores
from .networks import (
    RECON_PRESETS,
    SEG_PRESETS,
    ReconUNet,
    ReconUNetConfig,
    SegUNet,
    SegUNetConfig,
    count_parameters,
)
from .perlin import perlin_mask, perlin_noise
from .pretrained import PRETRAINED, PRETRAINED_STARTS, load_pretrained, pretrained_path, pretrained_start
from .pretraining import build_corpus, pretrain
from .reconstruction import NormGuidedPass, Reconstruction, iterative_reconstruct, norm_guided_forward, reconstruct
from .schedule import NoiseSchedule
from .synthesis import AnomalySynthesizer, SynthesisConfig, SynthesisOutput
from .textures import procedural_textures, shuffle_grid
from .train import TRAIN_PRESETS, FitResult, TrainConfig, TrainingError, fit, set_threads

__all__ = [
    "__version__",
    # schedule and method
    "NoiseSchedule", "reconstruct", "iterative_reconstruct", "norm_guided_forward", "NormGuidedPass",
    "Reconstruction", "diffusionad_loss", "focal_loss", "LossOutput",
    # networks and model
    "ReconUNet", "ReconUNetConfig", "SegUNet", "SegUNetConfig", "RECON_PRESETS", "SEG_PRESETS",
    "count_parameters", "DiffusionAD", "ModelConfig", "Prediction", "image_scores",
    # data and synthesis
    "MVTecDataset", "VisADataset", "DAGMDataset", "open_dataset", "load_tensors", "SplitTensors",
    "DATASET_CATEGORIES", "MINI_CATEGORIES", "MINI_DEFECTS", "category_kind", "list_categories",
    "estimate_foreground", "make_mini_benchmark", "render_mini_sample", "DatasetError", "EmptyMaskWarning",
    "AnomalySynthesizer", "SynthesisConfig", "SynthesisOutput", "perlin_noise", "perlin_mask",
    "procedural_textures", "shuffle_grid",
    # metrics
    "image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "f1_max", "pixel_f1_max", "aupro", "pro_curve",
    "ProCurve", "compute_all",
    # training, checkpoints, evaluation
    "TrainConfig", "TRAIN_PRESETS", "fit", "FitResult", "TrainingError", "save_checkpoint", "load_checkpoint",
    "save_weights", "load_model", "CheckpointError", "EvalConfig", "EvalResult", "Predictions", "evaluate",
    "predict_split", "summarize", "write_summary", "PAPER_RESULTS",
    # shipped weights
    "PRETRAINED", "load_pretrained", "pretrained_path", "PRETRAINED_STARTS", "pretrained_start",
    "build_corpus", "pretrain", "set_threads",
]
