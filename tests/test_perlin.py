"""Tests for diffad_core.perlin: Perlin noise against a slow reference, rotation, anomaly regions (docs/method.md §4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _images import disc_images, old_rotate, seeded
from diffad_core.perlin import perlin_from_angles, perlin_mask, perlin_noise, rotate_images


def slow_perlin(angles: np.ndarray, res: tuple[int, int], height: int, width: int) -> np.ndarray:
    """Classic 2D Perlin noise, one pixel at a time (independent reference)."""
    fade = lambda t: 6 * t**5 - 15 * t**4 + 10 * t**3  # noqa: E731
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            u, v = y * res[0] / height, x * res[1] / width
            i, j = int(math.floor(u)), int(math.floor(v))
            f, g = u - i, v - j
            dots = {}
            for a in (0, 1):
                for b in (0, 1):
                    ang = angles[i + a, j + b]
                    dots[a, b] = math.cos(ang) * (f - a) + math.sin(ang) * (g - b)
            s, t = fade(f), fade(g)
            left = dots[0, 0] * (1 - s) + dots[1, 0] * s
            right = dots[0, 1] * (1 - s) + dots[1, 1] * s
            out[y, x] = math.sqrt(2) * (left * (1 - t) + right * t)
    return out


@pytest.mark.parametrize("res,size", [((1, 1), (8, 8)), ((3, 2), (12, 10)), ((4, 8), (16, 16)), ((5, 3), (13, 7))])
def test_perlin_matches_slow_reference(res, size):
    angles = torch.rand(1, 9, 9, generator=seeded(1), dtype=torch.float64) * 2 * math.pi
    ours = perlin_from_angles(angles, torch.tensor([res]), *size)[0].numpy()
    ref = slow_perlin(angles[0].numpy(), res, *size)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_perlin_hand_computed_value():
    # all gradients (1, 0): n = sqrt(2) * (f - fade(f)) with f the row offset; f = 1/4 at row 1 of 4
    angles = torch.zeros(1, 2, 2)
    noise = perlin_from_angles(angles, torch.tensor([[1, 1]]), 4, 4)[0]
    fade = 6 / 4**5 - 15 / 4**4 + 10 / 4**3
    expected = math.sqrt(2) * (0.25 - fade)
    torch.testing.assert_close(noise[1], torch.full((4,), expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(noise[0], torch.zeros(4))  # lattice row: exactly zero


def test_perlin_noise_shapes_ranges_and_errors():
    res = torch.tensor([[1, 1], [2, 32], [32, 4], [8, 8]])
    noise = perlin_noise(4, 37, 53, res, generator=seeded())
    assert noise.shape == (4, 37, 53) and noise.dtype == torch.float32
    assert noise.abs().max() <= 1.0 + 1e-5
    assert noise.std() > 0.05
    assert perlin_noise(0, 8, 8, torch.zeros(0, 2, dtype=torch.long)).shape == (0, 8, 8)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        perlin_noise(4, 8, 8, torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        perlin_noise(1, 8, 8, torch.ones(1, 2))
    with pytest.raises(ValueError, match=">= 1"):
        perlin_noise(1, 8, 8, torch.zeros(1, 2, dtype=torch.long))


def test_perlin_per_sample_scales_change_frequency():
    # one batch, four resolutions: the mean absolute step along each axis grows with its resolution
    res = torch.tensor([[1, 1], [32, 32], [1, 32], [32, 1]])
    noise = perlin_noise(4, 256, 256, res, generator=seeded(3))
    dy = (noise[:, 1:] - noise[:, :-1]).abs().mean((1, 2))
    dx = (noise[:, :, 1:] - noise[:, :, :-1]).abs().mean((1, 2))
    assert dy[1] > 8 * dy[0] and dx[1] > 8 * dx[0]
    assert dx[2] > 8 * dy[2]  # 32 cells across the columns, 1 down the rows
    assert dy[3] > 8 * dx[3]


def test_perlin_noise_is_reproducible():
    res = torch.full((3, 2), 4)
    a = perlin_noise(3, 16, 16, res, generator=seeded(5))
    b = perlin_noise(3, 16, 16, res, generator=seeded(5))
    c = perlin_noise(3, 16, 16, res, generator=seeded(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_rotate_images_matches_old_implementation():
    for shape in [(3, 3, 16, 16), (3, 1, 12, 21)]:
        x = torch.rand(*shape, generator=seeded())
        angle = torch.tensor([-80.0, 10.0, 45.0])
        torch.testing.assert_close(rotate_images(x, angle), old_rotate(x, angle), atol=1e-4, rtol=0)


def test_rotate_images_cpu_path_equals_kornia_rotate():
    # the CPU path builds the sampling grid in closed form; kornia's rotate is the reference
    from kornia.geometry.transform import rotate

    for shape in [(4, 3, 64, 64), (3, 1, 12, 21), (2, 2, 1, 7)]:
        x = torch.rand(*shape, generator=seeded(3))
        angle = torch.tensor([-89.0, -10.5, 33.0, 90.0])[: shape[0]]
        expected = rotate(x, angle, mode="bilinear", padding_mode="zeros", align_corners=True)
        torch.testing.assert_close(rotate_images(x, angle), expected, atol=2e-5, rtol=0)


def test_rotate_images_by_hand():
    x = torch.rand(2, 1, 9, 9, generator=seeded(2))
    out = rotate_images(x, torch.tensor([0.0, 90.0]))
    torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)
    # +90 degrees is counter-clockwise on screen (y down): torch.rot90 over (H, W)
    torch.testing.assert_close(out[1], torch.rot90(x[1], 1, (1, 2)), atol=1e-5, rtol=0)
    assert rotate_images(torch.zeros(0, 1, 4, 4), torch.zeros(0)).shape == (0, 1, 4, 4)


def test_perlin_mask_rotation_per_sample():
    # one batched call: sample i's region equals the same noise rotated alone by its own angle
    res = torch.tensor([[2, 4], [8, 1], [4, 4]])
    noise = perlin_noise(3, 24, 24, res, generator=seeded(4))[:, None]
    angle = torch.tensor([-90.0, 30.0, 75.0])
    together = rotate_images(noise, angle)
    for i in range(3):
        torch.testing.assert_close(together[i : i + 1], rotate_images(noise[i : i + 1], angle[i : i + 1]))


def test_perlin_mask_inside_foreground_and_non_empty():
    _, fg = disc_images(6, 32)
    fg[5] = 0  # a sample without foreground gets no region
    mask = perlin_mask(fg, generator=seeded())
    assert mask.shape == (6, 1, 32, 32)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask <= fg).all()
    assert (mask[:5].flatten(1).sum(1) > 0).all()
    assert mask[5].sum() == 0


def test_perlin_mask_fallback_disc():
    # the noise never exceeds 1, so every sample falls back to a small disc inside the foreground
    _, fg = disc_images(4, 64)
    mask = perlin_mask(fg, threshold=1.5, max_tries=2, generator=seeded())
    areas = mask.flatten(1).sum(1)
    assert (areas > 0).all() and (mask <= fg).all()
    assert (areas <= math.pi * (64 / 16) ** 2 + 8).all()
