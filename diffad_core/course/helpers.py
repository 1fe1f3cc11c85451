"""Small helpers the notebooks call: sample pickers, masked errors, timing, best / worst images.

They hold the little pieces of logic a course needs that are not part of the method itself, so
that notebook cells only import and show (STYLE principle 8):

* :func:`mini_examples` renders a few mini-benchmark images (normal and defective) in memory;
* :func:`masked_errors` is the mean |x - x0| inside and outside an anomaly mask;
* :func:`time_per_image` and :func:`compare_speed` measure the one-step norm-guided pass against
  iterative DDPM / DDIM reconstruction from the same t;
* :func:`rank_examples` picks the best and worst test images of an evaluation;
* :func:`course_model` loads (or retrains, with a progress bar) the model a notebook uses and
  :func:`shipped_steps` says how many steps the shipped one was trained for.
"""

from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data import MINI_CATEGORIES, MINI_DEFECTS, render_mini_sample
from ..metrics import ArrayLike
from ..reconstruction import iterative_reconstruct
from ..schedule import NoiseSchedule

__all__ = [
    "Examples",
    "mini_examples",
    "anomaly_to_noise",
    "course_model",
    "shipped_steps",
    "RETRAIN_SECONDS_PER_STEP_CPU",
    "MaskedError",
    "masked_errors",
    "time_per_image",
    "SpeedComparison",
    "compare_speed",
    "RankedExamples",
    "rank_examples",
]

class Examples(NamedTuple):
    """Rendered samples: ``images`` (N, 3, H, W) float in [0, 1], ``masks`` (N, 1, H, W) float
    {0, 1}, ``clean`` (N, 3, H, W) the same scenes without their defect, ``defects`` N names."""

    images: Tensor
    masks: Tensor
    clean: Tensor
    defects: list[str]


def mini_examples(
    category: str = "brick",
    defects: Optional[Sequence[str]] = None,
    *,
    image_size: int = 64,
    seed: int = 0,
) -> Examples:
    """Render one mini-benchmark image per entry of ``defects`` (in memory, no files).

    Args:
        category: a key of :data:`diffad_core.MINI_CATEGORIES`.
        defects: "good" and / or defect names of that category (default: every defect kind).
        image_size: side of the square images (64 matches the shipped brick and pill, 128 gravel and nut).
        seed: the same seed gives the same images.

    Returns:
        :class:`Examples`.
    """
    if category not in MINI_CATEGORIES:
        raise ValueError(f"unknown mini category {category!r}; choose one of {list(MINI_CATEGORIES)}")
    names = list(MINI_DEFECTS[category]) if defects is None else list(defects)
    if not names:
        raise ValueError("defects is empty: name at least one ('good' or a defect kind)")
    rng = np.random.default_rng(seed)
    images, masks, clean = [], [], []
    for name in names:
        s = render_mini_sample(category, name, rng=rng, image_size=image_size)
        images.append(torch.from_numpy(s.image).permute(2, 0, 1).float() / 255.0)
        clean.append(torch.from_numpy(s.clean).permute(2, 0, 1).float() / 255.0)
        masks.append(torch.from_numpy(s.mask.astype(np.float32))[None])
    return Examples(torch.stack(images), torch.stack(masks), torch.stack(clean), names)


class MaskedError(NamedTuple):
    """Mean absolute error (averaged over channels) ``inside`` and ``outside`` a mask; NaN where
    the region is empty."""

    inside: float
    outside: float


