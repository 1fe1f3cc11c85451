"""``DiffusionAD``: the two sub-networks, the noise schedule and the pixel range, as one module.

This is the object training produces, checkpoints hold and evaluation uses:

    model = DiffusionAD.from_preset("tiny", image_size=64)
    out = model.predict(images)          # images (B, 3, H, W) in [0, 1]
    out.anomaly_map, out.score           # (B, 1, H, W) in [0, 1], (B,)

Pixel range (``pixel_range``): the released code feeds images in [0, 1] to the diffusion UNet
unchanged and clamps its estimates to [-1, 1]; ``"unit"`` (default) keeps that, so the paper's
t_s = 200 / t_b = 400 mean what they meant there. ``"symmetric"`` maps images to [-1, 1] first, the
usual DDPM convention (then the same t hides relatively less of the image).

Input normalisation (``input_norm``): ``"none"`` (default, as released) feeds the pixels as they
are. ``"gain"`` first multiplies each image by the gain that brings its mean to
:data:`GAIN_TARGET`, both for training (after anomaly synthesis) and for every prediction, so an
exposure change between acquisition sessions (a gain on every pixel) no longer reaches either
network; contrast relative to the mean (a dark hole stays 20 % darker) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple, Optional

import torch
from torch import Tensor, nn

from .losses import LossOutput, diffusionad_loss
from .networks import ReconUNet, ReconUNetConfig, SegUNet, SegUNetConfig, config_from_dict, config_to_dict
from .reconstruction import PAPER_INFERENCE, Reconstruction, reconstruct
from .runtime import Networks, autocast, randn
from .schedule import BETA_SCHEDULES, NoiseSchedule

__all__ = ["DiffusionAD", "ModelConfig", "Prediction", "image_scores", "PIXEL_RANGES", "INPUT_NORMS", "GAIN_TARGET"]

PixelRange = Literal["unit", "symmetric"]
PIXEL_RANGES: tuple[str, ...] = ("unit", "symmetric")
INPUT_NORMS: tuple[str, ...] = ("none", "gain")
#: mean pixel value of every image after ``input_norm="gain"`` (mid-grey, in [0, 1])
GAIN_TARGET = 0.5
#: smallest image mean the gain divides by (an all-black image stays black instead of dividing by 0)
_GAIN_FLOOR = 1e-3


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`DiffusionAD` (stored as JSON in checkpoints)."""

    recon: ReconUNetConfig
    seg: SegUNetConfig
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    pixel_range: str = "unit"
    preset: Optional[str] = None
    input_norm: str = "none"

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule={self.beta_schedule!r} is unknown; choose one of {BETA_SCHEDULES}")
        if self.pixel_range not in PIXEL_RANGES:
            raise ValueError(f"pixel_range={self.pixel_range!r} is unknown; choose one of {PIXEL_RANGES}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm={self.input_norm!r} is unknown; choose one of {INPUT_NORMS}")

    @property
    def image_size(self) -> int:
        return int(self.recon.image_size)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["recon"] = config_to_dict(self.recon)
        out["seg"] = config_to_dict(self.seg)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; valid keys are {sorted(known)}")
        missing = sorted({"recon", "seg"} - set(data))
        if missing:
            raise ValueError(f"model config lacks {missing}")
        kw = dict(data)
        kw["recon"] = config_from_dict(ReconUNetConfig, data["recon"])
        kw["seg"] = config_from_dict(SegUNetConfig, data["seg"])
        return cls(**kw)


class Prediction(NamedTuple):
    """Result of :meth:`DiffusionAD.predict` (images in [0, 1] pixel space).

    Fields: ``anomaly_map`` M (B, 1, H, W) in [0, 1]; ``score`` (B,) mean of the top-k values of M;
    ``reconstruction`` x0_g (B, 3, H, W); ``x0_small`` and ``x0_big`` the plain one-step estimates
    (all three at the input's own exposure, also with ``input_norm="gain"``).
    """

    anomaly_map: Tensor
    score: Tensor
    reconstruction: Tensor
    x0_small: Tensor
    x0_big: Tensor


