"""The reconstruction sub-network of DiffusionAD: the noise predictor eps_theta(x_t, t).

:class:`ReconUNet` is a guided-diffusion style UNet that predicts the noise eps added to x_0 at
step t (Zhang et al., arXiv 2303.08730, Sec. 3). The one-step and norm-guided reconstructions
(``schedule.py``, ``reconstruction.py``) are computed from its output. Its architecture is a
frozen, typed :class:`ReconUNetConfig`, kept on the model as ``.config``.

Named presets (``RECON_PRESETS``; build with ``ReconUNet.from_preset(name, image_size=...,
**overrides)``). Cost of one training-mode forward + backward, float32: batch 8 at 64 x 64 for
tiny/small, batch 1 at 256 x 256 for paper; GFLOP from ``torch.utils.flop_counter``, time the
best of a few runs on 2 shared CPU cores (torch 2.13), an order of magnitude only. A
DiffusionAD training step runs the ReconUNet twice (t_s, t_b) and the SegUNet once.

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

The presets keep attention at the same *levels* whatever ``image_size`` is (the paper preset
puts it at the 1/8, 1/16 and 1/32 maps, i.e. 32, 16 and 8 px for a 256 input).

Notation: x_t the noised image at step t (integer, 0 <= t < T; t = 0 is one noising step),
eps_theta(x_t, t) the predicted noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .blocks import (
    NORM_GROUPS,
    _as_tuple,
    _AttentionBlock,
    _check_bool,
    _check_int_tuple,
    _check_positive_int,
    _Downsample,
    _from_preset,
    _GroupNorm32,
    _is_int,
    _level_sizes,
    _ResBlock,
    _Stage,
    _Upsample,
    _zero,
    timestep_embedding,
)

__all__ = ["RECON_PRESETS", "ReconUNet", "ReconUNetConfig"]


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
