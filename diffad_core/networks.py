"""The two networks of DiffusionAD: the noise predictor eps_theta and the segmentation net.

DiffusionAD (Zhang et al., arXiv 2303.08730, Sec. 3) joins two sub-networks:

* :class:`ReconUNet`, the *reconstruction sub-network*: a guided-diffusion style UNet
  eps_theta(x_t, t) that predicts the noise eps added to x_0 at step t. The one-step and
  norm-guided reconstructions (``schedule.py``) are computed from its output.
* :class:`SegUNet`, the *segmentation sub-network*: a DRAEM-style discriminative UNet that
  maps concat(x, x0_g), shape (B, 6, H, W), to an anomaly map M in [0, 1], shape (B, 1, H, W).

Both are built from a frozen, typed config (:class:`ReconUNetConfig`, :class:`SegUNetConfig`)
that the model keeps as ``.config``; :func:`config_to_dict` / :func:`config_from_dict` turn a
config into JSON-safe data and back, so a checkpoint can carry the architecture it needs.

Named presets (``RECON_PRESETS``, ``SEG_PRESETS``; build with ``ReconUNet.from_preset(name,
image_size=..., **overrides)``). Cost of one training-mode forward + backward, float32: batch 8
at 64 x 64 for tiny/small, batch 1 at 256 x 256 for paper; GFLOP from
``torch.utils.flop_counter``, time the best of a few runs on 2 shared CPU cores (torch 2.13),
an order of magnitude only. A DiffusionAD training step runs the ReconUNet twice (t_s, t_b)
and the SegUNet once.

======  ===========================================================  ========  ====== =======
preset  ReconUNet (eps_theta)                                        params    GFLOP  CPU s
======  ===========================================================  ========  ====== =======
paper   base 128, mult (1,1,2,2,4,4), 2 res blocks, attention at     131.65 M  1689    ~23
        the 32/16/8 px maps of a 256 input (downsampling 8, 16,
        32), 4 heads, no dropout, BigGAN up/down ResBlocks; the
        released network (paper: 131.7 M)
small   base 32, mult (1,2,4,4), 2 res blocks, attention at the        7.27 M   128    ~1.5
        two lowest levels (downsampling 4, 8), 4 heads
tiny    base 32, mult (1,1,2), 1 res block, attention at the           0.90 M    36    ~0.45
        lowest level only (downsampling 4), 2 heads
======  ===========================================================  ========  ====== =======

======  ===========================================================  ========  ====== =======
preset  SegUNet (segmentation)                                       params    GFLOP  CPU s
======  ===========================================================  ========  ====== =======
paper   base 64, widths base x (1,2,4,8,8,8); the released            28.37 M   228    ~2.1
        network (paper: 28.4 M)
small   base 32, same widths                                           7.10 M    29    ~0.33
tiny    base 16, same widths                                           1.78 M     7    ~0.11
======  ===========================================================  ========  ====== =======

The presets keep attention at the same *levels* whatever ``image_size`` is (the paper preset
puts it at the 1/8, 1/16 and 1/32 maps, i.e. 32, 16 and 8 px for a 256 input).

Notation: x_t the noised image at step t (integer, 0 <= t < T; t = 0 is one noising step),
eps_theta(x_t, t) the predicted noise, x0_g the norm-guided reconstruction, M the anomaly map.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "RECON_PRESETS",
    "SEG_PRESETS",
    "ReconUNet",
    "ReconUNetConfig",
    "SegUNet",
    "SegUNetConfig",
    "config_from_dict",
    "config_to_dict",
    "count_parameters",
    "timestep_embedding",
]

#: Number of groups of every GroupNorm in the ReconUNet (guided-diffusion's GroupNorm32).
NORM_GROUPS = 32


# --------------------------------------------------------------------------------------------
# Configs
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


@dataclass(frozen=True)
class ReconUNetConfig:
    """Architecture of the reconstruction UNet eps_theta (guided-diffusion style).

    The defaults are the paper's released network (131.7 M parameters at 256 x 256).

    Attributes:
        image_size: the design input size H = W. It fixes where attention sits (see
            ``attention_resolutions``); any input whose sides are divisible by
            2 ** (len(channel_mult) - 1) runs. Must itself be divisible by that factor.
        in_channels: C of x_t; the output eps_theta has the same C.
        base_channels: width of the first level; level i has base_channels * channel_mult[i]
            channels. All widths must be multiples of 32 (GroupNorm with 32 groups).
        channel_mult: width multiplier per level; len(channel_mult) levels, each but the last
            followed by a 2x downsampling.
        num_res_blocks: ResBlocks per level on the way down (the way up has one more, as in
            guided-diffusion, to consume the extra skip).
        attention_resolutions: feature-map sizes (in pixels, for an input of ``image_size``)
            that get a self-attention block after each ResBlock. Interpreted as in
            guided-diffusion: the downsampling factor ds = image_size // res, so 32 at
            image_size 256 is the 1/8 level. Each ds must be a level's factor 2 ** i.
            The middle block always has attention.
        num_heads: attention heads (used when ``num_head_channels == -1``).
        num_head_channels: channels per head; -1 means "use num_heads heads" (released: -1).
        dropout: dropout probability inside ResBlocks (released: 0).
        resblock_updown: BigGAN-style resampling: down/up-sampling done by a ResBlock that
            average-pools / nearest-upsamples inside (True, released). False uses a strided
            3x3 conv down and nearest + 3x3 conv up.
        use_scale_shift_norm: FiLM-style time conditioning, GroupNorm(h) * (1 + s) + b with
            (s, b) from the time embedding (guided-diffusion option). False (released): the
            time embedding is added after the first conv.
        use_checkpoint: recompute ResBlock/attention activations in the backward pass
            (``torch.utils.checkpoint``, non-reentrant) while training: same outputs and
            gradients, less memory, ~30 % more compute. Not part of the weights.
    """

    image_size: int = 256
    in_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    num_heads: int = 4
    num_head_channels: int = -1
    dropout: float = 0.0
    resblock_updown: bool = True
    use_scale_shift_norm: bool = False
    use_checkpoint: bool = False

    def __post_init__(self) -> None:
        name = type(self).__name__
        _as_tuple(self, "channel_mult")
        _as_tuple(self, "attention_resolutions")
        for field_name in ("image_size", "in_channels", "base_channels", "num_res_blocks",
                           "num_heads"):
            _check_positive_int(name, field_name, getattr(self, field_name))
        _check_int_tuple(name, "channel_mult", self.channel_mult)
        if not all(_is_int(r) and r >= 1 for r in self.attention_resolutions):
            raise ValueError(f"{name}.attention_resolutions must be positive integers (pixel "
                             f"sizes of feature maps); got {self.attention_resolutions!r}.")
        for field_name in ("resblock_updown", "use_scale_shift_norm", "use_checkpoint"):
            _check_bool(name, field_name, getattr(self, field_name))
        if not (_is_int(self.num_head_channels)
                and (self.num_head_channels == -1 or self.num_head_channels >= 1)):
            raise ValueError(f"{name}.num_head_channels must be -1 (use num_heads) or a "
                             f"positive integer; got {self.num_head_channels!r}.")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}.dropout must be a probability in [0, 1); "
                             f"got {self.dropout!r}.")
        widths = [self.base_channels * m for m in self.channel_mult]
        if any(w % NORM_GROUPS for w in widths):
            raise ValueError(
                f"{name}: every level width base_channels * channel_mult must be a multiple of "
                f"{NORM_GROUPS} (GroupNorm groups); base_channels={self.base_channels} x "
                f"channel_mult={self.channel_mult} gives {widths}. Use a base_channels that is a "
                f"multiple of {NORM_GROUPS}.")
        factor = self.size_factor
        if self.image_size % factor:
            raise ValueError(
                f"{name}: image_size={self.image_size} must be divisible by "
                f"2 ** (len(channel_mult) - 1) = {factor} ({len(self.channel_mult)} levels); "
                f"use e.g. {max(factor, round(self.image_size / factor) * factor)}.")
        valid = [self.image_size // 2 ** i for i in range(len(self.channel_mult))]
        bad = [r for r in self.attention_resolutions if r not in valid]
        if bad:
            raise ValueError(
                f"{name}: attention_resolutions {bad} are not feature-map sizes of this network "
                f"at image_size={self.image_size}; valid sizes are {valid}.")
        for ds in (*self.attention_downsample_factors, factor):  # factor: the middle block
            width = widths[int(math.log2(ds))]
            heads = self.heads_for(width)
            if width % heads or (self.num_head_channels != -1
                                 and width % self.num_head_channels):
                raise ValueError(
                    f"{name}: attention width {width} (at downsampling {ds}) is not divisible "
                    f"into heads (num_heads={self.num_heads}, "
                    f"num_head_channels={self.num_head_channels}); pick values that divide it.")

    @property
    def size_factor(self) -> int:
        """2 ** (number of downsamplings): input sides must be multiples of it."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def attention_downsample_factors(self) -> tuple[int, ...]:
        """ds = image_size // res for each attention resolution (1 = full resolution)."""
        return tuple(sorted({self.image_size // r for r in self.attention_resolutions}))

    @property
    def time_embed_dim(self) -> int:
        """Width of the timestep embedding after the MLP: 4 * base_channels."""
        return 4 * self.base_channels

    def heads_for(self, width: int) -> int:
        """Number of attention heads used in a block of ``width`` channels."""
        if self.num_head_channels == -1:
            return self.num_heads
        return max(1, width // self.num_head_channels)

    @classmethod
    def from_preset(cls, name: str = "paper", image_size: int = 256,
                    **overrides: Any) -> ReconUNetConfig:
        """The named preset (``RECON_PRESETS``) at ``image_size``, with fields overridden."""
        return _from_preset(cls, RECON_PRESETS, "ReconUNet", name, image_size, overrides)


@dataclass(frozen=True)
class SegUNetConfig:
    """Architecture of the segmentation UNet (DRAEM's discriminative sub-network).

    The defaults are the paper's released network (28.4 M parameters).

    Attributes:
        image_size: the design input size H = W (the network is fully convolutional; any
            input with sides divisible by 2 ** (len(channel_mult) - 1) runs).
            Must itself be divisible by that factor (32 for the released 6 blocks).
        in_channels: 6 in DiffusionAD: the input x and its reconstruction x0_g, concatenated.
        out_channels: 1: the anomaly map M.
        base_channels: width of the first encoder block.
        channel_mult: encoder block widths as multiples of base_channels; a 2x max-pool
            between consecutive blocks. Released: (1, 2, 4, 8, 8, 8).
    """

    image_size: int = 256
    in_channels: int = 6
    out_channels: int = 1
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4, 8, 8, 8)

    def __post_init__(self) -> None:
        name = type(self).__name__
        _as_tuple(self, "channel_mult")
        for field_name in ("image_size", "in_channels", "out_channels", "base_channels"):
            _check_positive_int(name, field_name, getattr(self, field_name))
        _check_int_tuple(name, "channel_mult", self.channel_mult)
        factor = self.size_factor
        if self.image_size % factor:
            raise ValueError(
                f"{name}: image_size={self.image_size} must be divisible by "
                f"2 ** (len(channel_mult) - 1) = {factor} ({len(self.channel_mult)} encoder "
                f"blocks); use e.g. {max(factor, round(self.image_size / factor) * factor)}.")

    @property
    def size_factor(self) -> int:
        """2 ** (number of max-pools): input sides must be multiples of it."""
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def from_preset(cls, name: str = "paper", image_size: int = 256,
                    **overrides: Any) -> SegUNetConfig:
        """The named preset (``SEG_PRESETS``) at ``image_size``, with fields overridden."""
        return _from_preset(cls, SEG_PRESETS, "SegUNet", name, image_size, overrides)


ConfigT = TypeVar("ConfigT", ReconUNetConfig, SegUNetConfig)


def _level_sizes(image_size: int, factors: tuple[int, ...]) -> tuple[int, ...]:
    """Feature-map sizes (px) of the levels with downsampling ``factors`` at ``image_size``."""
    return tuple(max(1, image_size // f) for f in factors)


def _recon_paper(image_size: int) -> ReconUNetConfig:
    return ReconUNetConfig(image_size=image_size, base_channels=128,
                           channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                           attention_resolutions=_level_sizes(image_size, (8, 16, 32)),
                           num_heads=4, num_head_channels=-1, dropout=0.0,
                           resblock_updown=True, use_scale_shift_norm=False)


def _recon_small(image_size: int) -> ReconUNetConfig:
    return ReconUNetConfig(image_size=image_size, base_channels=32, channel_mult=(1, 2, 4, 4),
                           num_res_blocks=2, attention_resolutions=_level_sizes(image_size, (4, 8)),
                           num_heads=4, num_head_channels=-1, dropout=0.0,
                           resblock_updown=True, use_scale_shift_norm=False)


def _recon_tiny(image_size: int) -> ReconUNetConfig:
    return ReconUNetConfig(image_size=image_size, base_channels=32, channel_mult=(1, 1, 2),
                           num_res_blocks=1, attention_resolutions=_level_sizes(image_size, (4,)),
                           num_heads=2, num_head_channels=-1, dropout=0.0,
                           resblock_updown=True, use_scale_shift_norm=False)


#: name -> factory(image_size) of a :class:`ReconUNetConfig` (table in the module docstring).
RECON_PRESETS: dict[str, Callable[[int], ReconUNetConfig]] = {
    "paper": _recon_paper,
    "small": _recon_small,
    "tiny": _recon_tiny,
}

#: name -> factory(image_size) of a :class:`SegUNetConfig` (table in the module docstring).
SEG_PRESETS: dict[str, Callable[[int], SegUNetConfig]] = {
    "paper": lambda image_size: SegUNetConfig(image_size=image_size, base_channels=64),
    "small": lambda image_size: SegUNetConfig(image_size=image_size, base_channels=32),
    "tiny": lambda image_size: SegUNetConfig(image_size=image_size, base_channels=16),
}


def _from_preset(cls: type[ConfigT], presets: Mapping[str, Callable[[int], ConfigT]],
                 net_name: str, name: str, image_size: int,
                 overrides: Mapping[str, Any]) -> ConfigT:
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


# --------------------------------------------------------------------------------------------
# Reconstruction UNet
# --------------------------------------------------------------------------------------------


class ReconUNet(nn.Module):
    """Noise predictor eps_theta(x_t, t) of DiffusionAD's reconstruction sub-network.

    Layout (guided-diffusion UNet, as released): t -> sinusoidal(base) -> Linear -> SiLU ->
    Linear (4 * base); input 3x3 conv; per level ``num_res_blocks`` ResBlocks (+ attention
    at the listed resolutions) then a downsampling ResBlock; middle ResBlock, attention,
    ResBlock; per level ``num_res_blocks + 1`` ResBlocks on concat(h, skip) (+ attention) then
    an upsampling ResBlock; GroupNorm, SiLU and a zero-initialised 3x3 conv to C channels.
    Every residual branch ends in a zero-initialised conv, so at initialisation
    eps_theta(x_t, t) = 0 exactly.

    Example:
        >>> net = ReconUNet.from_preset("tiny", image_size=32)
        >>> net(torch.zeros(2, 3, 32, 32), torch.tensor([0, 999])).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, config: ReconUNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else ReconUNetConfig()
        if not isinstance(config, ReconUNetConfig):
            raise ValueError(f"ReconUNet needs a ReconUNetConfig; got {type(config).__name__} "
                             f"(use config_from_dict(ReconUNetConfig, d) for a dict).")
        base, emb_dim = config.base_channels, config.time_embed_dim
        attention_ds = set(config.attention_downsample_factors)

        def res_block(c_in: int, c_out: int, resample: str | None = None) -> _ResBlock:
            return _ResBlock(c_in, c_out, emb_dim, config.dropout,
                             use_scale_shift_norm=config.use_scale_shift_norm,
                             resample=resample, use_checkpoint=config.use_checkpoint)

        def attention(c: int) -> _AttentionBlock:
            return _AttentionBlock(c, config.heads_for(c), config.use_checkpoint)

        self.time_embed = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        ch = base * config.channel_mult[0]
        self.input_conv = nn.Conv2d(config.in_channels, ch, 3, padding=1)

        skip_channels = [ch]
        self.down = nn.ModuleList()
        ds = 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                blocks: list[nn.Module] = [res_block(ch, base * mult)]
                ch = base * mult
                if ds in attention_ds:
                    blocks.append(attention(ch))
                self.down.append(_Stage(blocks))
                skip_channels.append(ch)
            if level != len(config.channel_mult) - 1:
                self.down.append(_Stage([res_block(ch, ch, "down") if config.resblock_updown
                                         else _Downsample(ch)]))
                ds *= 2
                skip_channels.append(ch)

        self.middle = _Stage([res_block(ch, ch), attention(ch), res_block(ch, ch)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                blocks = [res_block(ch + skip_channels.pop(), base * mult)]
                ch = base * mult
                if ds in attention_ds:
                    blocks.append(attention(ch))
                if level > 0 and i == config.num_res_blocks:
                    blocks.append(res_block(ch, ch, "up") if config.resblock_updown
                                  else _Upsample(ch))
                    ds //= 2
                self.up.append(_Stage(blocks))

        self.out = nn.Sequential(_GroupNorm32(ch), nn.SiLU(),
                                 _zero(nn.Conv2d(ch, config.in_channels, 3, padding=1)))

    @classmethod
    def from_preset(cls, name: str = "paper", image_size: int = 256,
                    **overrides: Any) -> ReconUNet:
        """Build the named preset (``RECON_PRESETS``: paper, small, tiny) at ``image_size``.

        ``overrides`` replace config fields (e.g. ``use_checkpoint=True``); unknown names
        raise ``ValueError``.
        """
        return cls(ReconUNetConfig.from_preset(name, image_size, **overrides))

    def _check_inputs(self, x_t: Tensor, t: Tensor) -> None:
        cfg = self.config
        if not isinstance(x_t, Tensor) or x_t.ndim != 4:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"ReconUNet expects x_t of shape (B, C, H, W); got {shape}.")
        if x_t.shape[1] != cfg.in_channels:
            raise ValueError(
                f"ReconUNet was built for in_channels={cfg.in_channels} but x_t has "
                f"{x_t.shape[1]} channels (shape {tuple(x_t.shape)}); build it with "
                f"in_channels={x_t.shape[1]} or convert the images.")
        height, width = x_t.shape[-2:]
        if height % cfg.size_factor or width % cfg.size_factor:
            raise ValueError(
                f"ReconUNet input sides must be multiples of {cfg.size_factor} "
                f"(2 ** (len(channel_mult) - 1)); got {height} x {width}. Resize or pad.")
        if not isinstance(t, Tensor) or t.ndim != 1 or t.shape[0] != x_t.shape[0]:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(
                f"ReconUNet expects t as a (B,) = ({x_t.shape[0]},) tensor of steps, one per "
                f"sample; got {shape}. For one step for all, use "
                f"torch.full((B,), t, dtype=torch.long).")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"ReconUNet expects integer steps t (torch.long); got dtype "
                             f"{t.dtype}. Use t.long() for integer-valued steps.")

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Predict the noise: eps_theta(x_t, t).

        Args:
            x_t: (B, C, H, W) noised images; H, W multiples of ``config.size_factor``.
            t: (B,) integer steps, one per sample (0 <= t < T).

        Returns:
            (B, C, H, W) predicted noise, in the dtype of ``x_t`` (also under autocast).
        """
        self._check_inputs(x_t, t)
        first = self.time_embed[0]
        emb = self.time_embed(timestep_embedding(t, first.in_features).to(first.weight.dtype))
        h = self.input_conv(x_t)
        skips = [h]
        for stage in self.down:
            h = stage(h, emb)
            skips.append(h)
        h = self.middle(h, emb)
        for stage in self.up:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h).to(x_t.dtype)


# --------------------------------------------------------------------------------------------
# Segmentation UNet
# --------------------------------------------------------------------------------------------


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn_relu(in_channels, out_channels),
                         *_conv_bn_relu(out_channels, out_channels))


class SegUNet(nn.Module):
    """Segmentation sub-network: anomaly map M = SegNet(concat(x, x0_g)) in [0, 1].

    DRAEM's discriminative UNet, as released: encoder blocks of two (3x3 conv, BatchNorm,
    ReLU) with widths base * channel_mult and a 2x max-pool between; the decoder goes back
    up level by level with bilinear 2x upsampling + (conv, BN, ReLU), concatenates the
    encoder feature of that level and applies two (conv, BN, ReLU); a final 3x3 conv gives
    the logits. Decoder widths follow the released code: the block that returns to encoder
    level k has the width of level k - 1 (level 0 for k = 0). PyTorch's default init (the
    released ``weights_init`` was never applied).

    Example:
        >>> seg = SegUNet.from_preset("tiny", image_size=32)
        >>> seg(torch.rand(2, 6, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, config: SegUNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else SegUNetConfig()
        if not isinstance(config, SegUNetConfig):
            raise ValueError(f"SegUNet needs a SegUNetConfig; got {type(config).__name__} "
                             f"(use config_from_dict(SegUNetConfig, d) for a dict).")
        widths = [config.base_channels * m for m in config.channel_mult]
        self.encoder = nn.ModuleList()
        c_in = config.in_channels
        for w in widths:
            self.encoder.append(_double_conv(c_in, w))
            c_in = w
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        ch = widths[-1]
        for k in reversed(range(len(widths) - 1)):  # return to encoder level k
            out = widths[max(k - 1, 0)]
            self.up.append(nn.Sequential(
                nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=True),
                *_conv_bn_relu(ch, out)))
            self.fuse.append(_double_conv(out + widths[k], out))
            ch = out
        self.head = nn.Conv2d(ch, config.out_channels, 3, padding=1)

    @classmethod
    def from_preset(cls, name: str = "paper", image_size: int = 256,
                    **overrides: Any) -> SegUNet:
        """Build the named preset (``SEG_PRESETS``: paper, small, tiny) at ``image_size``."""
        return cls(SegUNetConfig.from_preset(name, image_size, **overrides))

    def forward_logits(self, x: Tensor) -> Tensor:
        """Pre-sigmoid anomaly logits (for numerically stable losses).

        Args:
            x: (B, in_channels, H, W), in DiffusionAD concat(x, x0_g) with in_channels = 6;
                H, W multiples of ``config.size_factor``.

        Returns:
            (B, out_channels, H, W) logits; M = sigmoid(logits).
        """
        cfg = self.config
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != cfg.in_channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"SegUNet expects input of shape (B, {cfg.in_channels}, H, W) (the image and "
                f"its reconstruction, concatenated on dim 1); got {shape}.")
        height, width = x.shape[-2:]
        if height % cfg.size_factor or width % cfg.size_factor:
            raise ValueError(f"SegUNet input sides must be multiples of {cfg.size_factor}; "
                             f"got {height} x {width}. Resize or pad.")
        features = []
        h = x
        for level, block in enumerate(self.encoder):
            if level:
                h = F.max_pool2d(h, 2)
            h = block(h)
            features.append(h)
        features.pop()  # the deepest feature is h itself
        for up, fuse in zip(self.up, self.fuse, strict=True):
            h = fuse(torch.cat([up(h), features.pop()], dim=1))
        return self.head(h)

    def forward(self, x: Tensor) -> Tensor:
        """Anomaly map M = sigmoid(forward_logits(x)): (B, in_channels, H, W) -> (B, 1, H, W)."""
        return torch.sigmoid(self.forward_logits(x))
