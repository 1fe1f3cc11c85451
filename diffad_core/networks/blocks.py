"""Pieces shared by both networks: config checks and conversion, and the UNet's layers.

Config helpers (used by :mod:`.recon` and :mod:`.seg`): field validators that raise
``ValueError`` naming the config class and field, preset lookup with override checking, and
:func:`config_to_dict` / :func:`config_from_dict` for JSON-safe configs inside checkpoints.

Layers of the reconstruction UNet eps_theta (guided-diffusion style): the sinusoidal
:func:`timestep_embedding`, GroupNorm(32) computed in float32, the time-conditioned residual
block, multi-head self-attention, plain up/down sampling, and an activation-checkpointing mixin.
Parameter names (and so ``state_dict`` keys) of these layers are part of the shipped weights.

Notation: x_t the noised image at step t, emb the time embedding of t (B, E).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:  # type hints only: recon.py and seg.py import this module
    from .recon import ReconUNetConfig
    from .seg import SegUNetConfig

__all__ = ["NORM_GROUPS", "config_from_dict", "config_to_dict", "count_parameters", "timestep_embedding"]

#: Number of groups of every GroupNorm in the ReconUNet (guided-diffusion's GroupNorm32).
NORM_GROUPS = 32

#: A network config dataclass (ReconUNetConfig or SegUNetConfig).
ConfigT = TypeVar("ConfigT")


# --------------------------------------------------------------------------------------------
# Config helpers
# --------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive_int(cls_name: str, name: str, value: object) -> None:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"{cls_name}.{name} must be a positive integer; got {value!r}.")


def _check_int_tuple(cls_name: str, name: str, value: tuple) -> None:
    if len(value) == 0 or not all(_is_int(v) and v >= 1 for v in value):
        raise ValueError(
            f"{cls_name}.{name} must be a non-empty tuple of positive integers; got {value!r}."
        )


def _check_bool(cls_name: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{cls_name}.{name} must be True or False; got {value!r}.")


def _as_tuple(obj: Any, name: str) -> None:
    """Store a list/tuple field of a frozen dataclass as a tuple (JSON gives lists)."""
    value = getattr(obj, name)
    if isinstance(value, (list, tuple)):
        object.__setattr__(obj, name, tuple(value))
    else:
        raise ValueError(
            f"{type(obj).__name__}.{name} must be a tuple (or list) of integers; got {value!r}."
        )


def _level_sizes(image_size: int, factors: tuple[int, ...]) -> tuple[int, ...]:
    """Feature-map sizes (px) of the levels with downsampling ``factors`` at ``image_size``."""
    return tuple(max(1, image_size // f) for f in factors)


def _from_preset(cls: type[ConfigT], presets: Mapping[str, Callable[[int], ConfigT]],
                 net_name: str, name: str, image_size: int,
                 overrides: Mapping[str, Any]) -> ConfigT:
    """``presets[name](image_size)`` with ``overrides`` applied; unknown names raise."""
    if name not in presets:
        raise ValueError(f"Unknown {net_name} preset {name!r}; valid presets: "
                         f"{', '.join(presets)}.")
    settable = [f.name for f in dataclasses.fields(cls) if f.name != "image_size"]
    unknown = sorted(set(overrides) - set(settable))
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} override(s) {unknown}; valid keys: "
                         f"{', '.join(settable)} (image_size is its own argument).")
    config = presets[name](image_size)
    return dataclasses.replace(config, **overrides) if overrides else config


def config_to_dict(config: ReconUNetConfig | SegUNetConfig) -> dict[str, Any]:
    """JSON-safe dict of a network config (tuples become lists); inverse of config_from_dict."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"config_to_dict expects a config instance (ReconUNetConfig or "
                         f"SegUNetConfig); got {type(config).__name__}.")
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(config).items()}


