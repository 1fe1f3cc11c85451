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
are over retries, augmentation slots and the ten operations, never over samples.

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
- Operations run on float images in [0, 1]; quantised operations (posterize, autocontrast,
  equalize) quantise to 256 levels as the uint8 originals do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from .perlin import perlin_mask, randint, random_permutations, rotate_images, uniform
from .textures import load_texture_folder, procedural_textures, shuffle_grid

__all__ = [
    "AUGMENTATIONS",
    "AnomalySynthesizer",
    "SynthesisConfig",
    "SynthesisOutput",
    "augment_sources",
    "blend_anomaly",
]


# --------------------------------------------------------------------------- augmentations
# Each op maps (n, 3, H, W) float in [0, 1] to the same, drawing its own per-sample parameters.
Op = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _histogram_lut(x: torch.Tensor, make_lut: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply a per-sample, per-channel lookup table built from the image's own histogram.

    As uint8 image code does: x (n, C, H, W) in [0, 1] is quantised to 256 levels; ``make_lut``
    maps the (n * C, 256) level counts to (n * C, 256) output values in [0, 1].
    """
    n, c, height, width = x.shape
    levels = (x * 255.0).round_().long().reshape(n * c, -1)
    levels += torch.arange(n * c, device=x.device)[:, None] * 256  # row offsets: one flat table
    hist = torch.bincount(levels.view(-1), minlength=n * c * 256).view(n * c, 256)
    return torch.take(make_lut(hist).float(), levels).view(n, c, height, width)


def _gamma(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug GammaContrast((0.5, 2.0), per_channel=True): x ** gamma, gamma per channel."""
    gamma = uniform((x.shape[0], 3, 1, 1), 0.5, 2.0, generator=g, device=x.device)
    return torch.log(x).mul_(gamma).exp_()  # x = 0 stays 0 (log 0 = -inf)


def _brightness(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30)) on YCbCr luminance Y."""
    n = x.shape[0]
    mul = uniform((n, 1, 1, 1), 0.8, 1.2, generator=g, device=x.device)
    add = uniform((n, 1, 1, 1), -30.0 / 255.0, 30.0 / 255.0, generator=g, device=x.device)
    luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    shift = luma.mul_(mul - 1.0).add_(add)  # Cb, Cr fixed: every channel moves with Y
    return (x + shift).clamp_(0, 1)


def _sharpness(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """PIL ImageEnhance.Sharpness, factor ~ U(0, 2) (imgaug pillike.EnhanceSharpness).

    Blend with PIL's smoothing filter [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (factor 0: smooth,
    1: input, 2: sharper); the one-pixel border is left unchanged, as in PIL.
    """
    factor = uniform((x.shape[0], 1, 1, 1), 0.0, 2.0, generator=g, device=x.device)
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        return x
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]  # separable 3 x 3 box sum
    inner = x[:, :, 1:-1, 1:-1]
    smooth = (rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]).mul_(1.0 / 13.0).add_(inner, alpha=4.0 / 13.0)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = torch.lerp(smooth, inner, factor)
    return out.clamp_(0, 1)


def _hue_saturation(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug AddToHueAndSaturation((-50, 50), per_channel=True) in HSV.

    Hue moves by dh / 255 of a turn (imgaug's projection of -255..255 onto the hue circle),
    saturation by ds / 255, dh and ds ~ U(-50, 50) independently.
    """
    n = x.shape[0]
    dh = uniform((n, 1, 1), -50.0 / 255.0, 50.0 / 255.0, generator=g, device=x.device)
    ds = uniform((n, 1, 1), -50.0 / 255.0, 50.0 / 255.0, generator=g, device=x.device)
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
    """imgaug Solarize(0.5, threshold=(32, 128)): with prob. 0.5 invert values >= threshold."""
    n = x.shape[0]
    apply = uniform((n, 1, 1, 1), 0.0, 1.0, generator=g, device=x.device) < 0.5
    threshold = uniform((n, 1, 1, 1), 32.0 / 255.0, 128.0 / 255.0, generator=g, device=x.device)
    # a threshold above 1 disables the op for the samples that did not draw it
    return torch.where(x >= torch.where(apply, threshold, 2.0), 1.0 - x, x)


