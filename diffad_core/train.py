"""Training: the joint DiffusionAD recipe (DESIGN section 2) with resumable, atomic checkpoints.

One training step:

1. take the next ``batch_size`` images of the epoch's permutation (an "epoch" = as many samples as
   there are training images);
2. make each one a synthetic anomaly with probability ``p_anomaly`` (:class:`AnomalySynthesizer`);
3. compute :func:`diffad_core.losses.diffusionad_loss` (noise loss on normal samples, focal x 5 +
   smooth L1 on the anomaly map, gradients through x0_g into the UNet);
4. one Adam step on each network (lr 1e-4 UNet, 1e-5 SegNet as released).

Reproducibility and resuming: every random draw of step ``s`` comes from generators seeded by
``(seed, s, rank)`` and the epoch permutations from ``(seed, epoch)``, so a run killed and resumed
from its last checkpoint (which also holds the Adam moments and BatchNorm statistics) ends with the
same weights as an uninterrupted one on CPU.

Checkpoint choice never looks at test labels: the last checkpoint is the result (the released
code selected the "best" epoch by scoring the test set, which leaks the answer).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .checkpoint import CheckpointError, atomic_path, load_checkpoint, remove_stale_temporaries, save_checkpoint, save_weights
from .losses import LossOutput, diffusionad_loss, sample_timesteps
from .model import DiffusionAD

__all__ = ["TrainConfig", "TRAIN_PRESETS", "fit", "FitResult", "TrainingError", "resolve_device", "initial_model",
           "describe_init", "set_threads"]

Amp = Literal["auto", "bf16", "off"]
_BUDGET_KEYS = ("steps", "epochs", "minutes")


class TrainingError(RuntimeError):
    """Training cannot continue (a non-finite loss, a checkpoint that does not match the run)."""


@dataclass
class TrainConfig:
    """Every training setting, with the released recipe's values as defaults.

    Model: ``preset`` names the network sizes (see :mod:`diffad_core.networks`); ``image_size``
    is the side of the square training images. Budget: ``steps``, ``epochs`` or ``minutes``
    (the first one set wins in that order; all None means ``epochs = 3000`` as released).
    """

    # model
    preset: Literal["tiny", "small", "paper"] = "paper"
    image_size: int = 256
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "cosine"] = "linear"
    pixel_range: Literal["unit", "symmetric"] = "unit"
    # start: "scratch" (seeded random weights, as released), "pretrained" (the shipped starting
    # point of this preset, see diffad_core.pretrained) or the path of a model file to start from
    init: str = "scratch"
    # recipe
    batch_size: int = 16
    lr_unet: float = 1e-4
    lr_seg: float = 1e-5
    seg_lr_schedule: Literal["constant", "released"] = "constant"
    t_s_max: int = 300
    w: float = 1.0
    focal_weight: float = 5.0
    focal_alpha: float = 0.5
    focal_gamma: float = 4.0
    p_anomaly: float = 0.5
    anomaly_source: Optional[str] = None
    # budget
    steps: Optional[int] = None
    epochs: Optional[float] = None
    minutes: Optional[float] = None
    # bookkeeping
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    # speed (see the performance notes in the README)
    device: str = "auto"
    amp: Amp = "auto"
    channels_last: bool = False
    compile: bool = False
    grad_checkpointing: bool = False
    fused_adam: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self) -> None:
        checks = {
            "image_size": self.image_size > 0,
            "batch_size": self.batch_size > 0,
            "lr_unet": self.lr_unet > 0,
            "lr_seg": self.lr_seg > 0,
            "t_s_max": 0 < self.t_s_max < self.num_train_timesteps,
            "p_anomaly": 0.0 <= self.p_anomaly <= 1.0,
            "checkpoint_every": self.checkpoint_every > 0,
            "log_every": self.log_every > 0,
            "steps": self.steps is None or self.steps >= 0,
            "epochs": self.epochs is None or self.epochs > 0,
            "minutes": self.minutes is None or self.minutes > 0,
            "seed": -(2**63) <= self.seed < 2**63 - 1,  # torch.manual_seed's range
        }
        checks["init"] = isinstance(self.init, str) and bool(self.init)
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training setting(s): " + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad))
        for name, choices in (("seg_lr_schedule", ("constant", "released")), ("amp", ("auto", "bf16", "off")),
                              ("fused_adam", ("auto", "on", "off")), ("preset", ("tiny", "small", "paper"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown; choose one of {choices}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """A named preset (:data:`TRAIN_PRESETS`) with ``overrides`` applied; unknown keys are refused."""
        if name not in TRAIN_PRESETS:
            raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(TRAIN_PRESETS)}")
        base = dict(TRAIN_PRESETS[name])
        if any(overrides.get(k) is not None for k in _BUDGET_KEYS):  # an explicit budget replaces the preset's
            for key in _BUDGET_KEYS:
                base.pop(key, None)
        return cls.from_dict({**base, **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; valid ones are {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Named presets. "paper" is the released recipe (from scratch, 3000 epochs); "small" and "tiny"
#: are CPU-sized versions for the notebooks, the demo and tests. The small ones raise the SegNet
#: learning rate because a run of a few thousand steps is too short for 1e-5, and "tiny" starts from
#: the shipped pretrained weights (a departure from the release, which trains every category from
#: scratch: a CPU cannot pay for that; see diffad_core.pretraining). "small" has no shipped
#: starting point yet, so it starts from scratch unless ``init`` names a file.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(preset="paper", image_size=256, batch_size=16, lr_unet=1e-4, lr_seg=1e-5, epochs=3000),
    "small": dict(preset="small", image_size=128, batch_size=16, lr_unet=2e-4, lr_seg=1e-3, checkpoint_every=200),
    "tiny": dict(preset="tiny", image_size=64, batch_size=16, lr_unet=5e-4, lr_seg=1e-3, checkpoint_every=100,
                 init="pretrained"),
}


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (eval mode) and where its files are."""

    model: DiffusionAD
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    out_dir: Optional[Path] = None
    checkpoint: Optional[Path] = None
    weights: Optional[Path] = None


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; anything else is checked and returned."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a valid torch device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu")
    return device


