"""Training: the joint DiffusionAD recipe (docs/method.md §2) with resumable, atomic checkpoints.

One training step:

1. take the next ``batch_size`` images of the epoch's permutation (an "epoch" = as many samples as
   there are training images); with ``exposure_jitter`` > 0, scale each by a random gain
   (:func:`jitter_exposure`, not in the release);
2. make each one a synthetic anomaly with probability ``p_anomaly`` (:class:`AnomalySynthesizer`);
3. compute :func:`diffad_core.losses.diffusionad_loss` (noise loss on normal samples, focal x 5 +
   smooth L1 on the anomaly map, gradients through x0_g into the UNet);
4. one Adam step on each network (lr 1e-4 UNet, 1e-5 SegNet as released);
5. with ``ema_decay`` > 0, fold the new weights into their moving average (:class:`_WeightAverage`),
   which is then the model the run returns and saves (not in the release).

After the last step, with ``bn_batches`` > 0, a copy of that model gets its SegNet BatchNorm
statistics recomputed over fresh training batches (:func:`recompute_batchnorm`, not in the
release); the copy is what the run returns and writes to ``model.safetensors``, the checkpoint
keeps the training state as it was.

Reproducibility and resuming: every random draw of step ``s`` comes from generators seeded by
``(seed, s, rank)`` and the epoch permutations from ``(seed, epoch)``, so a run killed and resumed
from its last checkpoint (which also holds the Adam moments and the weight average) ends with the
same weights as an uninterrupted one on CPU.

Checkpoint choice never looks at test labels: the last checkpoint is the result (the released
code selected the "best" epoch by scoring the test set, which leaks the answer).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .calibration import validation_split
from .config import TRAIN_PRESETS, TrainConfig
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_weights
from .files import atomic_path, remove_stale_temporaries, trim_jsonl
from .losses import LossOutput, diffusionad_loss, sample_timesteps, segmentation_loss
from .model import DiffusionAD
from .reconstruction import norm_guided_forward
from .runtime import (Networks, autocast, compile_networks, distributed, memory_format, randn,
                      resolve_device, rng_state, set_rng_state, use_bf16)

__all__ = ["TrainConfig", "TRAIN_PRESETS", "fit", "FitResult", "TrainingError", "recompute_batchnorm",
           "recompute_batchnorm_as_trained", "collecting_batchnorm_statistics"]



class TrainingError(RuntimeError):
    """Training cannot continue (a non-finite loss, a checkpoint that does not match the run)."""


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
    calibration: Optional[dict[str, Any]] = None


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def _draw_timesteps(n: int, t_s_max: int, t_b_max: Optional[int], T: int, generator: torch.Generator,
                    device: torch.device) -> tuple[Tensor, Tensor]:
    """Training's step pair: t_s ~ U{0..t_s_max-1}, then t_b ~ U{t_s_max..t_b_max-1} (None: T-1)."""
    t_s = sample_timesteps(n, 0, t_s_max, generator=generator).to(device)
    return t_s, sample_timesteps(n, t_s_max, t_b_max or T, generator=generator).to(device)


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

    def __init__(self, model: DiffusionAD, nets: Networks) -> None:
        super().__init__()
        self.model = model
        self._nets = nets

    def forward(self, x_aug: Tensor, mask: Tensor, label: Tensor, draws: dict[str, Tensor], cfg: TrainConfig) -> LossOutput:
        return diffusionad_loss(
            self._nets.unet, self._nets.segnet, self.model.schedule, self.model.to_model_space(x_aug), mask, label,
            w=cfg.w, focal_weight=cfg.focal_weight, focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma,
            **draws,
        )



def _budget_steps(cfg: TrainConfig, n_train: int) -> Optional[int]:
    if cfg.steps is not None:
        return cfg.steps
    if cfg.epochs is not None:
        return max(1, math.ceil(cfg.epochs * n_train / cfg.batch_size))
    if cfg.minutes is not None:
        return None
    return max(1, math.ceil(3000 * n_train / cfg.batch_size))



