"""Batched Perlin noise and the Perlin anomaly regions of DiffusionAD's training recipe.

The synthetic anomalies of DiffusionAD (docs/method.md §4, DRAEM lineage) live inside a region
drawn from Perlin noise: a smooth random field with a chosen number of lattice cells per axis,
rotated by a random angle and thresholded. This module computes that field for a whole batch at
once, each sample with its own lattice resolution.

How the per-sample frequency works (no loop over samples, no per-scale grouping): one lattice of
random unit gradients of size (R + 1) x (R + 1) is drawn per sample, with R the largest
resolution in the batch; a sample with resolution (r_y, r_x) only uses its top-left
(r_y + 1) x (r_x + 1) corner. Pixel row y is mapped to the lattice coordinate u = y * r_y / H
(columns likewise), so every sample is evaluated on the same pixel grid with its own frequency.
The field is separable per term, so each sample costs two small matrix products
(`perlin_from_angles`) rather than per-pixel gathers.

Canvas size: the released code draws noise on a 256 x 256 canvas (cells of 256 / r pixels).
For H = W = 256 our lattice coordinates are exactly the released ones; for other sizes the
coordinate u = y * r / H is the released field resampled to H x W (same number of blobs per
image), so no canvas, crop or resize is needed and H, W need not be multiples of the period.

The rotation of the noise is kornia's (`rotate_images`; on the CPU kornia's matrices with a
closed-form grid); the noise itself is ours (kornia has no Perlin noise).

Random numbers are drawn on the generator's device (``generator.device``; the images' device
when ``generator`` is None) and then moved, so a CPU ``torch.Generator`` reproduces the same
draws for CPU and CUDA tensors. Only small parameter tensors are drawn, never per-pixel noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_rotation_matrix2d, invert_affine_transform, rotate

__all__ = ["fractal_noise", "perlin_mask", "perlin_noise", "rotate_images"]

Device = torch.device | str | None


# --------------------------------------------------------------------------- random helpers
# Shared by textures.py and synthesis.py: draw on the generator's device, return on `device`.


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    *,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Sample U(low, high) of ``shape`` (float32) with ``generator``, returned on ``device``."""
    u = torch.rand(shape, generator=generator, device=_draw_device(generator, device))
    return (low + (high - low) * u).to(device)