def config_from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
    """Rebuild a ``cls`` config from :func:`config_to_dict` output (e.g. read from JSON).

    Lists become tuples; keys missing from ``data`` take the class defaults (the paper
    network); unknown keys raise ``ValueError`` (a misspelled key is never ignored).
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"config_from_dict({cls.__name__}, ...) expects a mapping of field "
                         f"names to values; got {type(data).__name__}.")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} key(s) {unknown}; valid keys: "
                         f"{', '.join(names)}. Was this config saved for the other network?")
    return cls(**dict(data))


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (only ``requires_grad`` ones if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------
# Building blocks of the reconstruction UNet
# --------------------------------------------------------------------------------------------


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of integer diffusion steps (Transformer positional encoding).

    emb(t) = [sin(t w_0), ..., sin(t w_{d/2-1}), cos(t w_0), ..., cos(t w_{d/2-1})] with
    w_i = max_period ** (-i / (d/2)) (the released code's order: sines first).

    Args:
        t: (B,) steps (any integer or float dtype).
        dim: d, even.
        max_period: the longest wavelength.

    Returns:
        (B, dim) float32 embedding.
    """
    if dim % 2:
        raise ValueError(f"timestep_embedding needs an even dim; got {dim}.")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def _zero(module: nn.Module) -> nn.Module:
    """Zero all parameters of ``module`` (so a residual branch starts as the identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) computed in float32 and cast back (stable under bf16/fp16)."""

    def __init__(self, channels: int) -> None:
        super().__init__(NORM_GROUPS, channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                           self.eps)
        return out.to(x.dtype)


def _resample(x: Tensor, mode: str | None) -> Tensor:
    if mode == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return x


class _CheckpointMixin(nn.Module):
    """Run ``_forward`` under activation checkpointing when enabled and training."""

    use_checkpoint: bool = False

    def forward(self, *args: Tensor) -> Tensor:
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, *args, use_reentrant=False)
        return self._forward(*args)

    def _forward(self, *args: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class _ResBlock(_CheckpointMixin):
    """Residual block conditioned on the time embedding (optionally resampling by 2).

    h = Conv3x3(SiLU(GN(x)));  h = h + Linear(SiLU(emb))  (or GN(h) * (1 + s) + b);
    out = skip(x) + ZeroConv3x3(Dropout(SiLU(GN(h)))). With ``resample`` the map is
    average-pooled / nearest-upsampled between the first norm and conv, on both branches.
    x: (B, C_in, H, W), emb: (B, E) -> (B, C_out, H', W').
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float, *,
                 use_scale_shift_norm: bool, resample: str | None = None,
                 use_checkpoint: bool = False) -> None:
        super().__init__()
        self.resample = resample
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_norm = _GroupNorm32(in_channels)
        self.in_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels if use_scale_shift_norm
                                  else out_channels)
        self.out_norm = _GroupNorm32(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, 1))

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = F.silu(self.in_norm(x))
        h = self.in_conv(_resample(h, self.resample))
        x = _resample(x, self.resample)
        e = self.emb_proj(F.silu(emb)).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(x) + h


class _AttentionBlock(_CheckpointMixin):
    """Multi-head self-attention over the H*W positions, as a zero-initialised residual.

    qkv = Conv1x1(GN(x)) split per head as [q | k | v] (guided-diffusion's legacy layout);
    a = softmax(q k^T / sqrt(d_head)) v via ``F.scaled_dot_product_attention``;
    out = x + ZeroConv1x1(a). x: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, num_heads: int, use_checkpoint: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.use_checkpoint = use_checkpoint
        self.norm = _GroupNorm32(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = _zero(nn.Conv2d(channels, channels, 1))

    def _forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, self.num_heads, 3, c // self.num_heads,
                                             height * width)
        # (B, heads, HW, d), contiguous: strided q/k/v send SDPA to its unfused math kernel on the
        # CPU, ~3.7x slower than the flash kernel (fwd + bwd at 1024 positions, measured)
        q, k, v = (qkv[:, :, i].transpose(-1, -2).contiguous() for i in range(3))
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(-1, -2).reshape(b, c, height, width)
        return x + self.proj_out(a)


class _Downsample(nn.Module):
    """Strided 3x3 conv (used when resblock_updown=False). (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    """Nearest 2x + 3x3 conv (used when resblock_updown=False). (B,C,H,W) -> (B,C,2H,2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(_resample(x, "up"))


class _Stage(nn.ModuleList):
    """A sequence of blocks that all take (h, emb)."""

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for block in self:
            h = block(h, emb)
        return h
