"""Reading images and masks from disk into arrays, and resizing them as tensors.

Conventions shared by every reader:

* images come back as float32 RGB in [0, 1], shape (H, W, 3) from :func:`read_image` and
  (3, H, W) after :func:`resize_image`;
* greyscale, greyscale+alpha, palette, RGBA, CMYK, 1-bit, 16-bit (``I;16*``), 32-bit integer
  (``I``, read as 16-bit data: divided by 65535) and float (``F``, clipped to [0, 1]) files are
  accepted; alpha channels are dropped (not composited);
* masks come back as bool (H, W): a pixel is defective when its value is > 0 after reading
  (any colour channel for colour masks, the displayed colour for palette masks);
* images are resized bilinearly with antialiasing, masks with exact nearest-neighbour
  (``nearest-exact``), so a binary mask stays binary.

Anything PIL cannot decode (truncated downloads, non-image files) raises
:class:`~diffad_core.data.errors.DatasetError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSize",
    "list_images",
    "read_image",
    "read_mask",
    "read_image_size",
    "resize_image",
    "resize_mask",
    "normalize_size",
]

#: File extensions (lower case) recognised as images everywhere in the package: by every dataset
#: reader and by texture folders (``textures.load_texture_folder``). All are decoded by PIL.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: ``int`` (square side), ``(H, W)`` or ``None`` (keep each file's own size).
ImageSize = Union[int, tuple[int, int], None]

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def normalize_size(image_size: ImageSize) -> tuple[int, int] | None:
    """Return ``image_size`` as ``(H, W)`` (or ``None``), rejecting non-positive values."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise DatasetError(
            f"image_size={image_size!r} is not valid: pass an int (square side), a (height, width) "
            "pair, or None to keep each file's own size."
        )
    if min(size) <= 0:
        raise DatasetError(f"image_size={image_size!r} must be positive.")
    return size


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (extension in :data:`IMAGE_EXTENSIONS`, any case),
    sorted by file name; hidden files are skipped. A missing folder gives ``[]``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _open(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path`` with PIL, wrapping every decoding error."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy() if im.mode != "P" else im.convert("RGBA")
    except FileNotFoundError:
        raise DatasetError(f"{what} file {path} does not exist.") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(
            f"Could not read {what} file {path}: {err}. The file is truncated, corrupt or not an "
            "image; re-extract it from the original archive, or delete it."
        ) from err


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file, read from its header only (no decoding)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError:
        raise DatasetError(f"Image file {path} does not exist.") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(
            f"Could not read image file {path}: {err}. The file is corrupt or not an image; "
            "re-extract it from the original archive, or delete it."
        ) from err
    return height, width


def _decode(path: Path, what: str) -> np.ndarray:
    """Open ``path`` and convert it with :func:`_to_float`; pixel-value errors name the file."""
    im = _open(path, what)
    try:
        return _to_float(im)
    except ValueError as err:
        raise DatasetError(f"{what} file {path} is unusable: {err}. Re-export it as an 8- or 16-bit PNG.") from None


def _to_float(im: Image.Image) -> np.ndarray:
    """Decoded PIL image -> float32 array in [0, 1], (H, W) or (H, W, C), alpha dropped.

    Raises ValueError for float (``F``) images holding NaN (+-inf are clipped to 1 and 0)."""
    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "I":
        return np.clip(np.asarray(im, dtype=np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if np.isnan(arr).any():  # np.clip keeps NaN: it would reach the model as a pixel value
            raise ValueError(f"{int(np.isnan(arr).sum())} of its {arr.size} float pixels are NaN")
        return np.clip(arr, 0.0, 1.0)
    if im.mode in ("L", "1"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as float32 RGB in [0, 1], shape (H, W, 3).

    Greyscale data is replicated to three channels; see the module docstring for the modes.
    Raises :class:`DatasetError` (naming the file) when the file cannot be decoded.
    """
    path = Path(path)
    arr = _decode(path, "Image")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr)


def read_mask(path: str | os.PathLike, *, threshold: float = 0.0) -> np.ndarray:
    """Read a mask file as bool (H, W): True where the value is > ``threshold`` (in [0, 1] units).

    With the default ``threshold=0`` any non-zero pixel counts (the rule for ground-truth masks,
    docs/method.md §5); foreground maps use ``threshold=0.5``. Colour masks count a pixel when any colour
    channel passes; palette masks are judged by their displayed colour.
    """
    path = Path(path)
    arr = _decode(path, "Mask")
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr > threshold


def resize_image(image: np.ndarray | torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """(H, W, 3) array or (3, H, W) tensor in [0, 1] -> float32 tensor (3, h, w).

    Bilinear with antialiasing (``size=None`` only converts).
    """
    t = torch.as_tensor(image, dtype=torch.float32)
    if t.ndim == 3 and t.shape[-1] == 3 and t.shape[0] != 3:
        t = t.permute(2, 0, 1)
    t = t.contiguous()
    if size is None or tuple(t.shape[-2:]) == tuple(size):
        return t
    out = F.interpolate(t[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp_(0.0, 1.0)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for exact nearest-neighbour resampling (pixel centres
    aligned, as torch's ``nearest-exact`` and PIL's ``NEAREST``)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_mask(mask: np.ndarray | torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """(H, W) or (1, H, W) bool/0-1 mask -> float32 tensor (1, h, w) in {0, 1}.

    Exact nearest neighbour (pixel centres aligned), so a binary mask stays binary.
    """
    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr[0]
    arr = arr > 0.5
    if size is not None and arr.shape != tuple(size):
        rows = _nearest_index(arr.shape[0], size[0])
        cols = _nearest_index(arr.shape[1], size[1])
        arr = arr[np.ix_(rows, cols)]
    return torch.from_numpy(arr[None].astype(np.float32))
