"""The segmentation sub-network of DiffusionAD: anomaly map M from the image and its reconstruction.

:class:`SegUNet` is DRAEM's discriminative UNet, as released: it maps concat(x, x0_g), shape
(B, 6, H, W), to an anomaly map M in [0, 1], shape (B, 1, H, W) (Zhang et al., arXiv
2303.08730, Sec. 3). Its architecture is a frozen, typed :class:`SegUNetConfig`, kept on the
model as ``.config``.

Named presets (``SEG_PRESETS``; build with ``SegUNet.from_preset(name, image_size=...,
**overrides)``), measured as for the ReconUNet presets (see :mod:`diffad_core.networks.recon`):
one training-mode forward + backward, float32, batch 8 at 64 x 64 for tiny/small, batch 1 at
256 x 256 for paper, on 2 shared CPU cores, an order of magnitude only.

======  ===========================================================  ========  ====== =======
preset  SegUNet (segmentation)                                       params    GFLOP  CPU s
======  ===========================================================  ========  ====== =======
paper   base 64, widths base x (1,2,4,8,8,8); the released            28.37 M   228    ~2.1
        network (paper: 28.4 M)
small   base 32, same widths                                           7.10 M    29    ~0.33
tiny    base 16, same widths                                           1.78 M     7    ~0.11
======  ===========================================================  ========  ====== =======

Notation: x the input image, x0_g its norm-guided reconstruction, M the anomaly map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import _as_tuple, _check_int_tuple, _check_positive_int, _from_preset

__all__ = ["SEG_PRESETS", "SegUNet", "SegUNetConfig"]


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


#: name -> factory(image_size) of a :class:`SegUNetConfig` (table in the module docstring).
SEG_PRESETS: dict[str, Callable[[int], SegUNetConfig]] = {
    "paper": lambda image_size: SegUNetConfig(image_size=image_size, base_channels=64),
    "small": lambda image_size: SegUNetConfig(image_size=image_size, base_channels=32),
    "tiny": lambda image_size: SegUNetConfig(image_size=image_size, base_channels=16),
}


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