class _WeightAverage:
    """The bias-corrected exponential moving average of a model's weights (and float buffers).

    After update ``n`` (1-based, the run's step count) the average is
    ``sum_i d^(n-i) w_i / sum_i d^(n-i)`` over the weights ``w_1..w_n`` after each step, so it
    holds no trace of the starting weights and needs no warm-up: update 1 copies, later ones
    move by ``(1 - d) / (1 - d^n)``. Its window is about ``1 / (1 - d)`` steps.
    """

    def __init__(self, model: DiffusionAD, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        state = self.model.state_dict()  # tensors sharing the average's storage, split once
        self._floats = {k: v for k, v in state.items() if v.is_floating_point()}
        self._others = {k: v for k, v in state.items() if not v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, n: int) -> None:
        live = model.state_dict()
        torch._foreach_lerp_(list(self._floats.values()), [live[k] for k in self._floats],
                             (1.0 - self.decay) / (1.0 - self.decay ** n))
        for name, value in self._others.items():
            value.copy_(live[name])


_MODEL_KEYS = ("preset", "image_size", "num_train_timesteps", "beta_schedule", "pixel_range", "input_norm")


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@dataclass
class _Run:
    """Everything one training run holds between steps (built by :func:`_setup`)."""

    config: TrainConfig
    model: DiffusionAD
    joint: nn.Module
    opt_unet: torch.optim.Optimizer
    opt_seg: torch.optim.Optimizer
    schedulers: dict[str, Any]
    synth: Any
    sampler: _BatchSampler
    images: Tensor
    foreground: Optional[Tensor]
    val_images: Tensor
    val_foreground: Optional[Tensor]
    kind: str
    device: torch.device
    rank: int
    world: int
    local_batch: int
    use_amp: bool
    fmt: torch.memory_format
    total_steps: Optional[int]
    start_step: int
    elapsed_before: float
    out: Optional[Path]
    average: Optional[_WeightAverage] = None

    @property
    def final(self) -> DiffusionAD:
        """The model the run returns and saves: the weight average when it keeps one."""
        return self.average.model if self.average is not None else self.model

    @property
    def n_train(self) -> int:
        return int(self.images.shape[0])

    @property
    def checkpoint(self) -> Optional[Path]:
        return self.out / "checkpoint.pt" if self.out is not None else None


def _resume_state(config: TrainConfig, out: Optional[Path]) -> Optional[dict[str, Any]]:
    """The checkpoint to continue from, checked against ``config`` (model keys, seed, batch)."""
    if out is None:
        raise ValueError("resume=True needs out_dir (the folder of the run to continue)")
    path = out / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist (start without --resume)")
    state = load_checkpoint(path)
    saved = state["train_config"]
    saved = {"val_fraction": 0.0, "ema_decay": 0.0, "input_norm": "none", **saved}  # defaults of runs saved before these existed
    diff = [k for k in _MODEL_KEYS + ("seed", "batch_size", "val_fraction", "ema_decay") if saved.get(k) != getattr(config, k)]
    if diff:
        raise TrainingError(
            f"cannot resume {path}: settings differ from the saved run: "
            + ", ".join(f"{k} saved {saved.get(k)!r} vs now {getattr(config, k)!r}" for k in diff)
        )
    return state


def _setup(config: TrainConfig, train: Any, kind: Optional[str], out_dir: Any, resume: bool,
           model: Optional[DiffusionAD]) -> _Run:
    """Data, model, optimizers, synthesizer and the resumed state of one run."""
    from .data import SplitTensors, load_tensors  # local: the data package imports heavy readers
    from .synthesis import AnomalySynthesizer

    rank, world = distributed()
    device = resolve_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    images, foreground, data_kind = _training_tensors(train, load_tensors, SplitTensors)
    kind = kind or data_kind or "texture"
    if kind not in ("texture", "object"):
        raise ValueError(f"kind={kind!r} is not valid; use 'texture' or 'object'")
    if images.shape[0] == 0:
        raise ValueError("the training split has no images")
    keep, held = validation_split(images.shape[0], config.val_fraction, config.seed)
    val_images, val_fg = images[held], (foreground[held] if foreground is not None else None)
    images, foreground = images[keep], (foreground[keep] if foreground is not None else None)
    n_train = images.shape[0]
    if images.shape[-1] != config.image_size or images.shape[-2] != config.image_size:
        raise ValueError(
            f"training images are {tuple(images.shape[-2:])} but image_size={config.image_size}; "
            f"open the dataset with image_size={config.image_size}"
        )
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} is not divisible by the {world} processes")

    out = Path(out_dir) if out_dir is not None else None
    state = _resume_state(config, out) if resume else None
    if model is None:
        from .pretrained import initial_model

        model = initial_model(config)
    else:
        differ = [f"{k} {getattr(model.config, k)!r} vs {getattr(config, k)!r}" for k in ("pixel_range", "input_norm")
                  if getattr(model.config, k) != getattr(config, k)]
        if differ:
            raise ValueError(f"the model passed in does not match the training settings ({'; '.join(differ)}); "
                             "set them in the TrainConfig to the model's")
    if state is not None:
        model.load_state_dict(state["model"])
    model.calibration = state["extra"].get("calibration") if state is not None else None  # none of the start's
    model = model.to(device).train()
    # a passed-in model may be a run's weight average, which has no gradients; lr_unet 0 freezes
    # the reconstruction UNet: without gradients the backward pass skips it
    model.requires_grad_(True)
    model.unet.requires_grad_(config.lr_unet > 0)
    fmt = memory_format(config.channels_last)
    if config.channels_last:
        model = model.to(memory_format=fmt)
    average = _WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    if average is not None and state is not None:  # _resume_state checked that the run kept one
        average.model.load_state_dict(state["average"])

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
        set_rng_state(state["rng"])

    nets = compile_networks(model, enabled=config.compile)
    if config.unet_engine == "openvino":
        nets = Networks(_openvino_unet(model, config, device, tuple(images.shape[1:])), nets.segnet)
    joint: nn.Module = _JointLoss(model, nets)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        joint = DistributedDataParallel(joint, device_ids=[device.index] if device.type == "cuda" else None)

    run = _Run(
        config=config, model=model, joint=joint, opt_unet=opt_unet, opt_seg=opt_seg, schedulers=schedulers,
        synth=AnomalySynthesizer(kind=kind, p_anomaly=config.p_anomaly, anomaly_source=config.anomaly_source,
                                 shade_prob=config.shade_prob),
        sampler=_BatchSampler(n_train, config.seed), images=images, foreground=foreground, kind=kind,
        val_images=val_images, val_foreground=val_fg,
        device=device, rank=rank, world=world, local_batch=config.batch_size // world,
        use_amp=use_bf16(config.amp, device), fmt=fmt, total_steps=_budget_steps(config, n_train),
        start_step=int(state["step"]) if state is not None else 0,
        elapsed_before=float(state["extra"].get("seconds", 0.0)) if state is not None else 0.0, out=out,
        average=average,
    )
    if out and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # half-written files of a run killed during a write
        with atomic_path(out / "train_config.json") as tmp:
            tmp.write_text(json.dumps(config.to_dict(), indent=2))
        trim_jsonl(out / "log.jsonl", "step", run.start_step)
    return run


