"""Shipped weights: the pretrained starting point and the trained mini-benchmark models.

Two kinds of files live in :data:`WEIGHTS_DIR` (fp16 safetensors; :func:`diffad_core.load_model`
copies them into float32 parameters; each file carries its own model config):

* ``pretrained-<preset>-<size>.safetensors`` (:data:`PRETRAINED_STARTS`): a category-agnostic
  start, trained by :func:`diffad_core.pretrain` on the offline corpus of
  :mod:`diffad_core.pretraining`. :func:`diffad_core.fit` starts ``tiny`` and ``small`` runs from it
  (``init="pretrained"``), so a CPU adapts it to a category in minutes.
* ``mini-<category>.safetensors`` (:data:`PRETRAINED`): one model per mini-benchmark category,
  adapted from that start on the category's training images, for the notebooks and the demo:

      model = load_pretrained("brick")          # DiffusionAD, eval mode, float32
      out = model.predict(images)               # images (B, 3, 64, 64) in [0, 1]

How each was trained (steps, device, minutes) is in the file's metadata and in the README ("Trained
models"): the first versions were trained on one GPU (``tools/gpu_train.py``); the 64 px start
and the gravel, nut and pill models were then continued on a 2-core CPU. They are small models
(tiny preset; brick and pill at 64 px, gravel and nut at 128 px): far from the paper's figures,
and they say nothing about real datasets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch

from .checkpoint import load_model
from .model import DiffusionAD

if TYPE_CHECKING:
    from .train import TrainConfig

__all__ = ["PRETRAINED", "PRETRAINED_STARTS", "WEIGHTS_DIR", "WEIGHTS_ENV", "pretrained_path", "load_pretrained",
           "pretrained_start", "initial_model", "describe_init"]

#: Folder of the shipped ``*.safetensors`` files (inside the installed package).
WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "weights"
#: Environment variable naming another folder to read the files of :data:`PRETRAINED` from
#: (e.g. your own ``diffad train`` outputs, renamed), for every notebook at once.
WEIGHTS_ENV: str = "DIFFAD_WEIGHTS_DIR"

#: Mini-benchmark category -> weights file name in :data:`WEIGHTS_DIR`.
PRETRAINED: dict[str, str] = {
    "brick": "mini-brick.safetensors",
    "gravel": "mini-gravel.safetensors",
    "nut": "mini-nut.safetensors",
    "pill": "mini-pill.safetensors",
}


#: (preset, image size) -> file of the category-agnostic starting point that ``fit`` uses with
#: ``init="pretrained"`` (written by :func:`diffad_core.pretrain` / ``diffad pretrain``).
PRETRAINED_STARTS: dict[tuple[str, int], str] = {
    ("tiny", 64): "pretrained-tiny-64.safetensors",
    ("tiny", 128): "pretrained-tiny-128.safetensors",
    ("small", 128): "pretrained-small-128.safetensors",
}


def pretrained_start(preset: str, image_size: int) -> Path:
    """The shipped pretrained starting point for ``preset`` closest to ``image_size``.

    The networks are fully convolutional, so weights pretrained at 64 px are a valid (if not
    ideal) start at 128 px; the one trained at the nearest size is taken.

    Raises:
        ValueError: the preset has no shipped starting point (use ``init="scratch"`` or a file).
    """
    sizes = sorted((abs(size - image_size), size) for name, size in PRETRAINED_STARTS if name == preset)
    if not sizes:
        raise ValueError(
            f"no pretrained starting point ships for preset {preset!r} (only for "
            f"{sorted({name for name, _ in PRETRAINED_STARTS})}); use --init scratch or --init PATH"
        )
    return WEIGHTS_DIR / PRETRAINED_STARTS[(preset, sizes[0][1])]


def pretrained_path(category: str = "brick") -> Path:
    """Path of the shipped weights for a mini-benchmark ``category`` (the file may be missing).

    The folder is :data:`WEIGHTS_DIR`, or the one named by the environment variable
    ``DIFFAD_WEIGHTS_DIR`` when it is set.

    Raises:
        ValueError: ``category`` has no shipped weights (the message lists those that do).
    """
    if category not in PRETRAINED:
        raise ValueError(
            f"no shipped weights for category {category!r}; choose one of {sorted(PRETRAINED)} "
            "or train a model with diffad_core.fit / `diffad train`"
        )
    folder = Path(os.environ[WEIGHTS_ENV]) if os.environ.get(WEIGHTS_ENV) else WEIGHTS_DIR
    return folder / PRETRAINED[category]


def load_pretrained(category: str = "brick", device: Union[str, torch.device] = "cpu") -> DiffusionAD:
    """Load the shipped model for ``category`` on ``device``, in eval mode with float32 parameters.

    Raises:
        ValueError: unknown category (see :data:`PRETRAINED`).
        FileNotFoundError: the weights file is not there (an install without package data, or a
            source checkout before the weights were added); the message says how to get a model.
    """
    path = pretrained_path(category)
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped weights {path} are missing. Reinstall the package with its data "
            f"(pip install -e .), or train a model yourself: `diffad train --data <mini root> "
            f"--category {category} --preset tiny --image-size 64 --out runs/{category}` and load "
            f"runs/{category}/model.safetensors with diffad_core.load_model"
        )
    return load_model(path, map_location=device).float().eval()


def initial_model(config: "TrainConfig") -> DiffusionAD:
    """The model training starts from: seeded random weights, or ``config.init``'s weights.

    ``init="pretrained"`` takes the shipped starting point of ``config.preset``
    (:func:`diffad_core.pretrained.pretrained_start`); a path takes that model file. Either must
    have the preset's architecture; the weights are loaded into a model built at
    ``config.image_size`` (the networks are fully convolutional, so 64 px weights serve 128 px).
    """
    recon_over = {"use_checkpoint": True} if config.grad_checkpointing else {}
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed only
        torch.manual_seed(config.seed)
        model = DiffusionAD.from_preset(
            config.preset, image_size=config.image_size, num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule, pixel_range=config.pixel_range, input_norm=config.input_norm,
            recon_overrides=recon_over,
        )
    if config.init == "scratch":
        return model
    path = pretrained_start(config.preset, config.image_size) if config.init == "pretrained" else Path(config.init)
    if not path.is_file():
        raise ValueError(f"init={config.init!r}: {path} is not a file; use scratch, pretrained or a model file")
    source = load_model(path)
    if source.config.pixel_range != config.pixel_range or source.schedule.num_train_timesteps != config.num_train_timesteps:
        raise ValueError(f"init model {path} was trained with pixel_range={source.config.pixel_range!r}, "
                         f"T={source.schedule.num_train_timesteps}; this run has {config.pixel_range!r}, T={config.num_train_timesteps}")
    try:
        model.load_state_dict(source.state_dict())
    except RuntimeError:
        raise ValueError(f"init model {path} (preset {source.config.preset!r}) does not fit preset "
                         f"{config.preset!r}; pick a file trained with --preset {config.preset} or --init scratch") from None
    return model


def describe_init(config: "TrainConfig") -> str:
    """One phrase for the training log: where the weights start from."""
    if config.init == "pretrained":
        return f"pretrained start {pretrained_start(config.preset, config.image_size).name}"
    return "scratch" if config.init == "scratch" else f"weights of {config.init}"