def image_scores(anomaly_map: Tensor, top_k: int = PAPER_INFERENCE.top_k) -> Tensor:
    """Image-level score: the mean of the ``top_k`` largest values of each map (B, 1, H, W) -> (B,).

    If a map has fewer than ``top_k`` pixels, all of them are averaged.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    flat = anomaly_map.flatten(1)
    k = min(top_k, flat.shape[1])
    return flat.topk(k, dim=1).values.float().mean(dim=1)


class DiffusionAD(nn.Module):
    """Reconstruction UNet eps_theta + segmentation UNet + noise schedule (DiffusionAD, paper Fig. 2)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = ReconUNet(config.recon)
        self.segnet = SegUNet(config.seg)
        self.schedule = NoiseSchedule(config.num_train_timesteps, config.beta_schedule)  # type: ignore[arg-type]
        #: decision thresholds from held-out normal images (diffad_core.calibration), or None
        self.calibration: Optional[dict[str, Any]] = None
        #: what the model was trained on (category, data_root, dataset, kind), or None
        self.provenance: Optional[dict[str, str]] = None

    @classmethod
    def from_preset(
        cls,
        preset: str = "tiny",
        *,
        image_size: int = 256,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        pixel_range: str = "unit",
        input_norm: str = "none",
        recon_overrides: Optional[dict[str, Any]] = None,
        seg_overrides: Optional[dict[str, Any]] = None,
    ) -> "DiffusionAD":
        """Build both networks from the named preset ("tiny", "small", "paper") at ``image_size``."""
        recon = ReconUNet.from_preset(preset, image_size=image_size, **(recon_overrides or {})).config
        seg = SegUNet.from_preset(preset, image_size=image_size, **(seg_overrides or {})).config
        config = ModelConfig(recon, seg, num_train_timesteps, beta_schedule, pixel_range, preset, input_norm)
        return cls(config)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---------------------------------------------------------------- pixel range
    def input_gain(self, images: Tensor) -> Optional[Tensor]:
        """Per-image gain (B, 1, 1, 1) of ``input_norm="gain"`` for images in [0, 1]; None for ``"none"``."""
        if self.config.input_norm != "gain":
            return None
        return GAIN_TARGET / images.mean(dim=(1, 2, 3), keepdim=True).clamp_min(_GAIN_FLOOR)

    def to_model_space(self, images: Tensor) -> Tensor:
        """Map images in [0, 1] to the networks' input: each image times its gain for
        ``input_norm="gain"``, then the pixel range (identity for ``"none"`` and ``"unit"``)."""
        gain = self.input_gain(images)
        if gain is not None:
            images = images * gain
        return images if self.config.pixel_range == "unit" else images * 2.0 - 1.0

    def to_image_space(self, x: Tensor, gain: Optional[Tensor] = None) -> Tensor:
        """Map model-space tensors back to [0, 1] for display (clamped); ``gain``
        (:meth:`input_gain` of the input images) undoes ``input_norm="gain"``, else the result
        stays at the normalised exposure."""
        out = x if self.config.pixel_range == "unit" else (x + 1.0) / 2.0
        if gain is not None:
            out = out / gain.to(out.dtype)
        return out.clamp(0.0, 1.0)

    # ---------------------------------------------------------------- method
    def _check_images(self, images: Tensor) -> None:
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be (B, 3, H, W), got {shape}")
        if not torch.is_floating_point(images):
            raise ValueError(f"images have integer dtype {images.dtype}; pass floats in [0, 1] (x.float() / 255)")
        size = self.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} but the model was built for {size} x {size}; "
                f"resize them (the dataset readers take image_size={size})"
            )

    def reconstruct(
        self,
        images: Tensor,
        *,
        t_s: int = PAPER_INFERENCE.t_s,
        t_b: int = PAPER_INFERENCE.t_b,
        w: float = PAPER_INFERENCE.w,
        generator: Optional[torch.Generator] = None,
        noise_s: Optional[Tensor] = None,
        noise_b: Optional[Tensor] = None,
        unet: Optional[Any] = None,
    ) -> Reconstruction:
        """Norm-guided reconstruction of images in [0, 1]; the result is in *model* space.

        ``unet`` replaces ``self.unet`` for the two passes (e.g. a compiled one,
        :func:`diffad_core.runtime.compile_networks`).
        """
        self._check_images(images)
        x = self.to_model_space(images)
        if generator is not None and noise_s is None:
            noise_s = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if generator is not None and noise_b is None:
            noise_b = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return reconstruct(unet or self.unet, self.schedule, x, t_s, t_b, w, noise_s, noise_b)

    def segment(self, images: Tensor, x0_guided: Tensor, *, segnet: Optional[Any] = None) -> Tensor:
        """Anomaly map M = SegNet(concat(x, x0_g)) (B, 1, H, W) in [0, 1]."""
        x = self.to_model_space(images)
        return (segnet or self.segnet)(torch.cat([x, x0_guided.to(x.dtype)], dim=1))

    @torch.no_grad()
    def predict(
        self,
        images: Tensor,
        *,
        t_s: int = PAPER_INFERENCE.t_s,
        t_b: int = PAPER_INFERENCE.t_b,
        w: float = PAPER_INFERENCE.w,
        top_k: int = PAPER_INFERENCE.top_k,
        generator: Optional[torch.Generator] = None,
        bf16_unet: bool = False,
        nets: Optional[Networks] = None,
    ) -> Prediction:
        """Anomaly maps and image scores for images (B, 3, H, W) in [0, 1] (paper defaults).

        ``bf16_unet`` runs the two UNet passes under bfloat16 autocast; the SegNet, the map and the
        score are always computed in float32 from a float32 x0_g. ``nets`` replaces the model's
        own networks (compiled ones from :func:`diffad_core.runtime.compile_networks`).
        """
        nets = nets or Networks(self.unet, self.segnet)
        with autocast(bf16_unet, images.device):
            rec = self.reconstruct(images, t_s=t_s, t_b=t_b, w=w, generator=generator, unet=nets.unet)
        x0_guided = rec.x0_guided.float()
        amap = self.segment(images, x0_guided, segnet=nets.segnet).float()
        gain = self.input_gain(images)
        return Prediction(
            amap,
            image_scores(amap, top_k),
            self.to_image_space(x0_guided, gain),
            self.to_image_space(rec.x0_small.float(), gain),
            self.to_image_space(rec.x0_big.float(), gain),
        )

    def loss(self, images_aug: Tensor, mask: Tensor, label: Tensor, **kwargs: Any) -> LossOutput:
        """The joint training loss (:func:`diffad_core.losses.diffusionad_loss`) on images in [0, 1]
        (the course computes it on one batch; :func:`diffad_core.fit` calls the function directly)."""
        self._check_images(images_aug)
        return diffusionad_loss(self.unet, self.segnet, self.schedule, self.to_model_space(images_aug), mask, label, **kwargs)