def _openvino_unet(model: DiffusionAD, config: TrainConfig, device: torch.device, shape: tuple[int, ...]) -> Any:
    """The frozen UNet compiled by OpenVINO (:mod:`diffad_core.engine`), at the run's precision."""
    from .engine import OpenVINOUNet

    if device.type != "cpu":
        raise ValueError(f"unet_engine='openvino' runs on the CPU, but this run is on {device}; "
                         "use unet_engine 'torch' there")
    return OpenVINOUNet(model.unet, shape[0], shape[-1], bf16=use_bf16(config.amp, device),
                        threads=torch.get_num_threads())


def jitter_exposure(images: Tensor, jitter: float, generator: torch.Generator) -> Tensor:
    """Multiply each image in [0, 1] by a gain drawn log-uniformly from [1 / (1 + jitter), 1 + jitter].

    The gains come from ``generator`` (a CPU generator), one per image; the result is clipped to [0, 1].
    """
    u = torch.rand(images.shape[0], generator=generator)
    gain = torch.exp((2.0 * u - 1.0) * math.log1p(jitter)).to(images.device, images.dtype)
    return (images * gain.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def _train_step(run: _Run, step: int) -> LossOutput:
    """Step ``step`` (0-based): batch, synthetic anomalies, joint loss, one Adam step per network
    (and ``seg_repeats - 1`` more SegNet steps on the same reconstructions).

    Every draw comes from a generator seeded by (seed, step, rank) on the CPU, so a resumed run
    repeats the uninterrupted one exactly.
    """
    cfg, device, local_batch = run.config, run.device, run.local_batch
    idx = run.sampler.indices(step * cfg.batch_size + run.rank * local_batch, local_batch)
    gen = torch.Generator(device="cpu").manual_seed(_seed(cfg.seed, step, run.rank))
    batch = run.images[idx].to(device, non_blocking=True).float().div_(255.0)
    if cfg.exposure_jitter > 0:
        batch = jitter_exposure(batch, cfg.exposure_jitter, gen)
    fg = run.foreground[idx].to(device, non_blocking=True).float() if run.foreground is not None else None
    syn = run.synth(batch, fg, generator=gen)
    x_aug = syn.image.contiguous(memory_format=run.fmt)
    t_s, t_b = _draw_timesteps(local_batch, cfg.t_s_max, cfg.t_b_max, cfg.num_train_timesteps, gen, device)
    draws = {
        "t_s": t_s,
        "t_b": t_b,
        "noise_s": randn(x_aug.shape, generator=gen, device=device),
        "noise_b": randn(x_aug.shape, generator=gen, device=device),
    }
    with autocast(run.use_amp, device):
        parts = run.joint(x_aug, syn.mask.to(device), syn.label.to(device), draws, cfg)
    run.opt_unet.zero_grad(set_to_none=True)
    run.opt_seg.zero_grad(set_to_none=True)
    parts.total.backward()
    run.opt_unet.step()
    run.opt_seg.step()
    if cfg.seg_repeats > 1:
        x_model = run.model.to_model_space(x_aug)
        _reuse_reconstruction(run, x_model, parts.guided.x0_guided.detach(), syn.mask.to(device), gen)
    for sch in run.schedulers.values():
        sch.step()
    return parts


def _flip(images: Tensor, flips: Tensor) -> Tensor:
    """Flip each image left-right where ``flips[:, 0]`` and upside down where ``flips[:, 1]``."""
    lr, ud = (flips[:, i].to(images.device).view(-1, 1, 1, 1) for i in (0, 1))
    images = torch.where(lr, images.flip(-1), images)
    return torch.where(ud, images.flip(-2), images)


def _reuse_reconstruction(run: _Run, x: Tensor, x0_guided: Tensor, mask: Tensor, gen: torch.Generator) -> None:
    """``seg_repeats - 1`` more SegNet updates on one batch's input, guided reconstruction and mask.

    Each update flips every sample's triple at random (the same flip for all three) and trains
    only the SegNet, so it costs one SegNet forward and backward, not the UNet's two passes.
    """
    cfg, segnet = run.config, run.model.segnet
    for _ in range(cfg.seg_repeats - 1):
        flips = torch.rand(x.shape[0], 2, generator=gen) < 0.5
        with autocast(run.use_amp, run.device):
            _, focal, smooth = segmentation_loss(segnet, _flip(x, flips), _flip(x0_guided, flips), _flip(mask, flips),
                                                 focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma)
        run.opt_seg.zero_grad(set_to_none=True)
        # outside DistributedDataParallel's forward: its hooks stay off and the ranks average by hand
        with run.joint.no_sync() if run.world > 1 else contextlib.nullcontext():
            (cfg.focal_weight * focal + smooth).backward()
        if run.world > 1:
            for p in segnet.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(run.world)
        run.opt_seg.step()


@contextlib.contextmanager
def collecting_batchnorm_statistics(module: nn.Module) -> Iterator[list[nn.Module]]:
    """Inside the block every BatchNorm layer of ``module`` starts from empty running statistics
    and averages each batch it sees with equal weight (train mode, momentum None); afterwards
    their momentum and ``module``'s train/eval mode are restored. Yields the layers."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training, momenta = module.training, [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield norms
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        module.train(was_training)


@torch.no_grad()
def recompute_batchnorm(
    model: DiffusionAD,
    images: Tensor,
    *,
    kind: str = "texture",
    foreground: Optional[Tensor] = None,
    batches: int = 20,
    batch_size: int = 16,
    p_anomaly: float = 0.5,
    t_s_max: int = 300,
    t_b_max: Optional[int] = None,
    w: float = 1.0,
    anomaly_source: Optional[str] = None,
    exposure_jitter: float = 0.0,
    shade_prob: float = 0.0,
    seed: int = 0,
    bf16: bool = False,
    timesteps: Optional[tuple[int, int]] = None,
) -> int:
    """Recompute the SegNet's BatchNorm running statistics with the final weights (not in the release).

    While training, each BatchNorm keeps a running average over its recent batches, taken while
    the weights moved; the weight average (``ema_decay``) averages those statistics again. This
    replaces them by the plain average over ``batches`` fresh training batches drawn as training
    draws them (normal ``images`` (N, 3, H, W) uint8 or in [0, 1], the exposure jitter, synthetic
    anomalies with ``p_anomaly`` (``shade_prob`` of them shades), t_s ~ U{0..t_s_max-1},
    t_b ~ U{t_s_max..t_b_max-1} (None: T-1), the norm-guided pass; seeded by ``seed``, apart from the training steps' draws), the way SWA
    recomputes them after averaging. ``timesteps`` = (t_s, t_b) uses that pair for every sample
    instead of the two draws (e.g. the inference setting (200, 400)). Nothing else changes. Returns
    the number of BatchNorm layers recomputed (0: the SegNet has none). :func:`fit` calls it through
    :func:`recompute_batchnorm_as_trained` with ``TrainConfig.bn_batches`` batches.
    """
    from .synthesis import AnomalySynthesizer

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.segnet.modules()):
        return 0
    if images.shape[0] == 0 or batches < 1 or batch_size < 2:
        raise ValueError(f"recompute_batchnorm needs images, batches >= 1 and batch_size >= 2 "
                         f"(got {images.shape[0]} images, batches={batches}, batch_size={batch_size})")
    synth = AnomalySynthesizer(kind=kind, p_anomaly=p_anomaly, anomaly_source=anomaly_source, shade_prob=shade_prob)
    device, T = model.device, model.schedule.num_train_timesteps
    was_training = model.training
    model.eval()
    try:
        with collecting_batchnorm_statistics(model.segnet) as norms:
            for b in range(batches):
                gen = torch.Generator(device="cpu").manual_seed(_seed(seed, b, 29, 1))
                idx = torch.randint(images.shape[0], (batch_size,), generator=gen)
                x = images[idx].to(device).float()
                x = x / 255.0 if images.dtype == torch.uint8 else x
                if exposure_jitter > 0:
                    x = jitter_exposure(x, exposure_jitter, gen)
                fg = foreground[idx].to(device).float() if foreground is not None else None
                syn = synth(x, fg, generator=gen)
                x_model = model.to_model_space(syn.image)
                t_s, t_b = _draw_timesteps(batch_size, t_s_max, t_b_max, T, gen, device)
                if timesteps is not None:  # drawn all the same, so the noises below match the drawn run's
                    t_s, t_b = (torch.full_like(t, value) for t, value in zip((t_s, t_b), timesteps))
                noise_s, noise_b = (randn(x_model.shape, generator=gen, device=device) for _ in range(2))
                with autocast(bf16, device):
                    guided = norm_guided_forward(model.unet, model.schedule, x_model, t_s, t_b, w,
                                                 noise_s=noise_s, noise_b=noise_b)
                model.segnet(torch.cat([x_model, guided.x0_guided.float()], dim=1))
    finally:
        model.train(was_training)
    return len(norms)


def recompute_batchnorm_as_trained(
    model: DiffusionAD,
    images: Tensor,
    config: TrainConfig,
    *,
    kind: str = "texture",
    foreground: Optional[Tensor] = None,
    batches: Optional[int] = None,
    batch_size: Optional[int] = None,
    bf16: bool = False,
    timesteps: Optional[tuple[int, int]] = None,
) -> int:
    """:func:`recompute_batchnorm` with the draws of a run trained with ``config``: its batch size
    (or ``batch_size``, e.g. a rank's share), share of anomalies, timestep ranges, guidance weight,
    anomaly source, exposure jitter, shades and seed; ``batches`` defaults to ``config.bn_batches``
    (20 when that is 0)."""
    return recompute_batchnorm(
        model, images, kind=kind, foreground=foreground, batches=batches or config.bn_batches or 20,
        batch_size=batch_size or config.batch_size, p_anomaly=config.p_anomaly, t_s_max=config.t_s_max,
        t_b_max=config.t_b_max, w=config.w, anomaly_source=config.anomaly_source,
        exposure_jitter=config.exposure_jitter, shade_prob=config.shade_prob, seed=config.seed, bf16=bf16,
        timesteps=timesteps)


def _final_model(run: _Run) -> DiffusionAD:
    """What the run returns and saves: its weight average (or last weights), with the SegNet's
    BatchNorm statistics recomputed when ``bn_batches`` > 0 - on a copy, so the training state
    (and a resumed run) never sees them."""
    cfg = run.config
    if cfg.bn_batches == 0:
        return run.final
    final = copy.deepcopy(run.final).requires_grad_(False)
    recompute_batchnorm_as_trained(final, run.images, cfg, kind=run.kind, foreground=run.foreground,
                                   batch_size=run.local_batch, bf16=run.use_amp)
    return final


def _save(run: _Run, step_done: int, seconds: float, final: Optional[DiffusionAD] = None) -> Optional[Path]:
    """Write the training checkpoint (rank 0 only); refuses non-finite weights."""
    path = run.checkpoint
    if path is None or run.rank != 0:
        return None
    if not _all_finite(run.model):
        kept = f"kept the last good checkpoint {path}" if path.is_file() else "no checkpoint was written"
        raise TrainingError(f"non-finite weights at step {step_done}; {kept}")
    final = final if final is not None else run.final  # the returned model's calibration and provenance
    return save_checkpoint(
        path, model=run.model, optimizers={"unet": run.opt_unet, "seg": run.opt_seg}, schedulers=run.schedulers,
        step=step_done, train_config=run.config.to_dict(), rng=rng_state(),
        extra={"seconds": seconds, "kind": run.kind, "calibration": getattr(final, "calibration", None),
               "provenance": getattr(final, "provenance", None)},
        average=run.average.model if run.average is not None else None,
        result=final if final is not run.final else None,
    )


def _log(run: _Run, running: dict[str, Tensor], step: int, seconds: float,
         callback: Optional[Callable[[dict[str, float]], None]], bar: Any) -> dict[str, float]:
    """One log record (mean loss parts since the last one): checked, appended to log.jsonl, shown."""
    record = _log_record(running, step, run.n_train, run.config, run.opt_unet, run.opt_seg, seconds)
    checkpoint = run.checkpoint
    if not math.isfinite(record["loss"]):
        raise TrainingError(
            f"the loss became {record['loss']} at step {step}; training stopped"
            + (f" and the last good checkpoint {checkpoint} was kept" if checkpoint and checkpoint.is_file() else "")
            + ". Lower the learning rates or check the input images"
        )
    if run.out and run.rank == 0:
        with open(run.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
    if callback is not None and run.rank == 0:
        callback(record)
    if bar is not None:
        bar.set_postfix(loss=f"{record['loss']:.4f}", noise=f"{record['noise']:.4f}",
                        focal=f"{record['focal']:.4f}", l1=f"{record['smooth_l1']:.4f}", refresh=False)
    return record


def fit(
    config: TrainConfig,
    train: Any,
    *,
    kind: Optional[Literal["texture", "object"]] = None,
    out_dir: Optional[Union[str, os.PathLike]] = None,
    resume: bool = False,
    progress: bool = True,
    callback: Optional[Callable[[dict[str, float]], None]] = None,
    model: Optional[DiffusionAD] = None,
    provenance: Optional[dict[str, str]] = None,
) -> FitResult:
    """Train DiffusionAD on normal images.

    Args:
        config: the settings (:class:`TrainConfig`).
        train: the training split: a :class:`diffad_core.data.SplitTensors`, a dataset the readers
            return, or a float tensor (N, 3, H, W) in [0, 1].
        kind: ``"texture"`` or ``"object"`` - picks the anomaly sources (docs/method.md §4). None
            (default) takes the kind the dataset or ``SplitTensors`` carries; "texture" for a
            plain tensor.
        out_dir: where ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end),
            ``log.jsonl``, ``train_config.json`` and the final ``model.safetensors`` go; None keeps
            everything in memory (notebooks).
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: show a progress bar on stdout with the loss parts.
        callback: called with each logged record (for live curves).
        model: start from this model instead of the one ``config.init`` names (a previous run's
            result too). It is trained in place and its parameters require gradients afterwards;
            with ``config.ema_decay`` > 0 the result's model is a separate module, the average of
            its weights, and with ``config.bn_batches`` > 0 a copy whose SegNet BatchNorm statistics
            were recomputed (:func:`recompute_batchnorm`).
        provenance: what the run was trained on (category, data root, ...), stored in the weights'
            metadata and the checkpoint; ``load_model`` puts it on ``model.provenance``.

    Returns:
        :class:`FitResult` with the model in eval mode (the weight average when ``ema_decay`` > 0)
        and the loss history.

    Raises:
        TrainingError: a non-finite loss (the last good checkpoint is kept) or a resume mismatch.
    """
    run = _setup(config, train, kind, out_dir, resume, model)
    run.model.provenance = run.final.provenance = {**(provenance or {}), "kind": run.kind}
    history: list[dict[str, float]] = []
    bar = None
    if progress and run.rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=run.total_steps, initial=run.start_step, file=sys.stdout, desc="train", dynamic_ncols=True,
                   leave=False)

    t0 = time.perf_counter()
    step = run.start_step
    running: dict[str, Tensor] = {}
    try:
        while True:
            seconds = run.elapsed_before + time.perf_counter() - t0
            if run.total_steps is not None and step >= run.total_steps:
                break
            if run.total_steps is None and _time_up(seconds, config.minutes, run.world, run.device):
                break
            parts = _train_step(run, step)
            step += 1
            if run.average is not None:
                run.average.update(run.model, step)
            for name in ("total", "noise", "focal", "smooth_l1"):
                value = getattr(parts, name).detach()
                running[name] = running.get(name, torch.zeros((), device=run.device)) + value
            if step % config.log_every == 0 or step == run.total_steps:
                history.append(_log(run, running, step, run.elapsed_before + time.perf_counter() - t0, callback, bar))
                running = {}
            if bar is not None:
                bar.update(1)
            if step % config.checkpoint_every == 0:
                _save(run, step, run.elapsed_before + time.perf_counter() - t0)
    finally:
        if bar is not None:
            bar.close()
        run.model.unet.requires_grad_(True)  # undo lr_unet 0's freeze on a model passed in
    seconds = run.elapsed_before + time.perf_counter() - t0
    run.model.eval()
    final = _final_model(run)
    if run.val_images.shape[0] and run.rank == 0:  # thresholds from the held-out images, never test labels
        from .calibration import calibrate
        from .inference import EvalConfig

        final.calibration = calibrate(
            final, run.val_images, kind=run.kind, foreground=run.val_foreground, seed=config.seed,
            anomaly_source=config.anomaly_source, config=EvalConfig(device=str(run.device), seed=config.seed),
        )
    result = FitResult(model=final, steps=step, seconds=seconds, history=history, out_dir=run.out,
                       calibration=getattr(final, "calibration", None))
    if run.out is not None and run.rank == 0:
        result.checkpoint = _save(run, step, seconds, final)
        result.weights = save_weights(run.out / "model.safetensors", final,
                                      metadata={"steps": str(step), **final.provenance})
    if run.world > 1:
        dist.barrier()  # the other ranks wait until rank 0 has written the final files
    return result


def _training_tensors(train: Any, load_tensors: Callable, split_type: type) -> tuple[Tensor, Optional[Tensor], Optional[str]]:
    """(images uint8 (N, 3, H, W), foreground uint8 (N, 1, H, W) or None, the data's kind or None)."""
    if isinstance(train, Tensor):
        if train.dim() != 4 or train.shape[1] != 3:
            raise ValueError(f"training tensor must be (N, 3, H, W), got {tuple(train.shape)}")
        if train.is_floating_point():
            train = (train.clamp(0, 1) * 255).round().to(torch.uint8)
        return train, None, None
    kind = getattr(train, "kind", None)  # readers and SplitTensors carry the category's kind
    if not isinstance(train, split_type):
        train = load_tensors(train)
    return train.images, train.foreground, kind or getattr(train, "kind", None)


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
