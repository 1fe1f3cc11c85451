"""Training-time synthetic anomalies (docs/method.md §4): the released DiffusionAD recipe, batched.

Per sample, independently (released code, DRAEM lineage):

1. with probability 1 - p_anomaly the sample stays normal (label 0, empty mask);
2. otherwise a Perlin region m (`perlin_mask`: scales 2**a x 2**b, a, b ~ U{0..5}, rotated by
   U(-90, 90) degrees, thresholded at 0.5) inside the sample's foreground;
3. an anomaly source: a texture image (texture categories always; object categories with
   probability ``texture_prob_object``) or the image itself ("self-augmentation"), which after
   its augmentations is cut into an 8 x 8 grid whose rows and columns are shuffled;
4. the source gets ``num_augmentations`` distinct augmentations out of `AUGMENTATIONS`;
5. blend with opacity beta ~ U(0.2, 0.8) (released code, as in DRAEM):
   x_aug = x (1 - m) + (1 - beta) src m + beta x m.

Everything runs on whole batches on the images' device (torch + kornia); the only Python loops
are over retries, augmentation slots and the ten operations, never over samples. Parameters are
drawn per sample from the caller's ``torch.Generator`` (never kornia's random modules, which use
the global RNG) and passed to kornia's functional ops as (n,) or (n, 3) tensors.

Who does what:

- from kornia: gamma (``enhance.adjust_gamma``), solarize and posterize (``kornia.enhance``),
  each run on the 256 levels to make a per-sample, per-channel table that `_apply_table`
  applies to the 8-bit image with one gather (kornia's posterize on whole images is ~6x slower
  on the CPU); brightness (``color.rgb_to_ycbcr`` / ``ycbcr_to_rgb`` with
  ``enhance.adjust_brightness_accumulative`` and ``adjust_brightness`` on Y), invert and
  equalize (``kornia.enhance``); the source rotation and the Perlin-region rotation
  (``geometry.transform.rotate``; on the CPU kornia's rotation matrices with a closed-form
  sampling grid, `perlin.rotate_images`); sharpness (``enhance.sharpness``) and hue/saturation
  (``color.rgb_to_hsv``, ``enhance.adjust_hue_raw``, ``color.hsv_to_rgb``) on GPUs;
- ours: the parameter draws, Perlin noise and the region retries (`perlin`), autocontrast with
  PIL's cutoff (kornia's is a plain min-max stretch), the saturation shift (kornia's
  ``adjust_saturation`` multiplies, imgaug adds), the 8-bit rounding in front of kornia's
  equalize (`_levels`), the table lookup (`_apply_table`), the grid shuffle and the texture
  sources (`textures`), the blend; and on the CPU, closed forms of sharpness and
  hue/saturation that equal kornia's to float rounding but run ~20x / ~4x faster there
  (kornia's conv2d and HSV round trip are slow on one CPU thread; tests/test_synthesis.py
  checks both against kornia and PIL/matplotlib).

Differences from the released code (all documented choices):

- Augmentation order: the released code applies its three augmentations in random order; we do
  too, by running ``num_augmentations`` slots, each applying every operation to the samples that
  drew it for that slot. Parameters follow imgaug's defaults used there (see `AUGMENTATIONS`).
  ``MultiplyAndAddToBrightness`` changes the luminance Y of YCbCr only (imgaug picks one of
  several colour spaces at random).
- Grid shuffle: uniform random row and column permutations (the released column shuffle keeps
  the even-indexed columns in the left half); rows/columns beyond 8 * (H // 8) stay in place.
- An empty Perlin region is redrawn up to ``max_tries`` times, then replaced by a small disc in
  the foreground (released: the sample silently stays normal).
- Operations run on float images in [0, 1] (imgaug works on uint8 and rounds after every
  operation); the table operations (gamma, solarize, posterize) and autocontrast and equalize
  first round to the 256 levels k / 255, as the uint8 originals see them (gamma and solarize
  worked on the unrounded floats before: a difference of at most half a level of input). Brightness clips Y to [0, 1] after the
  multiply and after the add, as imgaug's uint8 arithmetic does.
- Texture folders: every image of ``anomaly_source`` (recursively; all 5,640 of DTD) is drawn
  uniformly, decoded on demand (`textures.TextureFolder`, bounded cache); the released code
  also draws uniformly from all of DTD.

Ours, not in the release (off by default, ``shade_prob`` 0): a share ``shade_prob`` of the
anomalous samples gets, instead of the pasted source, a *shade* (`shade_region`): inside a
coarse Perlin region (lattices of 1-4 cells a side), with an edge that fades in over a few
pixels, the surface is optionally smoothed and its brightness and colour shifted. The released anomalies all have the region's hard edge
and a foreign texture; a stain, a worn patch or a change of surface finish has neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import kornia.color as KC
import kornia.enhance as KE
import kornia.filters as KF
import torch

from .perlin import perlin_mask, randint, random_permutations, rotate_images, uniform
from .textures import TextureFolder, procedural_textures, shuffle_grid

__all__ = [
    "AUGMENTATIONS",
    "AnomalySynthesizer",
    "SynthesisConfig",
    "SynthesisOutput",
    "augment_sources",
    "blend_anomaly",
    "shade_region",
]


# --------------------------------------------------------------------------- augmentations
# Each op maps (n, 3, H, W) float32 in [0, 1] to the same, drawing its own per-sample parameters
# (shape (n,) or (n, 3)) from the generator and applying them in one batched call.
Op = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _levels(x: torch.Tensor) -> torch.Tensor:
    """Round x in [0, 1] to the nearest of the 256 levels k / 255 (the uint8 image of x).

    kornia's 8-bit ops (posterize, equalize) truncate x * 255; on exact levels that truncation is
    the identity, so rounding first gives uint8 semantics (round to nearest) for any float input.
    """
    return x.mul(255.0).round_().div_(255.0)


def _ramp(n: int, device: torch.device) -> torch.Tensor:
    """The 256 levels k / 255 as an (n, 3, 1, 256) image: one row per sample and channel."""
    return torch.arange(256, device=device, dtype=torch.float32).div_(255.0).expand(n, 3, 1, 256)


def _level_indices(x: torch.Tensor) -> torch.Tensor:
    """(n, c, H, W) in [0, 1] -> (n, c, H * W) int64 nearest 8-bit level (the uint8 image)."""
    n, c, height, width = x.shape
    return x.mul(255.0).round_().long().reshape(n, c, height * width)


def _apply_table(x: torch.Tensor, table: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
    """Map each pixel's 8-bit level through its sample's and channel's table.

    x: (n, 3, H, W) in [0, 1], rounded to the nearest level k / 255 first (the uint8 image, as
    imgaug sees it); ``levels``: those levels if the caller already has them (`_level_indices`);
    table: (n, 3, 256) or (n, 3, 1, 256) output value of each level. One gather per image, however
    expensive the op that made the table (PIL's ``Image.point`` does the same).
    """
    n, c = x.shape[:2]
    levels = _level_indices(x) if levels is None else levels
    return table.reshape(n, c, 256).gather(2, levels).view_as(x)


def _gamma(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug GammaContrast((0.5, 2.0), per_channel=True): x ** gamma, gamma per channel.

    kornia's ``adjust_gamma`` on the 256 levels makes each sample's table (`_apply_table`).
    """
    gamma = uniform((x.shape[0], 3), 0.5, 2.0, generator=g, device=x.device)
    return _apply_table(x, KE.adjust_gamma(_ramp(x.shape[0], x.device), gamma))


def _brightness(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30)) on YCbCr luminance Y.

    kornia: RGB -> YCbCr, Y * mul (clipped), + add (clipped), YCbCr -> RGB (clipped); Cb and Cr
    are kept, so every channel moves by the change of Y (before the final clip).
    """
    n = x.shape[0]
    mul = uniform((n,), 0.8, 1.2, generator=g, device=x.device)
    add = uniform((n,), -30.0 / 255.0, 30.0 / 255.0, generator=g, device=x.device)
    ycc = KC.rgb_to_ycbcr(x)
    luma = KE.adjust_brightness(KE.adjust_brightness_accumulative(ycc[:, :1], mul), add)
    return KC.ycbcr_to_rgb(torch.cat([luma, ycc[:, 1:]], 1))


def _sharpness(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """PIL ImageEnhance.Sharpness, factor ~ U(0, 2) (imgaug pillike.EnhanceSharpness).

    Blend with PIL's smoothing filter [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (factor 0: smooth,
    1: input, 2: sharper); the one-pixel border is left unchanged, as in PIL. That is
    ``kornia.enhance.sharpness``, used on GPUs; on the CPU its depthwise conv2d is ~20x slower
    than the same filter as separable shifted sums, so the CPU path is `_sharpness_cpu`
    (equal to kornia's to float rounding, see tests/test_synthesis.py).
    """
    factor = uniform((x.shape[0],), 0.0, 2.0, generator=g, device=x.device)
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        return x.clone()
    if x.device.type == "cpu":
        return _sharpness_cpu(x, factor)
    return KE.sharpness(x, factor)


def _sharpness_cpu(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """kornia.enhance.sharpness(x, factor) written as shifted sums (fast on the CPU)."""
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]  # separable 3 x 3 box sum
    inner = x[:, :, 1:-1, 1:-1]
    smooth = (rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]).mul_(1.0 / 13.0).add_(inner, alpha=4.0 / 13.0)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = torch.lerp(smooth.clamp_(0, 1), inner, factor.view(-1, 1, 1, 1))
    return out.clamp_(0, 1)


def _hue_saturation(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug AddToHueAndSaturation((-50, 50), per_channel=True) in HSV.

    Hue moves by dh / 255 of a turn (imgaug's projection of -255..255 onto the hue circle),
    saturation by ds / 255 (added, then clipped to [0, 1]), dh and ds ~ U(-50, 50) independently.
    kornia: ``rgb_to_hsv``, ``adjust_hue_raw`` (hue in radians), ``hsv_to_rgb``; the saturation
    is added by us (kornia's ``adjust_saturation`` multiplies). On the CPU the round trip through
    kornia's HSV is ~4x slower than a closed form, so the CPU path is `_hue_saturation_cpu`
    (equal to kornia's to float rounding, see tests/test_synthesis.py).
    """
    n = x.shape[0]
    dh = uniform((n,), -50.0 / 255.0, 50.0 / 255.0, generator=g, device=x.device)
    ds = uniform((n,), -50.0 / 255.0, 50.0 / 255.0, generator=g, device=x.device)
    if x.device.type == "cpu":
        return _hue_saturation_cpu(x, dh, ds)
    return _hue_saturation_kornia(x, dh, ds)


def _hue_saturation_kornia(x: torch.Tensor, dh: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
    """Hue + dh turns, saturation + ds through kornia's HSV; dh, ds: (n,)."""
    hsv = KE.adjust_hue_raw(KC.rgb_to_hsv(x), dh * (2.0 * math.pi))
    sat = (hsv[:, 1:2] + ds.view(-1, 1, 1, 1)).clamp_(0, 1)
    return KC.hsv_to_rgb(torch.cat([hsv[:, :1], sat, hsv[:, 2:]], 1)).clamp_(0, 1)


def _hue_saturation_cpu(x: torch.Tensor, dh: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
    """The HSV shift of `_hue_saturation` in closed form (fast on the CPU)."""
    dh, ds = dh.view(-1, 1, 1), ds.view(-1, 1, 1)
    r, gr, b = x.unbind(1)
    value = x.amax(1)
    chroma = value - x.amin(1)
    safe = chroma.clamp(min=1e-12)
    hue = torch.where(value == r, (gr - b) / safe, torch.where(value == gr, (b - r) / safe + 2.0, (r - gr) / safe + 4.0))
    hue = torch.where(chroma > 0, hue, 0.0).div_(6.0).add_(dh).remainder_(1.0).mul_(6.0)  # sextants
    sat = (chroma / value.clamp(min=1e-12)).add_(ds).clamp_(0, 1)
    vs = value * sat
    # HSV -> RGB: channel = V - V S clamp(min(k, 4 - k), 0, 1), k = (hue + m) mod 6, m = 5, 3, 1
    out = []
    for m in (5.0, 3.0, 1.0):
        k = (hue + m).remainder_(6.0)
        out.append(value - vs * torch.minimum(k, 4.0 - k).clamp_(0, 1))
    return torch.stack(out, 1).clamp_(0, 1)


def _solarize(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug Solarize(0.5, threshold=(32, 128)): with prob. 0.5 invert levels >= threshold.

    kornia's ``solarize`` on the 256 levels makes each sample's table (`_apply_table`).
    """
    n = x.shape[0]
    apply = uniform((n,), 0.0, 1.0, generator=g, device=x.device) < 0.5
    threshold = uniform((n,), 32.0 / 255.0, 128.0 / 255.0, generator=g, device=x.device)
    # a threshold above 1 disables the op for the samples that did not draw it (no sub-batching)
    return _apply_table(x, KE.solarize(_ramp(n, x.device), torch.where(apply, threshold, 2.0)))


def _posterize(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug Posterize(): keep the top b bits of each 8-bit level, b ~ U{1..8}.

    kornia's ``posterize`` on the 256 levels makes each sample's table (`_apply_table`; on whole
    images kornia's posterize is ~6x slower on the CPU than the table lookup).
    """
    bits = randint((x.shape[0],), 1, 9, generator=g, device=x.device)
    return _apply_table(x, KE.posterize(_ramp(x.shape[0], x.device), bits))


def _invert(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug Invert(): 1 - x (kornia)."""
    return KE.invert(x)


def _autocontrast(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """PIL ImageOps.autocontrast per channel, cutoff ~ U{0..20} % at each end (imgaug pillike).

    Ours: kornia's auto-contrast is a plain min-max stretch without cutoff. After removing
    cutoff % of the pixels from the bottom and the top of the 256-level histogram, the lowest and
    highest remaining levels are stretched to 0 and 255 (no-op if they coincide).
    """
    n, c, height, width = x.shape
    cutoff = randint((n, 1), 0, 21, generator=g, device=x.device).repeat_interleave(c, 0)
    cut = cutoff * (height * width) // 100  # pixels removed at each end, as PIL
    levels = _level_indices(x)
    flat = levels.reshape(n * c, -1)
    hist = torch.zeros(n * c, 256, device=x.device).scatter_add_(1, flat, torch.ones((), device=x.device).expand(flat.shape))
    ids = torch.arange(256, device=x.device).expand_as(hist)
    through = hist.cumsum(1)  # pixels at or below each level
    from_top = hist.flip(1).cumsum(1).flip(1)  # pixels at or above each level
    low = torch.where((hist > 0) & (through > cut), ids, 255).amin(1, keepdim=True)
    high = torch.where((hist > 0) & (from_top > cut), ids, 0).amax(1, keepdim=True)
    stretched = ((ids - low).float() / (high - low).clamp(min=1).float()).clamp_(0, 1)
    lut = torch.where(high > low, stretched, ids.float() / 255.0)
    return _apply_table(x, lut, levels)


def _equalize(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """PIL ImageOps.equalize per channel of the 8-bit levels (kornia)."""
    return KE.equalize(_levels(x))


def _rotate(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug Affine(rotate=(-45, 45)): bilinear, black fill outside the image (kornia)."""
    angle = uniform((x.shape[0],), -45.0, 45.0, generator=g, device=x.device)
    return rotate_images(x, angle).clamp_(0, 1)


_OPS: dict[str, Op] = {
    "gamma": _gamma,
    "brightness": _brightness,
    "sharpness": _sharpness,
    "hue_saturation": _hue_saturation,
    "solarize": _solarize,
    "posterize": _posterize,
    "invert": _invert,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "rotate": _rotate,
}
AUGMENTATIONS: tuple[str, ...] = tuple(_OPS)
"""The ten source augmentations of the released recipe, in the released list order."""


def augment_sources(
    images: torch.Tensor,
    *,
    num_augmentations: int = 3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply ``num_augmentations`` distinct random augmentations per sample, in random order.

    For each sample a random ordered choice of distinct operations from `AUGMENTATIONS` is
    drawn (as the released ``randAugmenter``). Slot by slot, each operation runs once on the
    group of samples that drew it (gathered in index order) with per-sample parameters, and its
    results are written back in place. The
    operations and their parameters (imgaug's, as used by the released code; drawn per sample):

    ==============  ===========================================================
    gamma           x ** gamma, gamma ~ U(0.5, 2) per channel
    brightness      Y (luminance) * U(0.8, 1.2) + U(-30, 30) / 255
    sharpness       PIL sharpness, factor ~ U(0, 2)
    hue_saturation  hue + U(-50, 50) / 255 turn, saturation + U(-50, 50) / 255
    solarize        with prob. 0.5: invert values >= U(32, 128) / 255
    posterize       keep the top U{1..8} bits of the 8-bit level
    invert          1 - x
    autocontrast    PIL autocontrast per channel, cutoff U{0..20} %
    equalize        PIL histogram equalisation per channel
    rotate          U(-45, 45) degrees, bilinear, black corners
    ==============  ===========================================================

    Args:
        images: (B, 3, H, W) float in [0, 1].
        num_augmentations: operations per sample, 0..10.
        generator: optional ``torch.Generator``.

    Returns:
        (B, 3, H, W) float in [0, 1].
    """
    if not 0 <= num_augmentations <= len(AUGMENTATIONS):
        raise ValueError(f"num_augmentations must be in 0..{len(AUGMENTATIONS)}, got {num_augmentations}")
    ops = list(_OPS.values())
    choice = random_permutations(images.shape[0], len(ops), generator=generator, device=images.device)
    out = images.clone()
    for slot in range(num_augmentations):
        drawn = choice[:, slot]
        order = drawn.argsort(stable=True)  # samples grouped by operation, each group in index order
        counts = torch.bincount(drawn, minlength=len(ops)).tolist()  # the slot's one host sync
        start = 0
        for op, count in zip(ops, counts):
            if count > 0:
                group = order[start : start + count]
                out.index_copy_(0, group, op(out.index_select(0, group), generator))
            start += count
    return out


def blend_anomaly(
    image: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """x_aug = x (1 - m) + (1 - beta) src m + beta x m, exact copy of x where m = 0.

    Args:
        image, source: (B, 3, H, W). mask: (B, 1, H, W) in {0, 1}. beta: (B,) opacity of x.

    Returns:
        (B, 3, H, W).
    """
    # x + m (1 - beta) (src - x): adding m * (...) = 0 leaves x bit-identical outside the region,
    # and three arithmetic passes are ~5x faster on the CPU than lerp + where (slow, unvectorised)
    weight = mask * (1.0 - beta.view(-1, 1, 1, 1))
    return (source - image).mul_(weight).add_(image)


#: Shade parameters (ours): the Perlin exponents of its region (coarse lattices: blobs, not the
#: released range's fragments, which a fading edge would erase), the edge ramp's Gaussian sigma
#: and the smoothing sigma as fractions of the image side, the gain's distance from 1 (either
#: sign), the colour shift per channel.
SHADE_SCALES = (0, 3)
SHADE_EDGE = (0.02, 0.08)
SHADE_SMOOTH = (0.005, 0.03)
SHADE_GAIN = (0.08, 0.35)
SHADE_COLOUR = 0.05


def shade_region(
    images: torch.Tensor, region: torch.Tensor, generator: torch.Generator | None = None
) -> "SynthesisOutput":
    """A smooth-edged change of surface finish inside ``region`` (ours, not in the release).

    Per sample: a weight that is 0 on the region's edge and rises to 1 inside it (a Gaussian blur
    of the region, sigma ~ U(0.02, 0.08) x the image side, mapped 0.5 -> 0 and 1 -> 1, through a
    smoothstep; a region too thin to reach the inside keeps its hard edge); the target surface is
    the image, with probability 0.5 smoothed (Gaussian, sigma ~ U(0.005, 0.03) x the side), times a
    gain 1 +- U(0.08, 0.35) plus a shift ~ U(-0.05, 0.05) per channel, clipped to [0, 1];
    x_aug = x + weight (target - x).

    Args:
        images: (n, 3, H, W) float in [0, 1]. region: (n, 1, H, W) in {0, 1}, each non-empty.
        generator: optional ``torch.Generator``.

    Returns:
        `SynthesisOutput`: the shaded images (exactly ``images`` where the weight is 0), the
        (n, 1, H, W) {0, 1} mask of the pixels the weight reaches (inside ``region``), labels 1.
    """
    n, _, height, width = images.shape
    device = images.device
    side = max(height, width)

    def blur(x: torch.Tensor, sigma: torch.Tensor, high: float) -> torch.Tensor:
        size = 2 * math.ceil(3 * high * side) + 1
        size = min(size, 2 * ((min(height, width) - 1) // 2) + 1)  # reflect padding needs pad < side
        return KF.gaussian_blur2d(x, (size, size), sigma.view(-1, 1).expand(-1, 2).contiguous())

    edge = uniform((n,), *SHADE_EDGE, generator=generator, device=device) * side
    ramp = (2.0 * blur(region.float(), edge, SHADE_EDGE[1]) - 1.0).clamp_(0.0, 1.0) * region
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep
    thin = ramp.flatten(1).amax(1) == 0  # nothing of the region is a sigma deep: hard edge
    ramp = torch.where(thin.view(-1, 1, 1, 1), region.float(), ramp)

    smooth = uniform((n,), 0.0, 1.0, generator=generator, device=device) < 0.5
    sigma = uniform((n,), *SHADE_SMOOTH, generator=generator, device=device) * side
    target = torch.where(smooth.view(-1, 1, 1, 1), blur(images, sigma.clamp(min=0.3), SHADE_SMOOTH[1]), images)
    sign = torch.where(uniform((n,), 0.0, 1.0, generator=generator, device=device) < 0.5, -1.0, 1.0)
    gain = 1.0 + sign * uniform((n,), *SHADE_GAIN, generator=generator, device=device)
    shift = uniform((n, 3), -SHADE_COLOUR, SHADE_COLOUR, generator=generator, device=device)
    target = (target * gain.view(-1, 1, 1, 1) + shift.view(n, 3, 1, 1)).clamp_(0.0, 1.0)
    out = (target - images).mul_(ramp).add_(images)
    mask = (ramp > 0).to(images.dtype)
    return SynthesisOutput(out, mask, mask.flatten(1).amax(1))


# --------------------------------------------------------------------------- the synthesizer


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of `AnomalySynthesizer`; defaults are the released recipe (docs/method.md §4).

    Attributes:
        kind: "texture" (source is always a texture) or "object" (texture or self-augmentation).
        p_anomaly: probability that a sample becomes anomalous.
        beta_range: opacity beta of the original image inside the region, U(low, high).
        perlin_scale_range: exponents [low, high) of the Perlin lattice resolution 2**a.
        threshold: Perlin noise level that defines the region.
        rotate_degrees: the noise is rotated by U(-rotate_degrees, rotate_degrees).
        anomaly_source: folder of texture images (e.g. DTD), or None for procedural textures.
        texture_prob_object: for objects, probability of a texture source (else self-augmentation).
        num_augmentations: distinct augmentations applied to each source.
        bank_size: number of procedural textures (when ``anomaly_source`` is None).
        max_source_images: decoded images of ``anomaly_source`` kept in memory (a least recently
            used cache, `TextureFolder`); every image of the folder is drawn from regardless.
        grid: tiles per side for the self-augmentation shuffle.
        max_tries: redraws of an empty Perlin region before the fallback disc.
        bank_seed: seed of the procedural texture bank (independent of the call's generator).
        shade_prob: share of the anomalous samples that get a `shade_region` change instead of
            the pasted source (ours; 0 = the released recipe, whose draws are then unchanged).
    """

    kind: Literal["texture", "object"] = "object"
    p_anomaly: float = 0.5
    beta_range: tuple[float, float] = (0.2, 0.8)
    perlin_scale_range: tuple[int, int] = (0, 6)
    threshold: float = 0.5
    rotate_degrees: float = 90.0
    anomaly_source: str | Path | None = None
    texture_prob_object: float = 0.5
    num_augmentations: int = 3
    bank_size: int = 128
    max_source_images: int = 512
    grid: int = 8
    max_tries: int = 50
    bank_seed: int = 0
    shade_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("texture", "object"):
            raise ValueError(f"kind must be 'texture' or 'object', got {self.kind!r}")
        for name in ("p_anomaly", "texture_prob_object", "shade_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        low, high = self.beta_range
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"beta_range must satisfy 0 <= low <= high <= 1, got {self.beta_range}")
        low, high = self.perlin_scale_range
        if not 0 <= low < high:
            raise ValueError(f"perlin_scale_range must satisfy 0 <= low < high (high exclusive), got {self.perlin_scale_range}")
        if not 0 <= self.num_augmentations <= len(AUGMENTATIONS):
            raise ValueError(f"num_augmentations must be in 0..{len(AUGMENTATIONS)}, got {self.num_augmentations}")
        for name in ("bank_size", "max_source_images", "grid", "max_tries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class SynthesisOutput(NamedTuple):
    """Result of `AnomalySynthesizer`.

    image: (B, 3, H, W) augmented batch, the input's dtype, exactly the input outside ``mask``.
    mask: (B, 1, H, W) anomaly masks in {0, 1}, the input's dtype.
    label: (B,) float {0, 1} in the input's dtype: 1 iff the sample's mask is non-empty.
    """

    image: torch.Tensor
    mask: torch.Tensor
    label: torch.Tensor


class AnomalySynthesizer:
    """Batched synthetic-anomaly generator of the released DiffusionAD recipe.

    Build it with a `SynthesisConfig` and/or keyword overrides of its fields, e.g.
    ``AnomalySynthesizer(kind="texture", anomaly_source="dtd/images")``; call it on a batch.

    Texture sources: with ``anomaly_source`` a `TextureFolder` (opened on the first call) from
    which every texture is drawn uniformly among all the folder's images and decoded on demand
    into a bounded cache; otherwise a procedural bank built lazily on the first call, at that
    call's image size and device (kept as uint8), rebuilt if a later call has another size or
    device, from ``bank_seed``. Either way results depend only on the call's ``generator``.

    Randomness: with a ``torch.Generator`` all draws happen on the generator's device and are
    moved to the images' device, so a CPU generator also drives CUDA batches (same draws as on
    CPU). The same seed gives the same output; without a generator the global RNG is used.
    """

    def __init__(self, config: SynthesisConfig | None = None, /, **overrides: Any) -> None:
        valid = {f.name for f in fields(SynthesisConfig)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown synthesis option(s) {unknown}; valid options: {sorted(valid)}")
        self.config = replace(config or SynthesisConfig(), **overrides)
        self._bank: torch.Tensor | None = None
        self._bank_key: tuple[int, int, torch.device] | None = None
        self._folder: TextureFolder | None = None

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())
        return f"AnomalySynthesizer({options})"

    def texture_folder(self) -> TextureFolder:
        """The `TextureFolder` of ``anomaly_source`` (opened on first use)."""
        if self.config.anomaly_source is None:
            raise ValueError("this synthesizer has no anomaly_source folder (it uses procedural textures)")
        if self._folder is None:
            self._folder = TextureFolder(self.config.anomaly_source, cache_images=self.config.max_source_images)
        return self._folder

    def texture_bank(self, height: int, width: int, device: torch.device | str) -> torch.Tensor:
        """The (N, 3, H, W) uint8 procedural texture bank for this size and device (built on first use).

        With an ``anomaly_source`` folder, all its images decoded at H x W (for inspecting small
        folders: the synthesizer itself never builds this, it decodes what it draws).
        """
        device = torch.device(device)
        if self.config.anomaly_source is not None:
            folder = self.texture_folder()
            return folder.images(range(len(folder)), (height, width)).to(device)
        key = (height, width, device)
        if self._bank is None or self._bank_key != key:
            cfg = self.config
            gen = torch.Generator().manual_seed(cfg.bank_seed)
            bank = (procedural_textures(cfg.bank_size, (height, width), generator=gen) * 255).round().to(torch.uint8)
            self._bank, self._bank_key = bank.to(device), key
        return self._bank

    def _textures(self, count: int, height: int, width: int, device: torch.device,
                  generator: torch.Generator | None) -> torch.Tensor:
        """``count`` textures drawn uniformly from the source, (count, 3, H, W) float32 in [0, 1]."""
        if self.config.anomaly_source is not None:
            folder = self.texture_folder()
            pick = randint((count,), 0, len(folder), generator=generator, device=torch.device("cpu"))
            chosen = folder.images(pick, (height, width)).to(device, non_blocking=True)
        else:
            bank = self.texture_bank(height, width, device)
            pick = randint((count,), 0, bank.shape[0], generator=generator, device=device)
            chosen = bank.index_select(0, pick)
        return chosen.float().div_(255.0)

    @torch.no_grad()
    def __call__(
        self,
        images: torch.Tensor,
        foreground: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SynthesisOutput:
        """Turn a random subset of ``images`` into synthetic anomalies.

        Args:
            images: (B, 3, H, W) floating point in [0, 1], any device.
            foreground: optional (B, 1, H, W) foreground mask (pixels > 0.5 count); default the
                whole image. Anomalies are confined to it; a sample with an empty foreground
                stays normal. The dataset readers supply it (released DIS masks when present,
                else ``diffad_core.data.foreground.estimate_foreground`` for objects).
            generator: optional ``torch.Generator`` for reproducible output.

        Returns:
            `SynthesisOutput` (image, mask, label).
        """
        _check_inputs(images, foreground)
        cfg = self.config
        batch, _, height, width = images.shape
        device = images.device
        dtype = images.dtype
        x = images.float()  # the pipeline runs in float32; the blend in the input's dtype
        mask = torch.zeros(batch, 1, height, width, device=device, dtype=dtype)

        anomalous = uniform((batch,), 0.0, 1.0, generator=generator, device=device) < cfg.p_anomaly
        idx = anomalous.nonzero().squeeze(1)
        n = idx.numel()
        out = images.clone()
        if n > 0:
            fg = torch.ones(n, 1, height, width, device=device) if foreground is None else foreground.index_select(0, idx).float()
            region = perlin_mask(
                fg,
                scale_range=cfg.perlin_scale_range,
                threshold=cfg.threshold,
                rotate_degrees=cfg.rotate_degrees,
                max_tries=cfg.max_tries,
                generator=generator,
            )
            # anomaly sources: a texture from the bank, or (objects only) the image itself
            if cfg.kind == "object":
                use_self = uniform((n,), 0.0, 1.0, generator=generator, device=device) >= cfg.texture_prob_object
            else:
                use_self = torch.zeros(n, dtype=torch.bool, device=device)
            own, tex = use_self.nonzero().squeeze(1), (~use_self).nonzero().squeeze(1)
            source = torch.empty(n, 3, height, width, device=device)
            if tex.numel() > 0:
                source.index_copy_(0, tex, self._textures(tex.numel(), height, width, device, generator))
            source.index_copy_(0, own, x.index_select(0, idx.index_select(0, own)))
            source = augment_sources(source, num_augmentations=cfg.num_augmentations, generator=generator)
            if own.numel() > 0:
                source.index_copy_(0, own, shuffle_grid(source.index_select(0, own), grid=cfg.grid, generator=generator))
            beta = uniform((n,), *cfg.beta_range, generator=generator, device=device)
            out.index_copy_(0, idx, blend_anomaly(images.index_select(0, idx), source.to(dtype), region, beta.to(dtype)))
            mask.index_copy_(0, idx, region.to(dtype))
            if cfg.shade_prob > 0:  # drawn after everything else: shade_prob 0 keeps the released draws
                draw = uniform((n,), 0.0, 1.0, generator=generator, device=device)
                shaded = (draw < cfg.shade_prob).nonzero().squeeze(1)
                if shaded.numel() > 0:
                    where = idx.index_select(0, shaded)
                    blobs = perlin_mask(fg.index_select(0, shaded), scale_range=SHADE_SCALES, threshold=cfg.threshold,
                                        rotate_degrees=cfg.rotate_degrees, max_tries=cfg.max_tries, generator=generator)
                    shade = shade_region(x.index_select(0, where), blobs, generator)
                    out.index_copy_(0, where, shade.image.to(dtype))
                    mask.index_copy_(0, where, shade.mask.to(dtype))
        label = mask.flatten(1).amax(1)
        return SynthesisOutput(out, mask, label)


def _check_inputs(images: torch.Tensor, foreground: torch.Tensor | None) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if not images.dtype.is_floating_point:
        raise ValueError(
            f"images must be floating point in [0, 1], got dtype {images.dtype}; "
            "convert uint8 images with images.float() / 255"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W) (RGB), got {tuple(images.shape)}")
    if images.numel() > 0:
        low, high = (float(v) for v in torch.aminmax(images))
        if low < 0.0 or high > 1.0 or math.isnan(low) or math.isnan(high):
            raise ValueError(
                f"images must have values in [0, 1], got min {low:.4g} and max {high:.4g}; "
                "for images in [-1, 1] pass (images + 1) / 2"
            )
    if foreground is not None:
        expected = (images.shape[0], 1, *images.shape[2:])
        if not isinstance(foreground, torch.Tensor) or tuple(foreground.shape) != expected:
            got = tuple(foreground.shape) if isinstance(foreground, torch.Tensor) else type(foreground).__name__
            raise ValueError(f"foreground must have shape {expected} (B, 1, H, W), got {got}")
        if foreground.device != images.device:
            raise ValueError(f"foreground is on {foreground.device} but images are on {images.device}")
