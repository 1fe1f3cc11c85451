"""Drawing for the mini benchmark: normal scenes (textures, a nut, a pill) and defect painters.

Private helpers of :mod:`diffad_core.data.mini` (which documents the benchmark). Everything here
is plain numpy on (H, W) / (H, W, 3) float64 arrays in [0, 1]; randomness comes only from the
``numpy.random.Generator`` passed in, so a seed fixes every pixel.

A scene is a defect-free rendering plus what the painters need (object coverage, and the
background under the object). A painter returns ``(alpha, target)``: the defect is
``x_clean (1 - alpha) + target alpha``. Geometric constants are pixels at a 128 x 128 image and
scale with the image size.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

REFERENCE = 128  # geometric constants below are in pixels at this image size

_TEXTURE_TINT = {"brick": (1.08, 0.80, 0.64), "gravel": (1.0, 0.96, 0.90)}

Painter = Callable[["Scene", np.random.Generator], tuple[np.ndarray, np.ndarray]]


class Scene(NamedTuple):
    """A defect-free rendering (float, [0, 1]) and what the defect painters need."""

    clean: np.ndarray  # (H, W, 3)
    coverage: np.ndarray  # (H, W) object coverage in [0, 1]; ones for textures
    background: Optional[np.ndarray]  # (H, W, 3) what lies under the object; None for textures


# ----------------------------------------------------------------------------- material


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A greyscale texture photograph of skimage.data as float64 (512, 512) in [0, 1]."""
    from skimage import data

    return getattr(data, name)().astype(np.float64) / 255.0


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(array, (size, size), order=1, anti_aliasing=True, mode="reflect")


def _photo_crop(name: str, rng: np.random.Generator, size: int, zoom: float) -> np.ndarray:
    """Random square crop of ``zoom * size`` pixels resized to ``size`` (H, W), random flips."""
    photo = _photo(name)
    side = min(photo.shape[0], int(round(zoom * size)))
    top = rng.integers(0, photo.shape[0] - side + 1)
    left = rng.integers(0, photo.shape[1] - side + 1)
    crop = photo[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1, :]
    return _resize(np.ascontiguousarray(crop), size)