def randint(
    shape: tuple[int, ...],
    low: int,
    high: int,
    *,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Sample integers U{low .. high - 1} of ``shape`` (int64), returned on ``device``."""
    r = torch.randint(low, high, shape, generator=generator, device=_draw_device(generator, device))
    return r.to(device)


def random_permutations(
    batch: int, n: int, *, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """One uniform random permutation of ``range(n)`` per row: (batch, n) int64."""
    keys = torch.rand((batch, n), generator=generator, device=_draw_device(generator, device))
    return keys.argsort(dim=1).to(device)


# --------------------------------------------------------------------------- Perlin noise


def _fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic fade curve 6 t^5 - 15 t^4 + 10 t^3."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _interp_matrices(coord: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse-as-dense interpolation matrices along one axis.

    coord: (B, N) lattice coordinates u. With i = floor(u), f = u - i and t = fade(f), returns
    (B, N, side) matrices ``weight`` (1 - t at column i, t at column i + 1) and ``ramp``
    ((1 - t) * f at column i, t * (f - 1) at column i + 1).
    """
    i = coord.floor()
    f = (coord - i).float()
    i = i.long()
    t = _fade(f)
    idx = torch.stack([i, i + 1], dim=-1)  # (B, N, 2)
    zeros = torch.zeros(*coord.shape, side, device=coord.device)
    weight = zeros.scatter(-1, idx, torch.stack([1.0 - t, t], dim=-1))
    ramp = zeros.scatter(-1, idx, torch.stack([(1.0 - t) * f, t * (f - 1.0)], dim=-1))
    return weight, ramp


def perlin_from_angles(
    angles: torch.Tensor, res: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Evaluate Perlin noise from given gradient angles (the deterministic part of `perlin_noise`).

    Classic 2D Perlin noise at pixel (y, x) with lattice coordinates u = y * r_y / H,
    v = x * r_x / W, cell (i, j) = (floor u, floor v), offsets (f, g) = (u - i, v - j) and fade
    weights s = fade(f), t = fade(g) is

        n = sum over corners (a, b) in {0, 1}^2 of  w_a(s) w_b(t) [G_row[i+a, j+b] (f - a) + G_col[i+a, j+b] (g - b)]

    with w_0(s) = 1 - s, w_1(s) = s and unit gradients G = (cos, sin) of the angles. Both terms
    are separable in (y, x), so for each sample the whole field is two small matrix products,
    n = Ramp_y G_row Weight_x^T + Weight_y G_col Ramp_x^T, with (H, L) and (W, L) interpolation
    matrices that have two non-zeros per row: no per-pixel gathers.

    Args:
        angles: (B, L, L) gradient angles in radians at the lattice points, L >= max(res) + 1;
            lattice point (i, j) has unit gradient (cos, sin) dotted with the (row, column) offset.
        res: (B, 2) int lattice cells per axis (rows r_y, columns r_x), each >= 1.
        height, width: output size H, W.

    Returns:
        (B, H, W) float32 noise in [-1, 1] (sqrt(2) times classic 2D Perlin noise, as released);
        exactly 0 at lattice points.
    """
    side = angles.shape[1]
    device = angles.device
    res = res.to(device)
    ys = torch.arange(height, device=device, dtype=torch.float64)
    xs = torch.arange(width, device=device, dtype=torch.float64)
    weight_y, ramp_y = _interp_matrices(ys[None, :] * res[:, 0:1].double() / height, side)  # (B, H, L)
    weight_x, ramp_x = _interp_matrices(xs[None, :] * res[:, 1:2].double() / width, side)  # (B, W, L)
    angles = angles.float()
    rows = ramp_y @ angles.cos() @ weight_x.transpose(1, 2)
    cols = weight_y @ angles.sin() @ ramp_x.transpose(1, 2)
    return math.sqrt(2.0) * (rows + cols)


def perlin_noise(
    batch: int,
    height: int,
    width: int,
    res: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    device: Device = None,
) -> torch.Tensor:
    """Sample a batch of 2D Perlin noise fields, each with its own lattice resolution.

    The released recipe uses res = (2**a, 2**b) with a, b ~ U{0..5}: 1 to 32 cells per axis.
    See the module docstring for how per-sample frequencies and image sizes are handled.

    Args:
        batch: B, must equal ``res.shape[0]``.
        height, width: output size H, W (any positive size).
        res: (B, 2) integer tensor of lattice cells per axis (rows, columns), each >= 1.
        generator: optional ``torch.Generator`` (draws happen on its device).
        device: device of the result (default: ``res.device``).

    Returns:
        (B, H, W) float32 noise with values in [-1, 1].
    """
    res = torch.as_tensor(res)
    if res.dtype.is_floating_point or res.dtype == torch.bool:
        raise ValueError(f"res must be an integer tensor, got dtype {res.dtype}")
    if res.shape != (batch, 2):
        raise ValueError(f"res must have shape ({batch}, 2) (rows, columns per sample), got {tuple(res.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height} x {width}")
    out_device = torch.device(device) if device is not None else res.device
    if batch == 0:
        return torch.zeros(0, height, width, device=out_device)
    if int(res.min()) < 1:
        raise ValueError(f"every lattice resolution must be >= 1, got min {int(res.min())}")
    side = int(res.max()) + 1
    angles = uniform((batch, side, side), 0.0, 2.0 * math.pi, generator=generator, device=out_device)
    return perlin_from_angles(angles, res.to(out_device), height, width)


def fractal_noise(
    batch: int,
    height: int,
    width: int,
    res: torch.Tensor,
    *,
    octaves: int = 4,
    persistence: float = 0.5,
    generator: torch.Generator | None = None,
    device: Device = None,
) -> torch.Tensor:
    """Sum of ``octaves`` Perlin fields at res, 2 res, 4 res, ... with amplitudes persistence**k.

    Used for procedural textures. Returns (B, H, W) float32, rescaled to [-1, 1] by the sum of
    amplitudes (so the bound holds; typical values are smaller).
    """
    res = torch.as_tensor(res)
    total = torch.zeros(batch, height, width, device=device if device is not None else res.device)
    norm = 0.0
    for k in range(octaves):
        amp = persistence**k
        total += amp * perlin_noise(batch, height, width, res * 2**k, generator=generator, device=total.device)
        norm += amp
    return total / norm


# --------------------------------------------------------------------------- rotation


def rotate_images(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by its own angle (counter-clockwise, in degrees).

    Bilinear interpolation, zeros outside the input (imgaug ``Affine(rotate=...)`` defaults),
    centre ((W - 1) / 2, (H - 1) / 2): ``kornia.geometry.transform.rotate`` in one batched call.
    On the CPU the same transform runs as `_rotate_cpu`: kornia's rotation matrices, a sampling
    grid written in closed form and ``grid_sample``; equal to ``kornia...rotate`` to float
    rounding (tests/test_perlin.py) and ~2.5x faster there, because building the grid with
    ``affine_grid`` and kornia's normalisation costs more than the sampling itself on one thread.

    Args:
        images: (B, C, H, W) floating point.
        degrees: (B,) angles, any device (moved to the images').

    Returns:
        (B, C, H, W), the images' dtype.
    """
    if images.shape[0] == 0:
        return images.clone()
    angle = degrees.to(device=images.device, dtype=images.dtype)
    if images.device.type == "cpu":
        return _rotate_cpu(images, angle)
    return rotate(images, angle, mode="bilinear", padding_mode="zeros", align_corners=True)


def _rotate_cpu(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """kornia's ``rotate(images, angle, align_corners=True)`` with a closed-form sampling grid.

    kornia's matrix M maps source to destination pixels; output pixel p samples M^-1 p, which
    ``grid_sample`` (align_corners=True) wants normalised as 2 q / (size - 1) - 1. M^-1 p is
    affine in (x, y), so the grid is two outer sums instead of a batched matrix product.
    """
    batch, _, height, width = images.shape
    centre = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], dtype=images.dtype).expand(batch, 2)
    matrix = get_rotation_matrix2d(centre, angle, torch.ones_like(centre))
    inverse = invert_affine_transform(matrix[:, :2, :3])  # (B, 2, 3): destination -> source pixels
    sx, sy = 2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)
    xs = torch.arange(width, dtype=images.dtype)
    ys = torch.arange(height, dtype=images.dtype)
    grid = torch.empty(batch, height, width, 2, dtype=images.dtype)
    for k, scale in ((0, sx), (1, sy)):
        a, b, c = (inverse[:, k, j].mul(scale).view(batch, 1, 1) for j in range(3))
        torch.add(a * xs.view(1, 1, width), b * ys.view(1, height, 1) + (c - 1.0), out=grid[..., k])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