def set_threads(threads: Optional[int] = None) -> int:
    """Set torch's intra-op thread count and return it; None keeps torch's default (all cores).

    On a small machine shared with another busy process, spinning OpenMP threads are what make
    several threads slow; ``diffad_core`` sets ``OMP_WAIT_POLICY=PASSIVE`` (when torch is imported
    after it), and with that the default is never slower than one thread (README, Threads).
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads} must be >= 1")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class _BatchSampler:
    """Stateless epoch sampler: positions ``p`` of the concatenated epoch permutations -> indices."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._perms: dict[int, Tensor] = {}

    def indices(self, start: int, count: int) -> Tensor:
        pos = torch.arange(start, start + count)
        epochs, offsets = pos // self.n, pos % self.n
        out = torch.empty(count, dtype=torch.long)
        for e in epochs.unique().tolist():
            if e not in self._perms:
                self._perms = {k: v for k, v in self._perms.items() if k >= e - 1}
                self._perms[e] = torch.randperm(self.n, generator=torch.Generator().manual_seed(_seed(self.seed, e, 17)))
            sel = epochs == e
            out[sel] = self._perms[e][offsets[sel]]
        return out


class _JointLoss(nn.Module):
    """The whole loss as one module, so DistributedDataParallel sees one forward per backward."""

    def __init__(self, model: DiffusionAD, unet: Callable, segnet: Callable) -> None:
        super().__init__()
        self.model = model
        self._unet, self._segnet = unet, segnet

    def forward(self, x_aug: Tensor, mask: Tensor, label: Tensor, draws: dict[str, Tensor], cfg: TrainConfig) -> LossOutput:
        return diffusionad_loss(
            self._unet, self._segnet, self.model.schedule, self.model.to_model_space(x_aug), mask, label,
            w=cfg.w, focal_weight=cfg.focal_weight, focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma,
            **draws,
        )


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by ``torchrun`` (WORLD_SIZE > 1).

    The backend is NCCL when CUDA is available and gloo otherwise (CPU, the tests).
    """
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _budget_steps(cfg: TrainConfig, n_train: int) -> Optional[int]:
    if cfg.steps is not None:
        return cfg.steps
    if cfg.epochs is not None:
        return max(1, math.ceil(cfg.epochs * n_train / cfg.batch_size))
    if cfg.minutes is not None:
        return None
    return max(1, math.ceil(3000 * n_train / cfg.batch_size))


def _rng_state() -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Tensor]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


_MODEL_KEYS = ("preset", "image_size", "num_train_timesteps", "beta_schedule", "pixel_range")


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def fit(
    config: TrainConfig,
    train: Any,
    *,
    kind: Literal["texture", "object"] = "texture",
    out_dir: Optional[Union[str, os.PathLike]] = None,
    resume: bool = False,
    progress: bool = True,
    callback: Optional[Callable[[dict[str, float]], None]] = None,
    model: Optional[DiffusionAD] = None,
) -> FitResult:
    """Train DiffusionAD on normal images.

    Args:
        config: the settings (:class:`TrainConfig`).
        train: the training split: a :class:`diffad_core.data.SplitTensors`, a dataset the readers
            return, or a float tensor (N, 3, H, W) in [0, 1].
        kind: ``"texture"`` or ``"object"`` - picks the anomaly sources (DESIGN section 4).
        out_dir: where ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end),
            ``log.jsonl``, ``train_config.json`` and the final ``model.safetensors`` go; None keeps
            everything in memory (notebooks).
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: show a progress bar on stdout with the loss parts.
        callback: called with each logged record (for live curves).
        model: start from this model instead of a fresh one built from the preset.

    Returns:
        :class:`FitResult` with the model in eval mode and the loss history.

    Raises:
        TrainingError: a non-finite loss (the last good checkpoint is kept) or a resume mismatch.
    """
    from .data import SplitTensors, load_tensors  # local: the data package imports heavy readers
    from .synthesis import AnomalySynthesizer

    rank, world = _distributed()
    device = resolve_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    images, foreground = _training_tensors(train, load_tensors, SplitTensors)
    n_train = images.shape[0]
    if n_train == 0:
        raise ValueError("the training split has no images")
    if images.shape[-1] != config.image_size or images.shape[-2] != config.image_size:
        raise ValueError(
            f"training images are {tuple(images.shape[-2:])} but image_size={config.image_size}; "
            f"open the dataset with image_size={config.image_size}"
        )
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} is not divisible by the {world} processes")
    local_batch = config.batch_size // world

    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "checkpoint.pt" if out else None
    start_step, elapsed_before = 0, 0.0
    state = None
    if resume:
        if ckpt_path is None:
            raise ValueError("resume=True needs out_dir (the folder of the run to continue)")
        if not ckpt_path.is_file():
            raise CheckpointError(f"cannot resume: {ckpt_path} does not exist (start without --resume)")
        state = load_checkpoint(ckpt_path)
        saved = state["train_config"]
        diff = [k for k in _MODEL_KEYS + ("seed", "batch_size") if saved.get(k) != getattr(config, k)]
        if diff:
            raise TrainingError(
                f"cannot resume {ckpt_path}: settings differ from the saved run: "
                + ", ".join(f"{k} saved {saved.get(k)!r} vs now {getattr(config, k)!r}" for k in diff)
            )
        start_step = int(state["step"])
        elapsed_before = float(state["extra"].get("seconds", 0.0))

    if model is None:
        model = initial_model(config)
    if state is not None:
        model.load_state_dict(state["model"])
    model = model.to(device).train()
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)

    fused = (config.fused_adam == "on") or (config.fused_adam == "auto" and device.type == "cuda")
    opt_kw = {"fused": True} if fused else {}
    opt_unet = torch.optim.Adam(model.unet.parameters(), lr=config.lr_unet, **opt_kw)
    opt_seg = torch.optim.Adam(model.segnet.parameters(), lr=config.lr_seg, **opt_kw)
    schedulers: dict[str, Any] = {}
    if config.seg_lr_schedule == "released":
        # As released: CosineAnnealingLR(T_max=10) stepped every iteration, i.e. the SegNet learning
        # rate oscillates with period 20 steps. It looks unintended; kept as an option for fidelity.
        schedulers["seg"] = torch.optim.lr_scheduler.CosineAnnealingLR(opt_seg, T_max=10)
    if state is not None:
        opt_unet.load_state_dict(state["optimizers"]["unet"])
        opt_seg.load_state_dict(state["optimizers"]["seg"])
        for name, sch in schedulers.items():
            if name in state["schedulers"]:
                sch.load_state_dict(state["schedulers"][name])
        _set_rng_state(state["rng"])

    unet_fn: Callable = torch.compile(model.unet) if config.compile else model.unet
    seg_fn: Callable = torch.compile(model.segnet) if config.compile else model.segnet
    joint: nn.Module = _JointLoss(model, unet_fn, seg_fn)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        joint = DistributedDataParallel(joint, device_ids=[device.index] if device.type == "cuda" else None)

    synth = AnomalySynthesizer(kind=kind, p_anomaly=config.p_anomaly, anomaly_source=config.anomaly_source)
    sampler = _BatchSampler(n_train, config.seed)
    use_amp = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    total_steps = _budget_steps(config, n_train)
    T = config.num_train_timesteps

    if out and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # half-written files of a run killed during a write
        with atomic_path(out / "train_config.json") as tmp:
            tmp.write_text(json.dumps(config.to_dict(), indent=2))
        _trim_log(out / "log.jsonl", start_step)

    history: list[dict[str, float]] = []
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=start_step, file=sys.stdout, desc="train", dynamic_ncols=True, leave=False)

    def save(step_done: int, seconds: float) -> Optional[Path]:
        if ckpt_path is None or rank != 0:
            return None
        if not _all_finite(model):
            kept = f"kept the last good checkpoint {ckpt_path}" if ckpt_path.is_file() else "no checkpoint was written"
            raise TrainingError(f"non-finite weights at step {step_done}; {kept}")
        return save_checkpoint(
            ckpt_path, model=model, optimizers={"unet": opt_unet, "seg": opt_seg}, schedulers=schedulers,
            step=step_done, train_config=config.to_dict(), rng=_rng_state(), extra={"seconds": seconds, "kind": kind},
        )

    t0 = time.perf_counter()
    step = start_step
    running: dict[str, Tensor] = {}
    try:
        while True:
            seconds = elapsed_before + time.perf_counter() - t0
            if total_steps is not None and step >= total_steps:
                break
            if total_steps is None and _time_up(seconds, config.minutes, world, device):
                break
            idx = sampler.indices(step * config.batch_size + rank * local_batch, local_batch)
            gen = torch.Generator(device="cpu").manual_seed(_seed(config.seed, step, rank))
            batch = images[idx].to(device, non_blocking=True).float().div_(255.0)
            fg = foreground[idx].to(device, non_blocking=True).float() if foreground is not None else None
            syn = synth(batch, fg, generator=gen)
            x_aug = syn.image.contiguous(memory_format=memory_format)
            draws = {
                "t_s": sample_timesteps(local_batch, 0, config.t_s_max, generator=gen).to(device),
                "t_b": sample_timesteps(local_batch, config.t_s_max, T, generator=gen).to(device),
                "noise_s": torch.randn(x_aug.shape, generator=gen).to(device),
                "noise_b": torch.randn(x_aug.shape, generator=gen).to(device),
            }
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                parts = joint(x_aug, syn.mask.to(device), syn.label.to(device), draws, config)
            opt_unet.zero_grad(set_to_none=True)
            opt_seg.zero_grad(set_to_none=True)
            parts.total.backward()
            opt_unet.step()
            opt_seg.step()
            for sch in schedulers.values():
                sch.step()
            step += 1
            for name in ("total", "noise", "focal", "smooth_l1"):
                value = getattr(parts, name).detach()
                running[name] = running.get(name, torch.zeros((), device=device)) + value
            if step % config.log_every == 0 or step == total_steps:
                record = _log_record(running, step, n_train, config, opt_unet, opt_seg, elapsed_before + time.perf_counter() - t0)
                running = {}
                if not math.isfinite(record["loss"]):
                    raise TrainingError(
                        f"the loss became {record['loss']} at step {step}; training stopped"
                        + (f" and the last good checkpoint {ckpt_path} was kept" if ckpt_path and ckpt_path.is_file() else "")
                        + ". Lower the learning rates or check the input images"
                    )
                history.append(record)
                if out and rank == 0:
                    with open(out / "log.jsonl", "a") as fh:
                        fh.write(json.dumps(record) + "\n")
                if callback is not None and rank == 0:
                    callback(record)
                if bar is not None:
                    bar.set_postfix(loss=f"{record['loss']:.4f}", noise=f"{record['noise']:.4f}",
                                    focal=f"{record['focal']:.4f}", l1=f"{record['smooth_l1']:.4f}", refresh=False)
            if bar is not None:
                bar.update(1)
            if step % config.checkpoint_every == 0:
                save(step, elapsed_before + time.perf_counter() - t0)
    finally:
        if bar is not None:
            bar.close()
    seconds = elapsed_before + time.perf_counter() - t0
    result = FitResult(model=model.eval(), steps=step, seconds=seconds, history=history, out_dir=out)
    if out is not None and rank == 0:
        result.checkpoint = save(step, seconds)
        result.weights = save_weights(out / "model.safetensors", model, metadata={"steps": str(step), "kind": kind})
    if world > 1:
        dist.barrier()  # the other ranks wait until rank 0 has written the final files
    return result


def initial_model(config: TrainConfig) -> DiffusionAD:
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
            beta_schedule=config.beta_schedule, pixel_range=config.pixel_range, recon_overrides=recon_over,
        )
    if config.init == "scratch":
        return model
    from .checkpoint import load_model
    from .pretrained import pretrained_start

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


def describe_init(config: TrainConfig) -> str:
    """One phrase for the training log: where the weights start from."""
    if config.init == "pretrained":
        from .pretrained import pretrained_start

        return f"pretrained start {pretrained_start(config.preset, config.image_size).name}"
    return "scratch" if config.init == "scratch" else f"weights of {config.init}"


def _training_tensors(train: Any, load_tensors: Callable, split_type: type) -> tuple[Tensor, Optional[Tensor]]:
    """(images uint8 (N, 3, H, W), foreground uint8 (N, 1, H, W) or None) from any accepted input."""
    if isinstance(train, Tensor):
        if train.dim() != 4 or train.shape[1] != 3:
            raise ValueError(f"training tensor must be (N, 3, H, W), got {tuple(train.shape)}")
        if train.is_floating_point():
            train = (train.clamp(0, 1) * 255).round().to(torch.uint8)
        return train, None
    if not isinstance(train, split_type):
        train = load_tensors(train)
    return train.images, train.foreground


def _time_up(seconds: float, minutes: Optional[float], world: int, device: torch.device) -> bool:
    done = minutes is not None and seconds >= minutes * 60.0
    if world > 1:  # every rank stops at the same step: rank 0's clock decides
        flag = torch.tensor([1 if done else 0], device=device if device.type == "cuda" else "cpu")
        dist.broadcast(flag, src=0)
        done = bool(flag.item())
    return done


def _log_record(running: dict[str, Tensor], step: int, n_train: int, cfg: TrainConfig,
                opt_unet: torch.optim.Optimizer, opt_seg: torch.optim.Optimizer, seconds: float) -> dict[str, float]:
    count = (step - 1) % cfg.log_every + 1
    values = {k: float(v) / count for k, v in running.items()}
    return {
        "step": step,
        "epoch": round(step * cfg.batch_size / n_train, 4),
        "loss": values.get("total", float("nan")),
        "noise": values.get("noise", float("nan")),
        "focal": values.get("focal", float("nan")),
        "smooth_l1": values.get("smooth_l1", float("nan")),
        "lr_unet": opt_unet.param_groups[0]["lr"],
        "lr_seg": opt_seg.param_groups[0]["lr"],
        "seconds": round(seconds, 3),
    }


def _trim_log(path: Path, keep_until: int) -> None:
    """Drop log lines written after the checkpoint we resume from (or all of them on a fresh run)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= keep_until:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))