def _smooth_field(rng: np.random.Generator, size: int, waves: int = 3) -> np.ndarray:
    """Low-frequency random field (H, W) in [-1, 1]: a few random plane waves (< 1.5 cycles)."""
    y, x = _grid(size)
    field = np.zeros((size, size))
    for _ in range(waves):
        fy, fx = rng.uniform(-1.5, 1.5, 2) * 2 * np.pi / size
        field += np.cos(fy * y + fx * x + rng.uniform(0, 2 * np.pi))
    return field / waves


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each (H, W) float64."""
    axis = np.arange(size, dtype=np.float64)
    return np.meshgrid(axis, axis, indexing="ij")


def quantise(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded, clipped)."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- normal scenes


def _render_texture(name: str, rng: np.random.Generator, size: int) -> Scene:
    grey = _photo_crop(name, rng, size, zoom=1.5)
    if name == "gravel":
        grey = np.rot90(grey, k=int(rng.integers(0, 4)))
    grey = grey * rng.uniform(0.94, 1.06) + rng.uniform(-0.02, 0.02)
    tint = np.asarray(_TEXTURE_TINT[name])
    cast = 1.0 + 0.015 * np.stack([_smooth_field(rng, size) for _ in range(3)], axis=-1)
    clean = np.clip(grey[..., None] * tint * cast, 0.0, 1.0)
    return Scene(clean, np.ones((size, size)), None)


def _background(rng: np.random.Generator, size: int, colour: Sequence[float]) -> np.ndarray:
    """Plain backdrop: a colour, faint photo texture (grass) and a soft illumination gradient."""
    texture = _photo_crop("grass", rng, size, zoom=2.0)
    texture = (texture - texture.mean()) * 0.08
    light = 0.025 * _smooth_field(rng, size, waves=2)
    return np.clip(np.asarray(colour) * (1.0 + light[..., None]) + texture[..., None], 0, 1)


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Antialiased coverage (H, W) in [0, 1] of a shape from its signed distance (< 0 inside)."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _render_nut(rng: np.random.Generator, size: int) -> Scene:
    k = size / REFERENCE
    cy, cx = size / 2 - 0.5 + rng.uniform(-6, 6, 2) * k
    radius = 40.0 * k * rng.uniform(0.92, 1.08)  # circumradius of the hexagon
    bore = 0.42 * radius
    theta = rng.uniform(0.0, np.pi / 3)
    apothem = radius * np.cos(np.pi / 6)
    normals = theta + np.pi / 6 + np.arange(6) * np.pi / 3

    y, x = _grid(size)
    r = np.hypot(y - cy, x - cx)
    phi = np.arctan2(y - cy, x - cx)
    projections = np.stack([(x - cx) * np.cos(a) + (y - cy) * np.sin(a) for a in normals])
    depth = projections.max(axis=0)  # <= apothem inside the hexagon
    facet = projections.argmax(axis=0)
    # Signed distance of (hexagon minus bore): exact along the sides, close enough at corners.
    coverage = _coverage(np.maximum(depth - apothem, bore - r))
    background = _background(rng, size, (0.19, 0.25, 0.21))

    light = np.deg2rad(-135.0)  # light from the top left (image y points down)
    grain = _photo_crop("gravel", rng, size, zoom=1.0)
    metal = 0.60 + rng.uniform(-0.03, 0.03) + 0.10 * (grain - grain.mean())
    # Bevel along the six sides: each facet lit by how much its normal faces the light.
    bevel = (depth > 0.86 * apothem) * (0.10 * np.cos(normals[facet] - light) - 0.04)
    # Countersunk cone around the bore: its wall opposite the light faces the light (bright).
    ring = ((r > bore) & (r < 1.3 * bore)) * (-0.10 * np.cos(phi - light) - 0.03)
    nut = np.clip(metal + bevel + ring, 0.0, 1.0)[..., None] * np.array([0.98, 0.99, 1.03])
    clean = background * (1 - coverage[..., None]) + nut * coverage[..., None]
    return Scene(np.clip(clean, 0.0, 1.0), coverage, background)


def _segment_distance(
    y: np.ndarray, x: np.ndarray, y0: float, x0: float, y1: float, x1: float
) -> np.ndarray:
    """Distance (H, W) from each pixel (y, x) to the segment (y0, x0)-(y1, x1)."""
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((y - y0) * dy + (x - x0) * dx) / max(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
    return np.hypot(y - (y0 + t * dy), x - (x0 + t * dx))


def _render_pill(rng: np.random.Generator, size: int) -> Scene:
    k = size / REFERENCE
    cy, cx = size / 2 - 0.5 + rng.uniform(-6, 6, 2) * k
    half = 24.0 * k * rng.uniform(0.93, 1.07)  # half-length of the axis segment
    radius = 18.0 * k * rng.uniform(0.93, 1.07)
    angle = rng.uniform(0.0, np.pi)
    ay, ax = np.sin(angle) * half, np.cos(angle) * half

    y, x = _grid(size)
    axis_distance = _segment_distance(y, x, cy - ay, cx - ax, cy + ay, cx + ax)
    coverage = _coverage(axis_distance - radius)
    background = _background(rng, size, (0.13, 0.14, 0.17))
    d = np.minimum(axis_distance / radius, 1.0)
    height = np.sqrt(1.0 - d**2)
    base = np.array([0.93, 0.90, 0.83]) * rng.uniform(0.97, 1.02)
    pill = base * (0.80 + 0.20 * height)[..., None]
    # Score line across the middle, perpendicular to the axis.
    along = ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) / max(half, 1e-6)
    groove = np.clip(1.0 - np.abs(along * half) / (0.8 * k), 0.0, 1.0) * 0.22
    pill = pill * (1.0 - groove[..., None])
    # Red speckles (normal variation, as on MVTec AD's pill).
    for _ in range(int(rng.integers(20, 45))):
        r0 = rng.uniform(0.8, 1.5) * k
        t = rng.uniform(-1.0, 1.0)
        s = rng.uniform(-0.8, 0.8) * radius
        py = cy + t * ay + s * np.cos(angle)
        px = cx + t * ax - s * np.sin(angle)
        opacity = rng.uniform(0.4, 0.85)
        reach = int(np.ceil(r0)) + 2
        rows = slice(max(int(py) - reach, 0), int(py) + reach + 1)
        cols = slice(max(int(px) - reach, 0), int(px) + reach + 1)
        dot = np.clip(r0 + 0.5 - np.hypot(y[rows, cols] - py, x[rows, cols] - px), 0, 1)
        dot = (dot * opacity)[..., None]
        pill[rows, cols] = pill[rows, cols] * (1 - dot) + np.array([0.72, 0.24, 0.20]) * dot
    clean = background * (1 - coverage[..., None]) + pill * coverage[..., None]
    return Scene(np.clip(clean, 0.0, 1.0), coverage, background)


def render_scene(category: str, rng: np.random.Generator, size: int) -> Scene:
    """The defect-free scene of a mini category (``size`` x ``size``)."""
    if category == "nut":
        return _render_nut(rng, size)
    if category == "pill":
        return _render_pill(rng, size)
    return _render_texture(category, rng, size)


# ----------------------------------------------------------------------------- defects
# Each painter returns (alpha (H, W) in [0, 1], target (H, W, 3)); the defect is
# x_clean (1 - alpha) + target alpha.


def _pick_point(scene: Scene, rng: np.random.Generator, margin: float) -> tuple[float, float]:
    """A random pixel at least ``margin`` px inside the object (or the image for textures)."""
    from scipy import ndimage

    size = scene.coverage.shape[0]
    inner = scene.coverage >= 0.5
    if scene.background is not None:
        inner = ndimage.distance_transform_edt(inner) >= margin
    lo, hi = int(np.ceil(margin)), int(size - np.ceil(margin))
    window = np.zeros_like(inner)
    window[lo:hi, lo:hi] = True
    ys, xs = np.nonzero(inner & window)
    if len(ys) == 0:
        ys, xs = np.nonzero(scene.coverage >= 0.5)
    i = rng.integers(0, len(ys))
    return float(ys[i]), float(xs[i])


def _polyline_alpha(points: np.ndarray, width: float, size: int) -> np.ndarray:
    """Antialiased alpha (H, W) of a polyline (N, 2) of (y, x) points drawn ``width`` px wide."""
    y, x = _grid(size)
    dist = np.full((size, size), np.inf)
    for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
        dist = np.minimum(dist, _segment_distance(y, x, y0, x0, y1, x1))
    return np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)


def _scratch(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Thin quadratic-Bezier line, 12-50 px long, 0.6-2.2 px wide, brighter or darker."""
    size = scene.coverage.shape[0]
    k = size / REFERENCE
    p0 = np.array(_pick_point(scene, rng, 4 * k))
    length = rng.uniform(12, 50) * k
    direction = rng.uniform(0, 2 * np.pi)
    p2 = p0 + length * np.array([np.sin(direction), np.cos(direction)])
    bend = rng.uniform(-0.3, 0.3) * length
    p1 = (p0 + p2) / 2 + bend * np.array([np.cos(direction), -np.sin(direction)])
    t = np.linspace(0, 1, 24)[:, None]
    points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    alpha = _polyline_alpha(points, rng.uniform(0.6, 2.2) * k, size)
    contrast = rng.uniform(0.06, 0.45) * rng.choice([-1.0, 1.0])
    return alpha, np.clip(scene.clean + contrast, 0.0, 1.0)


