"""Anomaly sources: texture images (a folder such as DTD, or procedural) and the self-augmentation.

The released DiffusionAD recipe fills anomaly regions with images from the Describable Textures
Dataset (DTD) or, for objects, with the image itself cut into a shuffled grid (`shuffle_grid`).
DTD cannot be downloaded everywhere, so two texture sources are offered:

- `TextureFolder(folder)`: every image under a folder (recursively, e.g. ``dtd/images``, all
  5,640 of DTD) with a suffix of ``data.imageio.IMAGE_EXTENSIONS`` (PNG/JPEG/BMP/TIFF/WebP),
  decoded when drawn and resized to the working size (the whole image is squashed, as the
  released code's ``cv2.resize``), with a bounded cache of decoded uint8 images.
  `load_texture_folder(folder, size)` decodes a (small) folder into one uint8 bank (N, 3, H, W).
- `procedural_textures(n, size)`: a built-in bank of varied, colourful textures (multi-octave
  Perlin colour fields, warped stripes, checkers, speckle, and blends of these) so training works
  without DTD. These are a stand-in: they look texture-like but are not DTD's photographs.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from kornia.color import hsv_to_rgb
from PIL import Image

from .data.imageio import IMAGE_EXTENSIONS
from .perlin import fractal_noise, perlin_noise, randint, random_permutations, uniform

__all__ = ["PROCEDURAL_FAMILIES", "TextureFolder", "load_texture_folder", "procedural_textures", "shuffle_grid"]

PROCEDURAL_FAMILIES: tuple[str, ...] = ("perlin", "stripes", "checker", "speckle", "blend")


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return height, width


# --------------------------------------------------------------------------- image folders

#: Decoding threads of `TextureFolder` (PIL releases the GIL while it decodes).
DECODE_THREADS = 4


def _header_ok(path: Path) -> bool:
    """True if PIL recognises the file (reads the header only, not the pixels)."""
    try:
        with Image.open(path) as img:
            return img.width > 0 and img.height > 0
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _read_rgb(path: Path, height: int, width: int) -> np.ndarray | None:
    """(H, W, 3) uint8: the whole image squashed to H x W (bilinear), or None if unreadable.

    JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that is still at least H x W
    (PIL ``draft``), which makes DTD's 300-640 px photographs several times cheaper to decode.
    """
    try:
        with Image.open(path) as img:
            img.draft("RGB", (width, height))
            img = img.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class TextureFolder:
    """Every image under a folder (recursively, e.g. DTD's ``images``), decoded on demand.

    Design (bounded memory, whole folder, exact resume): start-up only lists the files (sorted
    paths) and reads their headers; unreadable ones are skipped with one warning. Pixels are
    decoded when a texture is drawn, at the size asked for, and the last ``cache_images``
    decoded images are kept (least recently used first out), so memory is at most
    ``cache_images * 3 * H * W`` bytes (512 images: 6 MB at 64 px, 100 MB at 256 px) whatever the
    folder size. Which texture a sample gets depends only on the index drawn from the caller's
    generator, never on the cache, so a resumed run draws and sees the same textures.

    A file that passes the header check but fails to decode is replaced by the next readable
    file in path order (deterministic), with a warning.

    Args:
        folder: a directory of images with a suffix of ``data.imageio.IMAGE_EXTENSIONS``.
        cache_images: decoded images kept in memory (>= 1).

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a directory.
        ValueError: no readable image was found under ``folder``.
    """

    def __init__(self, folder: str | Path, *, cache_images: int = 512) -> None:
        folder = Path(folder).expanduser()
        if cache_images < 1:
            raise ValueError(f"cache_images must be >= 1, got {cache_images}")
        if not folder.is_dir():
            raise FileNotFoundError(
                f"anomaly source folder {str(folder)!r} does not exist; pass a folder of texture "
                "images (e.g. DTD's 'images' folder) or leave anomaly_source unset to use the "
                "built-in procedural textures"
            )
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
            ok = list(pool.map(_header_ok, paths))
        bad = [p for p, good in zip(paths, ok) if not good]
        if bad:
            warnings.warn(f"skipping {len(bad)} unreadable image file(s) under {str(folder)!r}, the first: {str(bad[0])!r}",
                          stacklevel=2)
        self.folder = folder
        self.paths: list[Path] = [p for p, good in zip(paths, ok) if good]
        if not self.paths:
            raise ValueError(
                f"no readable image (suffixes {', '.join(IMAGE_EXTENSIONS)}) under {str(folder)!r}; "
                "point anomaly_source at a folder of texture images (e.g. DTD's 'images' folder) "
                "or leave it unset to use the built-in procedural textures"
            )
        self.cache_images = cache_images
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._broken: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"TextureFolder({str(self.folder)!r}, {len(self)} images, cache_images={self.cache_images})"

    def images(self, indices: Sequence[int] | torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
        """The textures at ``indices`` (into `paths`), resized to ``size``: (k, 3, H, W) uint8 on the CPU."""
        height, width = _as_size(size)
        wanted = [int(i) for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)]
        if any(not 0 <= i < len(self) for i in wanted):
            raise IndexError(f"texture indices must be in 0..{len(self) - 1}, got {wanted}")
        found: dict[int, np.ndarray] = {}
        for i in dict.fromkeys(wanted):  # cache hits become the most recently used
            key = (i, height, width)
            if key in self._cache:
                self._cache.move_to_end(key)
                found[i] = self._cache[key]
        missing = [i for i in dict.fromkeys(wanted) if i not in found]
        if missing:
            with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, len(missing))) as pool:
                decoded = list(pool.map(lambda i: _read_rgb(self.paths[i], height, width), missing))
            for i, arr in zip(missing, decoded):
                found[i] = arr if arr is not None else self._replacement(i, height, width)
                self._store((i, height, width), found[i])
        out = np.stack([found[i] for i in wanted]) if wanted else np.empty((0, height, width, 3), np.uint8)
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()

    def _store(self, key: tuple[int, int, int], arr: np.ndarray) -> None:
        self._cache[key] = arr
        while len(self._cache) > self.cache_images:
            self._cache.popitem(last=False)

    def _replacement(self, index: int, height: int, width: int) -> np.ndarray:
        """The next decodable file after ``index`` (cyclic): stands in for a file that failed to decode."""
        if index not in self._broken:
            self._broken.add(index)
            warnings.warn(f"cannot decode {str(self.paths[index])!r}; using the next readable texture instead",
                          stacklevel=3)
        for step in range(1, len(self)):
            j = (index + step) % len(self)
            if j in self._broken:
                continue
            arr = _read_rgb(self.paths[j], height, width)
            if arr is not None:
                return arr
            self._broken.add(j)
        raise ValueError(f"no image under {str(self.folder)!r} can be decoded; check the files or use another folder")


def load_texture_folder(
    folder: str | Path,
    size: int | tuple[int, int],
    *,
    max_images: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Decode the images under ``folder`` (recursively) into one uint8 texture bank.

    For inspecting small folders; training does not build this bank but draws from a
    `TextureFolder` (all images, bounded memory). Files are taken in sorted path order; with
    ``max_images`` an evenly spaced subset of that order is kept. Unreadable files are skipped
    with one warning.

    Args:
        folder: a directory, e.g. the ``images`` folder of DTD.
        size: working size H (square) or (H, W); every image is resized to it.
        max_images: keep at most this many images (default: all; memory N * 3 * H * W bytes).
        device: where the bank lives.

    Returns:
        (N, 3, H, W) uint8 tensor.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a directory.
        ValueError: no readable image was found under ``folder``.
    """
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    source = TextureFolder(folder, cache_images=1)
    count = len(source) if max_images is None else min(max_images, len(source))
    keep = np.linspace(0, len(source) - 1, count).round().astype(int).tolist()
    source.cache_images = count
    bank = source.images(keep, size)
    return bank.to(device) if device is not None else bank


# --------------------------------------------------------------------------- procedural textures


def _random_colours(n: int, *, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """n vivid random colours, (n, 3) in [0, 1]: uniform hue, saturation 0.35-1, value 0.25-1."""
    hue = uniform((n,), 0.0, 2.0 * math.pi, generator=generator, device=device)
    sat = uniform((n,), 0.35, 1.0, generator=generator, device=device)
    val = uniform((n,), 0.25, 1.0, generator=generator, device=device)
    return hsv_to_rgb(torch.stack([hue, sat, val], 1)[:, :, None, None])[:, :, 0, 0]


def _palette(t: torch.Tensor, *, generator: torch.Generator | None) -> torch.Tensor:
    """Map t (n, H, W) in [0, 1] through a random 3-colour gradient per sample: (n, 3, H, W)."""
    n, device = t.shape[0], t.device
    c0, c1, c2 = (_random_colours(n, generator=generator, device=device)[:, :, None, None] for _ in range(3))
    t = t[:, None]
    low = torch.lerp(c0, c1, (2.0 * t).clamp(0, 1))
    return torch.lerp(low, c2, (2.0 * t - 1.0).clamp(0, 1))


def _coords(n: int, height: int, width: int, *, generator: torch.Generator | None, device: torch.device):
    """Rotated unit coordinates (n, H, W): x' along a random direction, y' across it."""
    theta = uniform((n, 1, 1), 0.0, math.pi, generator=generator, device=device)
    ys = torch.linspace(0, 1, height, device=device)[None, :, None]
    xs = torch.linspace(0, 1, width, device=device)[None, None, :]
    return xs * theta.cos() + ys * theta.sin(), -xs * theta.sin() + ys * theta.cos()


def _fbm(n: int, height: int, width: int, low: int, high: int, *, generator, device) -> torch.Tensor:
    res = randint((n, 2), low, high + 1, generator=generator, device=device)
    return fractal_noise(n, height, width, res, octaves=4, generator=generator, device=device)


def _perlin_field(n, height, width, *, generator, device) -> torch.Tensor:
    """Multi-octave Perlin noise through a random colour palette, plus per-channel tint noise."""
    field = _fbm(n, height, width, 1, 6, generator=generator, device=device)
    contrast = uniform((n, 1, 1), 1.5, 4.0, generator=generator, device=device)
    img = _palette((0.5 + 0.5 * contrast * field).clamp(0, 1), generator=generator)
    tint = torch.stack([_fbm(n, height, width, 2, 8, generator=generator, device=device) for _ in range(3)], 1)
    return img + 0.15 * tint


def _stripes(n, height, width, *, generator, device) -> torch.Tensor:
    """Sinusoidal stripes (4-24 per image) warped by Perlin noise, soft or hard edged."""
    x, _ = _coords(n, height, width, generator=generator, device=device)
    freq = uniform((n, 1, 1), 4.0, 24.0, generator=generator, device=device)
    warp = uniform((n, 1, 1), 0.0, 1.5, generator=generator, device=device)
    noise = _fbm(n, height, width, 1, 4, generator=generator, device=device)
    wave = torch.sin(2.0 * math.pi * (freq * x + warp * noise))
    hardness = uniform((n, 1, 1), 1.0, 8.0, generator=generator, device=device)
    return _palette(torch.sigmoid(hardness * wave), generator=generator)


def _checker(n, height, width, *, generator, device) -> torch.Tensor:
    """Rotated checkerboards (3-16 cells per image) with Perlin shading."""
    x, y = _coords(n, height, width, generator=generator, device=device)
    cells = uniform((n, 1, 1), 3.0, 16.0, generator=generator, device=device)
    board = ((cells * x).floor() + (cells * y).floor()).remainder(2.0)
    shade = _fbm(n, height, width, 2, 8, generator=generator, device=device)
    colours = _palette(board, generator=generator)
    return colours * (1.0 + 0.3 * shade[:, None])


def _speckle(n, height, width, *, generator, device) -> torch.Tensor:
    """Random square dots of 1-6 px (density 2-30 %) on a Perlin-shaded background, plus grain."""
    cell = randint((n, 1), 1, 7, generator=generator, device=device)
    rows = torch.arange(height, device=device)[None, :] // cell  # (n, H) dot-cell row
    cols = torch.arange(width, device=device)[None, :] // cell  # (n, W)
    cells = uniform((n, height * width), 0.0, 1.0, generator=generator, device=device)
    cell_value = cells.gather(1, (rows[:, :, None] * width + cols[:, None, :]).reshape(n, -1))
    density = uniform((n, 1), 0.02, 0.3, generator=generator, device=device)
    dots = (cell_value < density).float().view(n, height, width)
    base = _fbm(n, height, width, 1, 4, generator=generator, device=device)
    img = _palette((0.5 + base).clamp(0, 1) * 0.5 + 0.5 * dots, generator=generator)
    grain = uniform((n, 3, height, width), -0.08, 0.08, generator=generator, device=device)
    return img + grain


_CHUNK = 20
_FAMILIES = {"perlin": _perlin_field, "stripes": _stripes, "checker": _checker, "speckle": _speckle}


def procedural_textures(
    n: int,
    size: int | tuple[int, int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Generate ``n`` varied, colourful procedural textures (a stand-in for DTD).

    Each texture belongs to one of `PROCEDURAL_FAMILIES` in turn (index % 5, so every family
    appears): multi-octave Perlin colour fields, warped stripes, rotated checkers, speckle, or a
    blend of two of the first four through a soft Perlin mask. Colours, frequencies, angles and
    contrasts are random per texture.

    Args:
        n: number of textures.
        size: H (square) or (H, W).
        generator: optional ``torch.Generator`` (same seed -> same textures).
        device: device of the result.

    Returns:
        (n, 3, H, W) float32 in [0, 1].
    """
    height, width = _as_size(size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    out = torch.empty(n, 3, height, width, device=device)
    families = len(PROCEDURAL_FAMILIES)
    for start in range(0, n, _CHUNK):  # chunks bound the memory of the blend family
        stop = min(n, start + _CHUNK)
        family = torch.arange(start, stop, device=device) % families
        for k, name in enumerate(PROCEDURAL_FAMILIES):
            idx = start + (family == k).nonzero().squeeze(1)
            if idx.numel() > 0:
                out[idx] = _generate(name, idx.numel(), height, width, generator=generator, device=device)
    return out.clamp_(0.0, 1.0)


def _generate(name: str, m: int, height: int, width: int, *, generator, device) -> torch.Tensor:
    if name != "blend":
        return _FAMILIES[name](m, height, width, generator=generator, device=device)
    # blend: two textures of (per sample) random basic families, mixed through a soft Perlin mask
    pool = torch.stack([f(m, height, width, generator=generator, device=device).clamp(0, 1) for f in _FAMILIES.values()])
    pick = random_permutations(m, len(_FAMILIES), generator=generator, device=device)[:, :2]
    rows = torch.arange(m, device=device)
    first, second = pool[pick[:, 0], rows], pool[pick[:, 1], rows]
    res = randint((m, 2), 1, 5, generator=generator, device=device)
    alpha = torch.sigmoid(6.0 * perlin_noise(m, height, width, res, generator=generator, device=device))
    return torch.lerp(first, second, alpha[:, None])


# --------------------------------------------------------------------------- self-augmentation


def shuffle_grid(
    images: torch.Tensor, *, grid: int = 8, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cut each image into a grid x grid tiling and shuffle its rows and columns of tiles.

    The self-augmentation source of the released recipe. Each sample gets its own uniform
    random row and column permutation; pixel rows/columns beyond grid * (H // grid) stay put.

    Args:
        images: (B, C, H, W), H and W >= grid.
        grid: tiles per side.
        generator: optional ``torch.Generator``.

    Returns:
        (B, C, H, W), a per-sample permutation of the input's pixels.
    """
    batch, channels, height, width = images.shape
    if height < grid or width < grid:
        raise ValueError(f"images of {height} x {width} are too small for a {grid} x {grid} grid")
    device = images.device

    def pixel_index(size: int) -> torch.Tensor:
        tile = size // grid
        perm = random_permutations(batch, grid, generator=generator, device=device)  # (B, grid)
        pos = torch.arange(size, device=device)
        inside = (pos < grid * tile)[None, :]
        block = (pos // tile).clamp(max=grid - 1)[None, :].expand(batch, size)
        shuffled = perm.gather(1, block) * tile + pos % tile
        return torch.where(inside, shuffled, pos[None, :])  # (B, size)

    rows, cols = pixel_index(height), pixel_index(width)
    out = images.gather(2, rows[:, None, :, None].expand(batch, channels, height, width))
    return out.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