# --------------------------------------------------------------------------- anomaly regions


def _fallback_blob(fg: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A small disc around a random foreground pixel, intersected with the foreground.

    fg: (N, H, W) bool with at least one True per sample. Returns (N, H, W) bool, non-empty.
    """
    n, height, width = fg.shape
    device = fg.device
    weights = fg.reshape(n, -1).float().to(_draw_device(generator, device))
    centre = torch.multinomial(weights, 1, generator=generator).to(device).squeeze(1)
    cy, cx = (centre // width).float(), (centre % width).float()
    radius = max(1.0, min(height, width) / 16.0)
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    dist2 = (ys[None, :, None] - cy[:, None, None]) ** 2 + (xs[None, None, :] - cx[:, None, None]) ** 2
    return (dist2 <= radius * radius) & fg


def perlin_mask(
    foreground: torch.Tensor,
    *,
    scale_range: tuple[int, int] = (0, 6),
    threshold: float = 0.5,
    rotate_degrees: float = 90.0,
    max_tries: int = 50,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one binary anomaly region per sample, inside its foreground (docs/method.md §4, step 2).

    Recipe (released code): res = (2**a, 2**b), a, b ~ U{scale_range[0] .. scale_range[1] - 1},
    drawn once per sample; then repeat up to ``max_tries`` times: Perlin noise at res, rotated by
    U(-rotate_degrees, rotate_degrees) degrees (bilinear, zero fill, as imgaug's Affine), region =
    (noise > threshold) AND foreground. Only samples whose region is still empty are redrawn. A
    sample still empty after ``max_tries`` gets a small disc (radius min(H, W) / 16) around a
    random foreground pixel instead (the released code gives up and leaves the sample normal).
    A sample with an empty foreground gets an empty region.

    Args:
        foreground: (B, 1, H, W) foreground mask; pixels > 0.5 count as foreground.
        scale_range: exponent range [low, high) of the lattice resolution 2**a.
        threshold: noise level above which a pixel is in the region.
        rotate_degrees: maximum absolute rotation angle.
        max_tries: redraws for empty regions before the fallback disc.
        generator: optional ``torch.Generator``.

    Returns:
        (B, 1, H, W) float32 mask with values in {0, 1}; non-empty wherever the foreground is.
    """
    if foreground.ndim != 4 or foreground.shape[1] != 1:
        raise ValueError(f"foreground must have shape (B, 1, H, W), got {tuple(foreground.shape)}")
    low, high = scale_range
    if not 0 <= low < high:
        raise ValueError(f"scale_range must satisfy 0 <= low < high, got {scale_range}")
    batch, _, height, width = foreground.shape
    device = foreground.device
    fg = foreground[:, 0] > 0.5
    exponents = randint((batch, 2), low, high, generator=generator, device=device)
    res = 2**exponents
    region = torch.zeros(batch, height, width, dtype=torch.bool, device=device)
    todo = fg.reshape(batch, -1).any(1).nonzero().squeeze(1)
    for _ in range(max_tries):
        if todo.numel() == 0:
            break
        noise = perlin_noise(todo.numel(), height, width, res[todo], generator=generator, device=device)
        angle = uniform((todo.numel(),), -rotate_degrees, rotate_degrees, generator=generator, device=device)
        noise = rotate_images(noise[:, None], angle)[:, 0]
        found = (noise > threshold) & fg.index_select(0, todo)
        region.index_copy_(0, todo, found)
        todo = todo[~found.reshape(todo.numel(), -1).any(1)]
    if todo.numel() > 0:
        region.index_copy_(0, todo, _fallback_blob(fg.index_select(0, todo), generator))
    return region[:, None].float()