def _pit(
    scene: Scene, rng: np.random.Generator, *, hole: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Shaded circular pit of radius 2-7.5 px; ``hole`` adds a dark core."""
    size = scene.coverage.shape[0]
    k = size / REFERENCE
    radius = rng.uniform(2.0, 7.5) * k
    cy, cx = _pick_point(scene, rng, radius + 1)
    y, x = _grid(size)
    r = np.hypot(y - cy, x - cx)
    alpha = np.clip(radius + 0.5 - r, 0.0, 1.0)
    # Paraboloid depression h = -D (1 - r^2 / R^2); Lambert shading relative to the flat surface.
    depth = rng.uniform(0.5, 1.2)
    gy, gx = 2 * depth * (y - cy) / radius**2, 2 * depth * (x - cx) / radius**2
    light = np.array([-1.0, -1.0, 1.5]) / np.linalg.norm([-1.0, -1.0, 1.5])
    normal_l = (-gy * light[0] - gx * light[1] + light[2]) / np.sqrt(1 + gy**2 + gx**2)
    shade = (normal_l - light[2]) * rng.uniform(0.4, 1.0)
    target = scene.clean + shade[..., None]
    if hole:
        core = np.clip(1.0 - r / (0.75 * radius), 0.0, 1.0) ** 0.7 * rng.uniform(0.4, 0.95)
        target = target * (1 - core[..., None]) + 0.03 * core[..., None]
    return alpha, np.clip(target, 0.0, 1.0)


def _stain(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Smooth-edged blob (sum of Gaussians, smoothstep edge) shifting the colour."""
    size = scene.coverage.shape[0]
    k = size / REFERENCE
    extent = rng.uniform(4.0, 16.0) * k
    cy, cx = _pick_point(scene, rng, 2 * k)
    y, x = _grid(size)
    field = np.zeros((size, size))
    for _ in range(int(rng.integers(2, 6))):
        oy, ox = rng.normal(0, 0.5 * extent, 2)
        sigma = extent * rng.uniform(0.4, 0.8)
        field += np.exp(-((y - cy - oy) ** 2 + (x - cx - ox) ** 2) / (2 * sigma**2))
    edge = rng.uniform(0.2, 0.5)
    shape = np.clip((field - edge) / 0.35, 0.0, 1.0)
    shape = shape * shape * (3 - 2 * shape)  # smoothstep: soft edge
    opacity = rng.uniform(0.35, 0.9)
    colours = {
        "rust": (0.85, 0.55, 0.30),
        "oil": (0.45, 0.45, 0.50),
        "bleach": (1.35, 1.32, 1.22),
        "ink": (0.55, 0.65, 0.95),
    }
    shift = np.asarray(colours[rng.choice(sorted(colours))])
    strength = rng.uniform(0.4, 1.0)
    target = scene.clean * (1 + strength * (shift - 1))
    return shape * opacity, np.clip(target, 0.0, 1.0)


def _crack(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dark jagged random-walk polyline with one or two thinner branches."""
    size = scene.coverage.shape[0]
    k = size / REFERENCE
    start = np.array(_pick_point(scene, rng, 6 * k))

    def walk(p: np.ndarray, heading: float, steps: int) -> np.ndarray:
        points = [p]
        for _ in range(steps):
            heading += rng.uniform(-0.6, 0.6)
            step = rng.uniform(1.5, 3.5) * k
            points.append(points[-1] + step * np.array([np.sin(heading), np.cos(heading)]))
        return np.array(points)

    heading = rng.uniform(0, 2 * np.pi)
    trunk = walk(start, heading, int(rng.integers(8, 20)))
    width = rng.uniform(0.7, 1.8) * k
    alpha = _polyline_alpha(trunk, width, size)
    for _ in range(int(rng.integers(1, 3))):
        fork = trunk[rng.integers(1, len(trunk) - 1)]
        turn = rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
        branch = walk(fork, heading + turn, int(rng.integers(3, 9)))
        alpha = np.maximum(alpha, _polyline_alpha(branch, 0.7 * width, size))
    darkness = rng.uniform(0.25, 0.8)
    return alpha, scene.clean * (1 - darkness)


def _missing(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disk bitten out of the object's outer outline; the background shows through."""
    from scipy import ndimage

    if scene.background is None:
        raise ValueError("a missing piece needs an object category")
    size = scene.coverage.shape[0]
    k = size / REFERENCE
    solid = scene.coverage >= 0.5
    labels, _ = ndimage.label(~solid)
    edge_labels = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.isin(labels, np.unique(edge_labels))  # background around (not inside) the object
    outline = solid & ndimage.binary_dilation(outside & ~solid)
    ys, xs = np.nonzero(outline)
    i = rng.integers(0, len(ys))
    centroid = np.array(ndimage.center_of_mass(solid))
    outward = np.array([ys[i], xs[i]]) - centroid
    outward /= max(np.linalg.norm(outward), 1e-6)
    radius = rng.uniform(3.0, 10.0) * k
    cy, cx = np.array([ys[i], xs[i]]) + outward * radius * rng.uniform(0.0, 0.6)
    y, x = _grid(size)
    bite = np.clip(radius + 0.5 - np.hypot(y - cy, x - cx), 0.0, 1.0)
    return bite * scene.coverage, scene.background


def _particle(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Opaque irregular blob (70 %) or curly fibre (30 %) of a foreign, grainy material."""
    size = scene.coverage.shape[0]
    k = size / REFERENCE
    materials = [  # soot, dirt, yellow plastic, blue plastic, white fleck
        (0.08, 0.07, 0.06), (0.30, 0.20, 0.12), (0.90, 0.85, 0.30), (0.20, 0.35, 0.80),
        (0.95, 0.95, 0.95),
    ]
    colour = np.asarray(materials[rng.integers(0, len(materials))])
    grain = _photo_crop("grass", rng, size, zoom=1.0)
    target = np.clip(colour * (1.0 + 0.5 * (grain - grain.mean()))[..., None], 0.0, 1.0)
    if rng.random() < 0.3:  # a fibre: thin, curly, dark or coloured
        p0 = np.array(_pick_point(scene, rng, 4 * k))
        heading = rng.uniform(0, 2 * np.pi)
        points = [p0]
        for _ in range(int(rng.integers(6, 16))):
            heading += rng.uniform(-0.5, 0.5)
            points.append(points[-1] + 2.0 * k * np.array([np.sin(heading), np.cos(heading)]))
        alpha = _polyline_alpha(np.array(points), rng.uniform(0.8, 1.6) * k, size)
    else:  # an irregular blob
        r0 = rng.uniform(1.5, 6.0) * k
        cy, cx = _pick_point(scene, rng, r0 + 2)
        y, x = _grid(size)
        phi = np.arctan2(y - cy, x - cx)
        wobble = sum(
            rng.uniform(0, 0.25) * np.cos(n * phi + rng.uniform(0, 2 * np.pi)) for n in (2, 3, 5)
        )
        alpha = np.clip(r0 * (1 + wobble) + 0.5 - np.hypot(y - cy, x - cx), 0.0, 1.0)
    return alpha, target


PAINTERS: dict[str, Painter] = {
    "scratch": _scratch,
    "hole": functools.partial(_pit, hole=True),
    "dent": functools.partial(_pit, hole=False),
    "stain": _stain,
    "crack": _crack,
    "missing": _missing,
    "particle": _particle,
}