def masked_errors(x: ArrayLike, x0: ArrayLike, mask: ArrayLike) -> MaskedError:
    """Mean |x - x0| over the pixels inside and outside ``mask``.

    Args:
        x, x0: images of the same shape, (3, H, W) or (N, 3, H, W) (the channel mean of |x - x0|
            is taken per pixel first).
        mask: (H, W), (1, H, W), (N, H, W) or (N, 1, H, W); pixels > 0 are "inside".

    Returns:
        :class:`MaskedError`. With a good reconstruction of an anomalous image, ``inside`` is
        large (the anomaly was removed) and ``outside`` small (the normal part was kept).
    """
    a = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x.detach().cpu()).float()
    b = torch.as_tensor(np.asarray(x0) if not isinstance(x0, Tensor) else x0.detach().cpu()).float()
    if a.shape != b.shape:
        raise ValueError(f"x {tuple(a.shape)} and x0 {tuple(b.shape)} must have the same shape")
    if a.dim() == 3:
        a, b = a[None], b[None]
    if a.dim() != 4:
        raise ValueError(f"x must be (3, H, W) or (N, 3, H, W), got {tuple(a.shape)}")
    err = (a - b).abs().mean(dim=1)  # (N, H, W)
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask.detach().cpu()) > 0
    m = m.reshape(-1, *m.shape[-2:]) if m.dim() >= 2 else m
    m = m.expand_as(err) if m.shape[0] == 1 else m
    if m.shape != err.shape:
        raise ValueError(f"mask {tuple(m.shape)} does not match the images' (N, H, W) = {tuple(err.shape)}")
    inside = float(err[m].mean()) if m.any() else math.nan
    outside = float(err[~m].mean()) if (~m).any() else math.nan
    return MaskedError(inside, outside)


def time_per_image(fn: Callable[[], object], batch: int, *, repeats: int = 3, warmup: int = 1) -> float:
    """Seconds per image of ``fn()`` (which processes ``batch`` images): the best of ``repeats``
    timed calls after ``warmup`` untimed ones, divided by ``batch``. The minimum is the least
    disturbed by other work on the machine. CUDA work is synchronised before reading the clock."""
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch >= 1, repeats >= 1, warmup >= 0; got {batch}, {repeats}, {warmup}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best / batch


class SpeedComparison(NamedTuple):
    """Seconds per image of DiffusionAD's one-step norm-guided pass and of iterative denoising,
    their ``ratio`` (iterative / one-step), and the network calls per image of each."""

    one_step: float
    iterative: float
    ratio: float
    one_step_calls: int
    iterative_calls: int


@torch.no_grad()
def compare_speed(
    model: torch.nn.Module,
    images: Tensor,
    *,
    t_start: int = 400,
    method: str = "ddpm",
    steps: Optional[int] = None,
    repeats: int = 2,
) -> SpeedComparison:
    """Time the one-step norm-guided reconstruction (2 eps_theta calls, t_s = 200, t_b = ``t_start``)
    against iterative ``method`` reconstruction from ``t_start`` (``t_start + 1`` calls for DDPM,
    ``steps`` for DDIM) on the same ``images`` (B, 3, H, W) in [0, 1].

    The ratio is the paper's "hundreds of times faster" claim measured here; it depends on the
    machine and its load (each figure is the best of ``repeats``).
    """
    x = model.to_model_space(images.to(model.device))
    one = time_per_image(lambda: model.reconstruct(images.to(model.device), t_s=min(200, t_start), t_b=t_start),
                         images.shape[0], repeats=repeats)
    calls = t_start + 1 if method == "ddpm" else (steps if steps is not None else t_start + 1)
    it = time_per_image(
        lambda: iterative_reconstruct(model.unet, model.schedule, x, t_start, steps, method),  # type: ignore[arg-type]
        images.shape[0], repeats=1, warmup=0,
    )
    return SpeedComparison(one, it, it / one, 2, calls)


class RankedExamples(NamedTuple):
    """Indices into an evaluation's test split (each sorted from most to least extreme):
    ``best_defects`` defective images with the highest scores (found), ``worst_defects`` with the
    lowest (missed), ``worst_good`` normal images with the highest scores (false alarms)."""

    best_defects: np.ndarray
    worst_defects: np.ndarray
    worst_good: np.ndarray


def rank_examples(scores: ArrayLike, labels: ArrayLike, k: int = 2) -> RankedExamples:
    """The ``k`` best-detected and ``k`` worst-missed defects and the ``k`` worst false alarms.

    Args:
        scores: (N,) image scores; labels: (N,) 0 good / 1 defect.
    """
    s = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=np.float64).ravel()
    y = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels).ravel() > 0
    if s.shape != y.shape:
        raise ValueError(f"got {s.size} scores but {y.size} labels")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    bad, good = np.flatnonzero(y), np.flatnonzero(~y)
    bad_sorted = bad[np.argsort(-s[bad], kind="stable")]
    good_sorted = good[np.argsort(-s[good], kind="stable")]
    return RankedExamples(bad_sorted[:k], bad_sorted[::-1][:k], good_sorted[:k])


