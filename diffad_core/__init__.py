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
import sys as _sys
import types as _types

# OpenMP threads that spin while they wait make torch ~5x slower when another process is busy on a
# small machine (measured on 2 cores: 1.7 s vs 10-18 s per tiny step); passive waiting costs ~20 %
# on an idle one and keeps all threads useful. Only effective when torch is not imported yet.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# Names are imported on first use (PEP 562), so `import diffad_core` and `diffad --help` stay fast;
# `from diffad_core import fit` works as usual.
_EXPORTS: dict[str, str] = {
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint", "load_model": "checkpoint",
    "save_weights": "checkpoint",
    "DAGMDataset": "data", "DATASET_CATEGORIES": "data", "DatasetError": "data", "EmptyMaskWarning": "data",
    "MINI_CATEGORIES": "data", "MINI_DEFECTS": "data", "MVTecDataset": "data", "SplitTensors": "data",
    "VisADataset": "data", "category_kind": "data", "estimate_foreground": "data", "list_categories": "data",
    "load_tensors": "data", "make_mini_benchmark": "data", "open_dataset": "data",
    "EvalResult": "evaluate", "METRIC_KEYS": "evaluate", "PAPER_RESULTS": "evaluate", "evaluate": "evaluate",
    "per_defect_table": "evaluate", "summarize": "evaluate", "write_summary": "evaluate",
    "EvalConfig": "inference", "Predictions": "inference", "predict_images": "inference",
    "predict_split": "inference", "reconstruction_psnr": "inference",
    "diffusionad_loss": "losses",
    "ProCurve": "metrics", "aupro": "metrics", "compute_all": "metrics", "f1_max": "metrics",
    "image_ap": "metrics", "image_auroc": "metrics", "pixel_ap": "metrics", "pixel_auroc": "metrics",
    "pixel_f1_max": "metrics", "pro_curve": "metrics",
    "DiffusionAD": "model", "ModelConfig": "model", "Prediction": "model", "image_scores": "model",
    "RECON_PRESETS": "networks", "ReconUNet": "networks", "ReconUNetConfig": "networks",
    "SEG_PRESETS": "networks", "SegUNet": "networks", "SegUNetConfig": "networks",
    "perlin_mask": "perlin",
    "demo": "pipeline", "evaluate_category": "pipeline", "run_categories": "pipeline",
    "train_category": "pipeline",
    "predict_folder": "predict",
    "PRETRAINED": "pretrained", "PRETRAINED_STARTS": "pretrained", "load_pretrained": "pretrained",
    "pretrained_path": "pretrained", "pretrained_start": "pretrained",
    "build_corpus": "pretraining", "pretrain": "pretraining",
    "PAPER_INFERENCE": "reconstruction", "Reconstruction": "reconstruction",
    "iterative_reconstruct": "reconstruction", "norm_guided_forward": "reconstruction",
    "reconstruct": "reconstruction",
    "resolve_device": "runtime", "set_threads": "runtime",
    "NoiseSchedule": "schedule",
    "AnomalySynthesizer": "synthesis", "SynthesisConfig": "synthesis", "SynthesisOutput": "synthesis",
    "procedural_textures": "textures", "shuffle_grid": "textures",
    "FitResult": "train", "TRAIN_PRESETS": "train", "TrainConfig": "train", "TrainingError": "train",
    "fit": "train",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffad_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(_types.ModuleType):
    """Keeps ``diffad_core.evaluate`` the function: importing the submodule of the same name would
    otherwise rebind the attribute to the module (``from diffad_core.evaluate import ...`` still
    reads the module from ``sys.modules``)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _EXPORTS and name == _EXPORTS[name] and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


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
