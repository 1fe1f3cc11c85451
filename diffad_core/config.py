"""Every setting of the package as plain dataclasses, importable without torch.

* :class:`TrainConfig` and the named :data:`TRAIN_PRESETS` (:func:`diffad_core.train.fit`);
* :class:`EvalConfig` (:mod:`diffad_core.inference`, :func:`diffad_core.evaluate.evaluate`,
  ``diffad predict``);
* :data:`PAPER_INFERENCE`, the paper's t_s / t_b / w / top-k, and :data:`AMP_MODES`.

The ``diffad`` command builds its options from these fields, so ``diffad --help`` needs neither
torch nor scikit-learn; the modules that run things re-export the names they use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, NamedTuple, Optional

__all__ = ["AMP_MODES", "AmpMode", "DEMO_MINUTES", "InferenceSetting", "PAPER_INFERENCE", "TrainConfig", "TRAIN_PRESETS", "EvalConfig",
           "MAP_DTYPES", "BUDGET_KEYS"]

AmpMode = Literal["auto", "bf16", "off"]
#: Accepted values of every ``amp`` setting (training and evaluation; see diffad_core.runtime).
AMP_MODES: tuple[str, ...] = ("auto", "bf16", "off")
MapDtype = Literal["float32", "float16"]
MAP_DTYPES: tuple[str, ...] = ("float32", "float16")
#: The budget fields of TrainConfig; the first one set wins, in this order.
BUDGET_KEYS = ("steps", "epochs", "minutes")


class InferenceSetting(NamedTuple):
    """The knobs of one-step inference: the two steps, the guidance weight, the image-score top-k."""

    t_s: int
    t_b: int
    w: float
    top_k: int


#: The paper's inference setting (t_s = 200, t_b = 400, w = 1, image score = mean of the top 50
#: map values). Every default in the package (model, evaluation, widgets, benchmarks) reads it here.
PAPER_INFERENCE = InferenceSetting(t_s=200, t_b=400, w=1.0, top_k=50)

#: Wall-clock training budget of ``diffad demo`` / :func:`diffad_core.pipeline.demo`, in minutes
#: (12: chosen with tools/tune_demo.py on validation mini seeds; `make demo` stays under 14 minutes).
DEMO_MINUTES = 12.0


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
    # "gain": each image is scaled to mean GAIN_TARGET before both networks, in training and in
    # every prediction, so exposure drift between sessions is removed ("none": as released)
    input_norm: Literal["none", "gain"] = "none"
    # start: "scratch" (seeded random weights, as released), "pretrained" (the shipped starting
    # point of this preset, see diffad_core.pretrained) or the path of a model file to start from
    init: str = "scratch"
    # recipe
    batch_size: int = 16
    lr_unet: float = 1e-4
    lr_seg: float = 1e-5
    seg_lr_schedule: Literal["constant", "released"] = "constant"
    t_s_max: int = 300
    # training draws t_b from [t_s_max, t_b_max) (None: up to T, as released). Inference uses one
    # pair (t_s 200, t_b 400); a smaller t_b_max trains the SegNet on reconstructions closer to it
    t_b_max: Optional[int] = None
    w: float = 1.0
    focal_weight: float = 5.0
    focal_alpha: float = 0.5
    focal_gamma: float = 4.0
    p_anomaly: float = 0.5
    # SegNet updates per batch: the first is the joint step; each further one reuses the batch's
    # input, guided reconstruction (no gradient) and mask, flipped at random, so the UNet's two
    # forward passes (most of a step's time when the UNet is frozen) are paid once (1 = as released)
    seg_repeats: int = 1
    anomaly_source: Optional[str] = None
    # exposure: before synthesis, each training image is multiplied by a gain drawn log-uniformly
    # from [1 / (1 + j), 1 + j] and clipped to [0, 1] (0 = off, as released). For data whose
    # exposure drifts between acquisition sessions (tools/acquisition_groups.py shows it).
    exposure_jitter: float = 0.0
    # share of the synthetic anomalies that are smooth-edged shades (a stain, a worn patch:
    # synthesis.shade_region) instead of a pasted source (0 = off, as released)
    shade_prob: float = 0.0
    # weight averaging: the model a run returns and saves is the bias-corrected exponential moving
    # average of the weights after every step with this decay (0 = off: the last step's weights).
    # A run's last step alone is a noisy pick (one step can move pixel AUROC by points).
    ema_decay: float = 0.0
    # after training, the SegNet's BatchNorm statistics are recomputed with the final weights over
    # this many fresh training batches (train.recompute_batchnorm; 0 = off, as released): the
    # running statistics were averaged while the weights moved, and the weight average averages them again
    bn_batches: int = 0
    # calibration: this share of the normal training images (seeded, at least 3, only when there
    # are >= 20) is held out of training and sets the decision thresholds (diffad_core.calibration)
    val_fraction: float = 0.1
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
    amp: AmpMode = "auto"
    channels_last: bool = False
    compile: bool = False
    grad_checkpointing: bool = False
    fused_adam: Literal["auto", "on", "off"] = "auto"
    unet_engine: Literal["torch", "openvino"] = "torch"

    def __post_init__(self) -> None:
        checks = {
            "image_size": self.image_size > 0,
            "batch_size": self.batch_size > 0,
            "lr_unet": self.lr_unet >= 0,
            "lr_seg": self.lr_seg > 0,
            "t_s_max": 0 < self.t_s_max < self.num_train_timesteps,
            "t_b_max": self.t_b_max is None or self.t_s_max < self.t_b_max <= self.num_train_timesteps,
            "p_anomaly": 0.0 <= self.p_anomaly <= 1.0,
            "seg_repeats": isinstance(self.seg_repeats, int) and 1 <= self.seg_repeats <= 64,
            "exposure_jitter": 0.0 <= self.exposure_jitter <= 3.0,
            "shade_prob": 0.0 <= self.shade_prob <= 1.0,
            "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "bn_batches": isinstance(self.bn_batches, int) and self.bn_batches >= 0,
            "val_fraction": 0.0 <= self.val_fraction < 0.5,
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
            raise ValueError("invalid training setting(s): " + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad))
        for name, choices in (("seg_lr_schedule", ("constant", "released")), ("amp", AMP_MODES),
                              ("fused_adam", ("auto", "on", "off")), ("preset", ("tiny", "small", "paper")),
                              ("unet_engine", ("torch", "openvino"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown; choose one of {choices}")
        if self.unet_engine == "openvino" and self.lr_unet > 0:
            raise ValueError(f"unet_engine='openvino' runs a frozen reconstruction UNet, but lr_unet={self.lr_unet} "
                             "trains it; set lr_unet 0 or unet_engine 'torch'")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """A named preset (:data:`TRAIN_PRESETS`) with ``overrides`` applied; unknown keys are refused."""
        if name not in TRAIN_PRESETS:
            raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(TRAIN_PRESETS)}")
        base = dict(TRAIN_PRESETS[name])
        if any(overrides.get(k) is not None for k in BUDGET_KEYS):  # an explicit budget replaces the preset's
            for key in BUDGET_KEYS:
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
#: learning rate because a run of a few thousand steps is too short for 1e-5 (tiny's 3e-3 was
#: chosen over 3e-4, 1e-3 and 1e-2 on validation mini seeds by tools/tune_demo.py; small's 1e-3 was
#: not searched), return the moving average of the weights (ema_decay 0.99: a short run's last
#: step alone is a noisy pick; measured by benchmarks/bench_average.py), and they start from
#: the shipped pretrained weights (a departure from the release, which trains every category from
#: scratch: a CPU cannot pay for that; see diffad_core.pretraining). "tiny" also turns three
#: training samples in four into synthetic anomalies (p_anomaly 0.75, released 0.5; chosen over
#: 0.3 and 0.5 the same way, two seeds each side). Both recompute the SegNet's BatchNorm
#: statistics with the final weights (bn_batches 20; +0.6 S and +1.3 AUPRO over 14 saved tiny
#: demo-search runs, paired; docs/results.md round 15; small's was not measured on its own).
#: "paper" keeps the released from-scratch start unless ``init`` names one, and the released statistics.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(preset="paper", image_size=256, batch_size=16, lr_unet=1e-4, lr_seg=1e-5, epochs=3000),
    "small": dict(preset="small", image_size=128, batch_size=16, lr_unet=2e-4, lr_seg=1e-3, checkpoint_every=200,
                  init="pretrained", ema_decay=0.99, bn_batches=20),
    "tiny": dict(preset="tiny", image_size=64, batch_size=16, lr_unet=5e-4, lr_seg=3e-3, p_anomaly=0.75,
                 checkpoint_every=100, init="pretrained", ema_decay=0.99, bn_batches=20),
}



@dataclass
class EvalConfig:
    """Inference and report settings (defaults: the paper's inference setting, PAPER_INFERENCE).

    Fields:
        t_s, t_b: the small and big steps of norm guidance (200, 400).
        w: guidance weight (1.0).
        top_k: the image score is the mean of the top-k values of M (50).
        batch_size: images per forward pass.
        seed: seed of the generator of the noises eps_s, eps_b (results are deterministic on CPU).
        device: "auto" (CUDA if available, else CPU), or any torch device string ("cuda:1").
        amp: autocast of the two UNet passes (:mod:`diffad_core.runtime`): "auto" = bf16 on CUDA,
            float32 elsewhere; "bf16" = bf16 on any device; "off" = float32. The SegNet, the
            anomaly maps and the image scores are always computed in float32.
        channels_last: run the networks in channels-last memory format (faster convs on GPUs).
        compile: run compiled copies of the two networks (:func:`diffad_core.runtime.compile_networks`;
            the model itself is not changed); the first batches pay the compilation (seconds to
            minutes), so it pays off on large test sets on a GPU.
        num_figures: how many test images ``figures/samples.png`` shows (0: no samples figure).
        threshold: image-score threshold for the "at threshold" figures of :func:`diffad_core.evaluate`
            and for ``diffad predict``; None takes the one calibrated and stored with the model.
        map_dtype: dtype in which maps are kept; "float16" halves the memory of large test sets
            (maps are in [0, 1], so float16 keeps about 3 significant digits).
    """

    t_s: int = PAPER_INFERENCE.t_s
    t_b: int = PAPER_INFERENCE.t_b
    w: float = PAPER_INFERENCE.w
    top_k: int = PAPER_INFERENCE.top_k
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    amp: AmpMode = "auto"
    channels_last: bool = False
    compile: bool = False
    num_figures: int = 8
    map_dtype: MapDtype = "float32"
    threshold: Optional[float] = None

    def __post_init__(self) -> None:
        if self.t_s < 0 or self.t_b < 0:
            raise ValueError(f"t_s and t_b must be >= 0, got t_s={self.t_s}, t_b={self.t_b}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not -(2**63) <= self.seed < 2**63 - 1:
            raise ValueError(f"seed must be a 64-bit signed integer (torch.manual_seed's range), got {self.seed}")
        if self.num_figures < 0:
            raise ValueError(f"num_figures must be >= 0, got {self.num_figures}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r} is unknown; choose one of {AMP_MODES}")
        if self.map_dtype not in MAP_DTYPES:
            raise ValueError(f"map_dtype={self.map_dtype!r} is unknown; choose one of {MAP_DTYPES}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalConfig":
        """Build from a dict, rejecting unknown keys (a misspelled key is an error, not ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EvalConfig keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)


#: One line per training setting, for ``diffad ... --help`` (the defaults are added there).
TRAIN_HELP: dict[str, str] = {
    "preset": "network sizes: paper (released), small or tiny",
    "image_size": "side of the square training images, in pixels",
    "num_train_timesteps": "diffusion steps T of the noise schedule",
    "beta_schedule": "noise schedule",
    "pixel_range": "unit feeds [0, 1] images as released; symmetric maps them to [-1, 1]",
    "input_norm": "none feeds pixels as released; gain scales each image to mean 0.5 first (for exposure that drifts)",
    "init": "where the weights start: scratch, pretrained (the shipped start) or a model file",
    "batch_size": "images per training step",
    "lr_unet": "Adam learning rate of the reconstruction UNet (0 freezes it: no gradient flows into it, a step then costs about 0.4x)",
    "lr_seg": "Adam learning rate of the segmentation net",
    "seg_lr_schedule": "SegNet rate: constant, or the released cosine schedule stepped every iteration",
    "t_s_max": "training draws t_s from [0, t_s_max) and t_b from [t_s_max, t_b_max)",
    "t_b_max": "upper end of training's t_b draws (none: T, as released; inference uses t_b 400)",
    "w": "norm-guidance weight in training",
    "focal_weight": "weight of the focal loss in the total loss",
    "focal_alpha": "focal loss alpha",
    "focal_gamma": "focal loss gamma",
    "p_anomaly": "share of training samples turned into synthetic anomalies",
    "seg_repeats": "SegNet updates per batch; the extra ones reuse its reconstruction, flipped (1: as released)",
    "anomaly_source": "folder of texture images (e.g. DTD) for synthetic anomalies; default: built-in textures",
    "exposure_jitter": "j in 0..3: each training image times a gain from [1/(1+j), 1+j] (0: off, as released)",
    "shade_prob": "share of the synthetic anomalies that are smooth-edged shades instead of pasted sources (0: off, as released)",
    "ema_decay": "decay of the moving average of the weights that is saved as the model (0: the last step's weights)",
    "bn_batches": ("recompute the SegNet's BatchNorm statistics with the final weights over N fresh training "
                   "batches after training (0: off, as released)"),
    "val_fraction": "share of the normal training images held out to calibrate the decision thresholds",
    "steps": "training budget in optimizer steps (first of steps / epochs / minutes wins; none: 3000 epochs)",
    "epochs": "training budget in passes over the training images",
    "minutes": "training budget in wall-clock minutes",
    "seed": "seed of every random draw (data order, synthesis, noise, initial weights)",
    "checkpoint_every": "write checkpoint.pt every N steps (and at the end)",
    "log_every": "append a record to log.jsonl every N steps",
    "device": "auto (CUDA when available), cpu, cuda or cuda:N",
    "amp": "bf16 autocast: auto (on CUDA), bf16 (any device) or off",
    "channels_last": ("channels-last memory format (faster convolutions on GPUs, and on a CPU with --amp bf16 "
                      "and --lr-unet 0, where the training commands turn it on unless --no-channels-last)"),
    "compile": "torch.compile both networks (pays off on long GPU runs)",
    "grad_checkpointing": "recompute UNet activations in the backward pass (less memory, ~30 % slower)",
    "fused_adam": "fused Adam kernel: auto (on CUDA), on or off",
    "unet_engine": ("what runs the frozen reconstruction UNet's passes (--lr-unet 0, CPU): torch, or openvino "
                    "(pip install openvino; faster at --amp bf16)"),
}

#: One line per inference setting, for ``diffad eval/predict --help``.
EVAL_HELP: dict[str, str] = {
    "t_s": "small step of norm guidance",
    "t_b": "big step of norm guidance",
    "w": "norm-guidance weight",
    "top_k": "image score = mean of the top-k anomaly-map values",
    "batch_size": "images per forward pass",
    "seed": "seed of the noises of the one-step pass",
    "device": "auto (CUDA when available), cpu, cuda or cuda:N",
    "amp": "bf16 autocast of the two UNet passes: auto (on CUDA), bf16 or off; maps stay float32",
    "channels_last": "channels-last memory format",
    "compile": "run compiled copies of the networks",
    "num_figures": "test images shown in figures/samples.png",
    "map_dtype": "dtype in which the maps are kept (float16 halves memory)",
    "threshold": "image-score decision threshold (default: the one stored with the model)",
}