def anomaly_to_noise(schedule: NoiseSchedule, image: Tensor, clean: Tensor, mask: Tensor, t: int) -> float:
    """How visible an anomaly still is in x_t: sqrt(abar_t) * mean |x - x_clean| over the mask,
    divided by the noise scale sqrt(1 - abar_t).

    The forward process scales the image - and with it the anomaly's difference from a normal
    image - by sqrt(abar_t) and adds noise of standard deviation sqrt(1 - abar_t); below about 1
    the anomaly is smaller than the noise around it. ``image``, ``clean``: (3, H, W); ``mask``:
    (1, H, W) or (H, W), non-empty. Returns ``inf`` at a t where abar_t = 1.
    """
    m = mask.reshape(image.shape[-2:]) > 0
    if not m.any():
        raise ValueError("mask is empty: pass the mask of a defective image")
    contrast = float((image - clean).abs().mean(dim=0)[m].mean())
    abar = float(schedule.alphas_cumprod[t])
    noise = math.sqrt(max(1.0 - abar, 0.0))
    return math.inf if noise == 0 else math.sqrt(abar) * contrast / noise


#: Seconds per training step of ``course_model(retrain=True)`` measured on the 2-core development
#: CPU with one thread (OMP_NUM_THREADS=1, float32, another process busy), 2026-12-01: the
#: up-front estimate it prints. The progress bar then shows the rate on the machine at hand.
RETRAIN_SECONDS_PER_STEP_CPU = 2.5


def shipped_steps(category: str = "brick") -> Optional[int]:
    """Training steps of the shipped model for ``category``, as recorded in its weights' metadata
    (``"steps"``); None when the file or the entry is missing."""
    from safetensors import safe_open

    from ..pretrained import pretrained_path

    try:
        with safe_open(str(pretrained_path(category)), "pt") as f:
            return int((f.metadata() or {})["steps"])
    except (OSError, KeyError, ValueError):
        return None


def course_model(
    category: str = "brick",
    *,
    retrain: bool = False,
    steps: int = 300,
    device: str = "cpu",
    callback: Optional[Callable[[dict], None]] = None,
    progress: bool = True,
) -> torch.nn.Module:
    """The model a notebook uses: the shipped weights (:func:`diffad_core.pretrained.load_pretrained`),
    or, with ``retrain=True``, a "tiny" 64 x 64 model adapted from the shipped pretrained start
    (``init="pretrained"``) for ``steps`` steps on the mini benchmark's training images (generated
    in a temporary folder).

    Loading prints nothing. Retraining first prints one line with the number of steps and a
    rough duration (:data:`RETRAIN_SECONDS_PER_STEP_CPU` per step on a CPU: about 12 minutes for
    the default 300 steps with one thread), then, with ``progress``, shows ``fit``'s progress
    bar (a widget in a notebook, text elsewhere) with the measured rate and time left.
    """
    from ..pretrained import load_pretrained

    if not retrain:
        return load_pretrained(category, device=device)
    import tempfile

    from ..data import make_mini_benchmark, open_dataset
    from ..train import TrainConfig, fit

    if category not in MINI_CATEGORIES:
        raise ValueError(f"unknown mini category {category!r}; choose one of {list(MINI_CATEGORIES)}")
    shipped = shipped_steps(category)
    shipped_note = f" (the shipped model had {shipped})" if shipped is not None else ""
    if str(device).startswith("cpu"):
        seconds = steps * RETRAIN_SECONDS_PER_STEP_CPU
        length = f"{seconds:.0f} s" if seconds < 90 else f"{round(seconds / 60)} min"
        duration = (f"roughly {length} on a CPU ({RETRAIN_SECONDS_PER_STEP_CPU:g} s per step measured with one "
                    f"thread on a busy 2-core machine; the bar shows the rate here)")
    else:
        duration = f"on {device}"
    print(f"retraining a tiny {category!r} model from the pretrained start: {steps} steps{shipped_note}, "
          f"{duration}; retrain=False loads the shipped weights at once", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_mini_benchmark(tmp, categories=[category], image_size=64, num_test_good=1, num_per_defect=1)
        train = open_dataset(root, category, "train", image_size=64)
        cfg = TrainConfig.from_preset("tiny", steps=steps, device=device)
        return fit(cfg, train, kind=MINI_CATEGORIES[category], progress=progress, callback=callback).model
