"""Checkpoints that survive interruption and never unpickle arbitrary objects.

Two formats:

* **Training checkpoints** (``*.pt``): a ``torch.save`` dict holding only tensors, numbers, strings,
  lists and dicts - model and optimizer state (and the moving average of the weights when the run
  keeps one, and in a finished run's last checkpoint the model it returned when that is a third
  one), the step, RNG states, and the configs as JSON strings.
  They are loaded with ``torch.load(weights_only=True)``, which refuses any other pickled object, so
  a checkpoint from someone else cannot run code.
* **Weights** (``*.safetensors``): the model's tensors plus its config as JSON metadata, for sharing
  and for the weights shipped with the package.

Every write is atomic (:func:`diffad_core.files.atomic_path`), so a crash or a full disk never
leaves a half-written file where a good one was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors

from .files import PathLike, atomic_path
from .model import DiffusionAD, ModelConfig

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "save_weights",
    "load_model",
    "find_model_file",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "diffad-checkpoint-v1"
#: What a run records about its training data (weights metadata, checkpoint extra).
PROVENANCE_KEYS = ("category", "data_root", "dataset", "kind")
WEIGHTS_FORMAT = "diffad-weights-v1"


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be read or does not hold a DiffusionAD model."""


def save_checkpoint(
    path: PathLike,
    *,
    model: DiffusionAD,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: Optional[dict[str, Any]] = None,
    step: int,
    train_config: dict[str, Any],
    rng: Optional[dict[str, torch.Tensor]] = None,
    extra: Optional[dict[str, Any]] = None,
    average: Optional[torch.nn.Module] = None,
    result: Optional[torch.nn.Module] = None,
) -> Path:
    """Atomically write a training checkpoint (see the module docstring for what it holds).

    ``average`` is the run's moving average of the weights (``TrainConfig.ema_decay``), stored
    beside the live weights: training resumes from ``model``, and :func:`load_model` returns the
    average, which is what the run's ``model.safetensors`` holds. ``result`` is the model a
    finished run returned when it is neither (its BatchNorm statistics recomputed,
    ``TrainConfig.bn_batches``); :func:`load_model` then returns it, and resuming ignores it.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": json.dumps(model.config.to_dict()),
        "train_config": json.dumps(train_config),
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "schedulers": {name: sch.state_dict() for name, sch in (schedulers or {}).items()},
        "rng": rng or {},
        "extra": json.dumps(extra or {}),
    }
    if average is not None:
        payload["average"] = {k: v.detach().cpu() for k, v in average.state_dict().items()}
    if result is not None:
        payload["result"] = {k: v.detach().cpu() for k, v in result.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Read a training checkpoint safely (``weights_only=True``) and decode its JSON fields.

    Raises:
        CheckpointError: missing, truncated or foreign file, or one holding pickled objects.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file} does not exist; pass the checkpoint.pt a training run wrote")
    with open(file, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(
            f"{file} is not a diffad model file (not a torch checkpoint archive); pass the checkpoint.pt "
            "or model.safetensors a training run wrote"
        )
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, refused globals
        refused = "weights_only" in str(exc) or "Unsupported global" in str(exc)
        why = ("it holds pickled Python objects, which safe loading refuses (diffad checkpoints hold only "
               "tensors and plain values)" if refused else f"it is truncated or damaged ({type(exc).__name__})")
        raise CheckpointError(f"cannot read checkpoint {file}: {why}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{file} is not a diffad training checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    try:
        payload["model_config"] = json.loads(payload["model_config"])
        payload["train_config"] = json.loads(payload["train_config"])
        payload["extra"] = json.loads(payload.get("extra", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {file} has a damaged config field: {exc}") from None
    return payload


def save_weights(
    path: PathLike,
    model: DiffusionAD,
    *,
    metadata: Optional[dict[str, str]] = None,
    dtype: Optional[torch.dtype] = None,
) -> Path:
    """Atomically write the model's weights and config as safetensors (``*.safetensors``).

    ``dtype=torch.float16`` halves the file (floating tensors only; loading casts them back to the
    model's float32 parameters).
    """
    tensors = {
        k: (v.detach().cpu().to(dtype) if dtype is not None and v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {"format": WEIGHTS_FORMAT, "model_config": json.dumps(model.config.to_dict())}
    meta.update({k: str(v) for k, v in (getattr(model, "provenance", None) or {}).items() if k in PROVENANCE_KEYS})
    if getattr(model, "calibration", None):
        meta["calibration"] = json.dumps(model.calibration)
    meta.update(metadata or {})
    with atomic_path(path) as tmp:
        save_safetensors(tensors, str(tmp), metadata=meta)
    return Path(path)


def _read_safetensors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_safetensors(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights {file}: {exc}") from None
    if meta.get("format") != WEIGHTS_FORMAT or "model_config" not in meta:
        raise CheckpointError(f"{file} is a safetensors file but not diffad weights (no '{WEIGHTS_FORMAT}' metadata)")
    try:
        config = json.loads(meta["model_config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"weights {file} have a damaged model_config: {exc}") from None
    return tensors, {"model_config": config, "metadata": meta}


def find_model_file(folder: PathLike) -> Path:
    """The model of a run folder: model.safetensors, train/model.safetensors or checkpoint.pt."""
    folder = Path(folder)
    for candidate in (folder / "model.safetensors", folder / "train" / "model.safetensors", folder / "checkpoint.pt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"no model.safetensors or checkpoint.pt in {folder}; pass a run folder that "
                          "diffad train wrote, or the model file itself")


def load_model(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> DiffusionAD:
    """Rebuild a :class:`DiffusionAD` from a training checkpoint (.pt) or weights (.safetensors).

    ``path`` may also be a run folder (what ``diffad train --out`` wrote; `find_model_file`).
    The file carries its own config, so nothing else is needed. The model is returned in eval mode,
    with the decision thresholds stored with it (if any) on ``model.calibration``
    (:mod:`diffad_core.calibration`).
    """
    file = Path(path)
    if file.is_dir():
        file = find_model_file(file)
    if not file.is_file():
        raise CheckpointError(f"model file {file} does not exist")
    if file.suffix == ".safetensors":
        state, info = _read_safetensors(file)
        calibration = info["metadata"].get("calibration")
        try:
            calibration = json.loads(calibration) if calibration else None
        except json.JSONDecodeError:
            raise CheckpointError(f"weights {file} have a damaged calibration field") from None
        provenance = {k: info["metadata"][k] for k in PROVENANCE_KEYS if k in info["metadata"]}
    else:
        info = load_checkpoint(file, map_location="cpu")
        # the model a run returned: its recomputed copy, else the average when it kept one
        state = info.get("result") or info.get("average") or info["model"]
        calibration = info["extra"].get("calibration")
        provenance = info["extra"].get("provenance") or {}
    try:
        model = DiffusionAD(ModelConfig.from_dict(info["model_config"]))
        model.load_state_dict(state)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{file} does not match its own model config: {str(exc)[:300]}") from None
    model.calibration = calibration if calibration is not None else _sidecar_calibration(file)
    model.provenance = provenance or None
    return model.to(map_location).eval()


#: A JSON file beside weight files, ``{file name: calibration}``: thresholds for weights that
#: were calibrated after they were written (the shipped mini models keep theirs there, so that
#: the weight files stay unchanged in git). Metadata inside the file wins over it.
CALIBRATION_SIDECAR = "calibration.json"


def _sidecar_calibration(file: Path) -> Optional[dict[str, Any]]:
    sidecar = file.parent / CALIBRATION_SIDECAR
    if not sidecar.is_file():
        return None
    try:
        entry = json.loads(sidecar.read_text()).get(file.name)
    except (json.JSONDecodeError, AttributeError):
        raise CheckpointError(f"{sidecar} is not a JSON object of file name -> calibration; fix or delete it") from None
    return entry if isinstance(entry, dict) else None
