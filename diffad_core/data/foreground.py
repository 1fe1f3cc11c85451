"""Foreground masks: where on a training image a synthetic anomaly may be placed.

As docs/method.md §4 describes, the released code multiplies each Perlin anomaly region by a foreground mask,
precomputed by the DIS salient-object model for objects (``DISthresh/``) and a random blob mask
for textures (``thresh/``). The readers use such files when a category folder has them (see
:mod:`diffad_core.data.layouts`); otherwise the mask is computed here:

* textures: the whole image. The synthesizer's thresholded Perlin noise already picks a random
  part of the image, which is what the released random blob masks achieve;
* objects: :func:`estimate_foreground`, a classical heuristic for the industrial setting of an
  object photographed on a plain, roughly uniform background.

The heuristic, per image (sizes relative to s = min(H, W)):

1. background colour c_bg = per-channel median of a border band 5 % of s wide;
2. distance map d(p) = ||x(p) - c_bg||_2 over the RGB channels, smoothed by a Gaussian with
   sigma = 1 % of s (at least 1 pixel) so background texture does not speckle it;
3. threshold d: Otsu's threshold (skimage.filters.threshold_otsu) splits the pixels in two
   classes, and the cut is moved to the midpoint of the two class means (one Ridler-Calvard
   step), which lands in the middle of the smoothed object edge; foreground = d > cut;
4. morphological closing then opening with a square of side 2r + 1, r = 1 % of s (at least 1);
   holes smaller than 1 % of the image filled (larger holes, such as the bore of a nut, show the
   background and stay out); connected components smaller than 0.5 % of the image dropped;
5. fallback to the whole image when the result is implausible: the image is flat (no contrast
   to threshold), or the mask covers less than 2 % or more than 98 % of it.

It fails on objects that fill the frame, touch most of the border or match the background
colour; for those, supply DIS masks (``DISthresh/``) or use ``foreground="whole"``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy import ndimage
from skimage import filters

__all__ = ["ForegroundMode", "FOREGROUND_MODES", "estimate_foreground"]

#: How a reader builds each sample's ``foreground``: "auto" (foreground files when present,
#: else whole image for textures and :func:`estimate_foreground` for objects), "estimate"
#: (always the heuristic) or "whole" (every pixel).
ForegroundMode = Literal["auto", "estimate", "whole"]
FOREGROUND_MODES: tuple[str, ...] = ("auto", "estimate", "whole")

BORDER_FRACTION = 0.05  # width of the border band that samples the background colour
SMOOTH_FRACTION = 0.01  # Gaussian sigma of the distance map, and the morphology disk radius
HOLE_FRACTION = 0.01  # holes smaller than this fraction of the image are filled
MIN_COMPONENT_FRACTION = 0.005  # components smaller than this fraction are dropped
PLAUSIBLE_RANGE = (0.02, 0.98)  # accepted foreground fraction; outside -> whole image


def _drop_small_components(
    mask: np.ndarray, min_area: float, *, keep_border: bool = False
) -> np.ndarray:
    """Remove 8-connected components of ``mask`` with fewer than ``min_area`` pixels.

    With ``keep_border`` components touching the image border are always kept (used on the
    inverted mask, so only enclosed holes get filled).
    """
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_area
    if keep_border:
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        keep[edge] = True
    keep[0] = False
    return keep[labels]


def _estimate_one(image: np.ndarray) -> np.ndarray:
    """(3, H, W) float array in [0, 1] -> bool (H, W) foreground."""
    _, height, width = image.shape
    side = min(height, width)
    whole = np.ones((height, width), dtype=bool)
    band = max(2, int(round(BORDER_FRACTION * side)))
    if 2 * band >= side:
        return whole
    border = np.concatenate(
        [
            image[:, :band, :].reshape(3, -1),
            image[:, -band:, :].reshape(3, -1),
            image[:, band:-band, :band].reshape(3, -1),
            image[:, band:-band, -band:].reshape(3, -1),
        ],
        axis=1,
    )
    background = np.median(border, axis=1)
    distance = np.sqrt(((image - background[:, None, None]) ** 2).sum(axis=0))
    distance = ndimage.gaussian_filter(distance, sigma=max(1.0, SMOOTH_FRACTION * side))
    if distance.max() - distance.min() < 1e-3:
        return whole
    split = filters.threshold_otsu(distance)
    # One Ridler-Calvard step: the midpoint of the two class means puts the cut in the middle of
    # the (smoothed) edge, where Otsu's cut leans towards the larger class.
    threshold = 0.5 * (distance[distance <= split].mean() + distance[distance > split].mean())
    mask = distance > threshold

    reach = max(1, int(round(SMOOTH_FRACTION * side)))
    footprint = np.ones((2 * reach + 1, 2 * reach + 1), dtype=bool)
    mask = ndimage.binary_closing(mask, structure=footprint, border_value=0)
    mask = ndimage.binary_opening(mask, structure=footprint, border_value=0)
    mask = ~_drop_small_components(~mask, HOLE_FRACTION * height * width, keep_border=True)
    mask = _drop_small_components(mask, MIN_COMPONENT_FRACTION * height * width)
    fraction = mask.mean()
    if not PLAUSIBLE_RANGE[0] <= fraction <= PLAUSIBLE_RANGE[1]:
        return whole
    return mask


def estimate_foreground(image: torch.Tensor) -> torch.Tensor:
    """Estimate the object foreground of image(s) on a plain background.

    Args:
        image: (3, H, W) or (B, 3, H, W) tensor in [0, 1] (any float dtype, any device).

    Returns:
        float32 tensor of 0/1 on the input's device: (1, H, W) for one image, (B, 1, H, W) for a
        batch. 1 marks the object. Implausible results fall back to all ones (see the module
        docstring for the steps and thresholds).
    """
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(
            f"estimate_foreground expects a (3, H, W) or (B, 3, H, W) RGB tensor, got shape "
            f"{tuple(image.shape)}; repeat a greyscale channel three times first."
        )
    batch = image if image.ndim == 4 else image[None]
    arrays = batch.detach().to("cpu", torch.float64).numpy()
    masks = np.stack([_estimate_one(a) for a in arrays])[:, None]
    out = torch.from_numpy(masks.astype(np.float32)).to(image.device)
    return out if image.ndim == 4 else out[0]
