"""Test-time averaging of the segmentation map over flips and quarter turns (not in the release).

The SegNet sees the pair (x, x0_g) and answers "where do they differ"; that question does not
change when both images are mirrored or turned by 90 degrees, but a network trained for a few
hundred steps answers it with some noise that does. :class:`FlipAveragedSegNet` runs the SegNet on
the pair transformed by the first ``n`` of the eight symmetries of the square (:data:`SYMMETRIES`),
maps each answer back, and averages the maps. The reconstruction x0_g is computed once, so ``n``
SegNet passes are added to the two UNet passes of an image; nothing is trained.

``n`` = 1 is the released inference. The order of :data:`SYMMETRIES` makes ``n`` = 2 the
left-right mirror, 4 the mirrors of both axes (a half turn included) and 8 every symmetry.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["SYMMETRIES", "TTA_CHOICES", "Symmetry", "FlipAveragedSegNet"]


class Symmetry(NamedTuple):
    """A symmetry of the square acting on the last two dimensions, and its inverse."""

    name: str
    apply: Callable[[Tensor], Tensor]
    invert: Callable[[Tensor], Tensor]


def _same(x: Tensor) -> Tensor:
    return x


def _mirror_lr(x: Tensor) -> Tensor:
    return x.flip(-1)


def _mirror_ud(x: Tensor) -> Tensor:
    return x.flip(-2)


def _half_turn(x: Tensor) -> Tensor:
    return x.flip(-2, -1)


def _transpose(x: Tensor) -> Tensor:
    return x.transpose(-2, -1)


def _quarter_turn(x: Tensor) -> Tensor:
    return torch.rot90(x, 1, (-2, -1))


def _three_quarter_turn(x: Tensor) -> Tensor:
    return torch.rot90(x, -1, (-2, -1))


def _anti_transpose(x: Tensor) -> Tensor:
    return x.flip(-2, -1).transpose(-2, -1)


#: The eight symmetries of the square, in the order :class:`FlipAveragedSegNet` takes them.
SYMMETRIES: tuple[Symmetry, ...] = (
    Symmetry("identity", _same, _same),
    Symmetry("mirror left-right", _mirror_lr, _mirror_lr),
    Symmetry("mirror up-down", _mirror_ud, _mirror_ud),
    Symmetry("half turn", _half_turn, _half_turn),
    Symmetry("transpose", _transpose, _transpose),
    Symmetry("quarter turn", _quarter_turn, _three_quarter_turn),
    Symmetry("three-quarter turn", _three_quarter_turn, _quarter_turn),
    Symmetry("anti-transpose", _anti_transpose, _anti_transpose),
)

#: Allowed numbers of averaged symmetries (1: none, the released inference).
TTA_CHOICES = (1, 2, 4, 8)


class FlipAveragedSegNet(nn.Module):
    """``segnet`` averaged over the first ``n`` of :data:`SYMMETRIES` (see the module docstring).

    Called like the SegNet it wraps, on the concatenated pair (B, 6, H, W); returns its map
    (B, 1, H, W). Quarter turns (``n`` = 8) need square inputs.
    """

    def __init__(self, segnet: nn.Module, n: int) -> None:
        super().__init__()
        if n not in TTA_CHOICES:
            raise ValueError(f"the number of averaged flips must be one of {TTA_CHOICES}, got {n}")
        self.segnet = segnet
        self.n = n

    def maps(self, pair: Tensor) -> list[Tensor]:
        """The SegNet's map of ``pair`` under each of the first ``n`` symmetries, mapped back."""
        if self.n > 4 and pair.shape[-2] != pair.shape[-1]:
            raise ValueError(f"quarter turns need square images, got {tuple(pair.shape[-2:])}; use 1, 2 or 4 flips")
        return [s.invert(self.segnet(s.apply(pair))) for s in SYMMETRIES[: self.n]]

    def forward(self, pair: Tensor) -> Tensor:
        if self.n == 1:
            return self.segnet(pair)
        return torch.stack(self.maps(pair)).mean(0)