def _posterize(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug Posterize(): keep the top b bits of each 8-bit level, b ~ U{1..8}."""
    bits = randint((x.shape[0], 1, 1, 1), 1, 9, generator=g, device=x.device)
    step = (2 ** (8 - bits)).float()  # clearing the low 8 - b bits = rounding down to a multiple
    return (x * 255.0).round_().div_(step).floor_().mul_(step / 255.0)


def _invert(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug Invert(): 1 - x."""
    return 1.0 - x


def _autocontrast(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """PIL ImageOps.autocontrast per channel, cutoff ~ U{0..20} % at each end (imgaug pillike).

    After removing cutoff % of the pixels from the bottom and the top of the histogram, the
    lowest and highest remaining levels are stretched to 0 and 255 (no-op if they coincide).
    """
    n, c, height, width = x.shape
    cutoff = randint((n, 1), 0, 21, generator=g, device=x.device).repeat_interleave(c, 0)
    cut = cutoff * (height * width) // 100  # pixels removed at each end, as PIL

    def lut(hist: torch.Tensor) -> torch.Tensor:
        ids = torch.arange(256, device=x.device).expand_as(hist)
        through = hist.cumsum(1)  # pixels at or below each level
        from_top = hist.flip(1).cumsum(1).flip(1)  # pixels at or above each level
        low = torch.where((hist > 0) & (through > cut), ids, 255).amin(1, keepdim=True)
        high = torch.where((hist > 0) & (from_top > cut), ids, 0).amax(1, keepdim=True)
        stretched = ((ids - low).float() / (high - low).clamp(min=1).float()).clamp(0, 1)
        return torch.where(high > low, stretched, ids.float() / 255.0)

    return _histogram_lut(x, lut)


def _equalize(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """PIL ImageOps.equalize per channel (PIL's lookup table, exactly)."""

    def lut(hist: torch.Tensor) -> torch.Tensor:
        ids = torch.arange(256, device=x.device).expand_as(hist)
        last = torch.where(hist > 0, ids, 0).amax(1, keepdim=True)  # highest used level
        step = (hist.sum(1, keepdim=True) - hist.gather(1, last)) // 255
        table = ((hist.cumsum(1) - hist + step // 2) // step.clamp(min=1)).clamp(max=255)
        return torch.where(step > 0, table, ids).float() / 255.0

    return _histogram_lut(x, lut)


def _rotate(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """imgaug Affine(rotate=(-45, 45)): bilinear, black fill outside the image."""
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
    drawn (as the released ``randAugmenter``); slot by slot, each operation runs once on the
    sub-batch of samples that drew it for that slot. The operations and their parameters
    (imgaug's, as used by the released code; drawn per sample):

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
    choice = random_permutations(images.shape[0], len(AUGMENTATIONS), generator=generator, device=images.device)
    out = images
    for slot in range(num_augmentations):
        new = torch.empty_like(out)  # every sample is written: it drew exactly one op per slot
        for k, op in enumerate(_OPS.values()):
            idx = (choice[:, slot] == k).nonzero().squeeze(1)
            if idx.numel() > 0:
                new.index_copy_(0, idx, op(out.index_select(0, idx), generator))
        out = new
    return out if num_augmentations > 0 else images.clone()


def blend_anomaly(
    image: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """x_aug = x (1 - m) + (1 - beta) src m + beta x m, exact copy of x where m = 0.

    Args:
        image, source: (B, 3, H, W). mask: (B, 1, H, W) in {0, 1}. beta: (B,) opacity of x.

    Returns:
        (B, 3, H, W).
    """
    mixed = torch.lerp(image, source, 1.0 - beta.view(-1, 1, 1, 1))  # beta x + (1 - beta) src
    return torch.where(mask > 0, mixed, image)


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
        max_source_images: at most this many images are loaded from ``anomaly_source``.
        grid: tiles per side for the self-augmentation shuffle.
        max_tries: redraws of an empty Perlin region before the fallback disc.
        bank_seed: seed of the procedural texture bank (independent of the call's generator).
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

    def __post_init__(self) -> None:
        if self.kind not in ("texture", "object"):
            raise ValueError(f"kind must be 'texture' or 'object', got {self.kind!r}")
        for name in ("p_anomaly", "texture_prob_object"):
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

    The texture bank is built lazily on the first call, at that call's image size and device
    (kept as uint8), and rebuilt if a later call has another size or device. Procedural banks
    come from ``bank_seed``, so results depend only on the call's ``generator``.

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

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in asdict(self.config).items())
        return f"AnomalySynthesizer({options})"

    def texture_bank(self, height: int, width: int, device: torch.device | str) -> torch.Tensor:
        """The (N, 3, H, W) uint8 texture bank for this size and device (built on first use)."""
        device = torch.device(device)
        key = (height, width, device)
        if self._bank is None or self._bank_key != key:
            cfg = self.config
            if cfg.anomaly_source is not None:
                bank = load_texture_folder(cfg.anomaly_source, (height, width), max_images=cfg.max_source_images)
            else:
                gen = torch.Generator().manual_seed(cfg.bank_seed)
                bank = (procedural_textures(cfg.bank_size, (height, width), generator=gen) * 255).round().to(torch.uint8)
            self._bank, self._bank_key = bank.to(device), key
        return self._bank

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
                bank = self.texture_bank(height, width, device)
                pick = randint((tex.numel(),), 0, bank.shape[0], generator=generator, device=device)
                source.index_copy_(0, tex, bank.index_select(0, pick).float().div_(255.0))
            source.index_copy_(0, own, x.index_select(0, idx.index_select(0, own)))
            source = augment_sources(source, num_augmentations=cfg.num_augmentations, generator=generator)
            if own.numel() > 0:
                source.index_copy_(0, own, shuffle_grid(source.index_select(0, own), grid=cfg.grid, generator=generator))
            beta = uniform((n,), *cfg.beta_range, generator=generator, device=device)
            out.index_copy_(0, idx, blend_anomaly(images.index_select(0, idx), source.to(dtype), region, beta.to(dtype)))
            mask.index_copy_(0, idx, region.to(dtype))
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
