"""Seeded generators and tiny images shared by test_perlin, test_textures and test_synthesis."""

from __future__ import annotations

import math

import torch
from PIL import Image


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def disc_images(batch: int = 8, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Coloured discs with stripes on a dark background, and the disc as (B, 1, H, W) mask."""
    g = seeded(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.3 * size) ** 2).float()
    colour = torch.rand(batch, 3, 1, 1, generator=g) * 0.5 + 0.4
    stripes = 0.1 * torch.sin(xx / 2.0)[None, None]
    images = 0.05 * (1 - disc) + (colour + stripes).clamp(0, 1) * disc
    return images, disc[None, None].expand(batch, 1, size, size).clone()


def write_pngs(folder, colours, size=(20, 16)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(colours):
        Image.new("RGB", size, colour).save(folder / f"tex{i}.png")


def old_rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """The hand-written rotation used before kornia's (issue 12), kept as the tests' reference."""
    batch, _, height, width = images.shape
    rad = degrees.float() * (math.pi / 180.0)
    cos, sin = rad.cos()[:, None, None], rad.sin()[:, None, None]
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    ys = torch.arange(height, dtype=torch.float32)[None, :, None] - cy
    xs = torch.arange(width, dtype=torch.float32)[None, None, :] - cx
    grid = torch.stack([(cos * xs - sin * ys) / max(cx, 0.5), (sin * xs + cos * ys) / max(cy, 0.5)], -1)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
