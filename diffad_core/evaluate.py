"""Evaluation: run a trained model over a test split, compute the metrics, write a report.

    result = evaluate(model, open_dataset(root, "bottle", "test"), out_dir="runs/bottle/eval")
    result.metrics["image_auroc"], result.metrics["aupro"]

Steps:

1. :func:`predict_split` runs the norm-guided one-step inference (two eps_theta evaluations per
   image, DESIGN section 1) in batches and returns every anomaly map M (N, H, W), image score
   (mean of the top-k values of M) and the ground truth, as NumPy arrays (:class:`Predictions`).
2. :func:`evaluate` computes the metrics of :mod:`diffad_core.metrics` (image AUROC / AP / F1-max,
   pixel AUROC / AP / F1-max, AUPRO) and, with ``out_dir``, writes ``metrics.json``,
   ``metrics.md``, ``scores.csv`` and ``figures/`` (samples, ROC, PRO, score histogram).
3. :func:`summarize` puts several categories in one Markdown table, with the paper's published
   dataset means (:data:`PAPER_RESULTS`) beside ours.

Determinism: the noises eps_s, eps_b of the norm-guided pass come from one ``torch.Generator``
seeded with ``EvalConfig.seed`` and consumed batch after batch, so on a CPU the same model, data,
seed and ``batch_size`` give the same scores bit for bit. A different ``batch_size`` hands each
image other noise draws, and a different device or ``amp`` other arithmetic: the scores then
differ by the (small) randomness of the one-step estimate, not systematically.

Undefined metrics: every metric needs both classes. If the test split holds only normal (or only
anomalous) images, the image metrics are NaN; if the masks hold no anomalous (or no normal) pixel,
the pixel metrics and AUPRO are NaN. Each such case adds a sentence to ``EvalResult.warnings``
(and to ``metrics.json``'s ``"warnings"``) and raises a ``UserWarning``; the rest is still
computed. In ``metrics.json``, NaN is written as ``null`` (strict JSON has no NaN).

Speed: ``images_per_second`` is N divided by the time of the inference loop alone (host-to-device
copies included, metrics and file writing excluded). On CUDA one untimed warm-up batch runs
first and the clock is read after ``torch.cuda.synchronize()``; inside the loop nothing waits for
the device (results stay on it and are copied to the host once, at the end).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional, Protocol, Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "EvalConfig",
    "Predictions",
    "EvalResult",
    "METRIC_KEYS",
    "PAPER_RESULTS",
    "predict_split",
    "evaluate",
    "summarize",
    "write_summary",
    "compute_metrics",
    "reconstruction_psnr",
    "per_defect_metrics",
    "write_report",
    "figure_indices",
]

AmpMode = Literal["auto", "bf16", "off"]
AMP_MODES: tuple[str, ...] = ("auto", "bf16", "off")
MapDtype = Literal["float32", "float16"]
MAP_DTYPES: tuple[str, ...] = ("float32", "float16")

#: Metric keys of :func:`diffad_core.metrics.compute_all`, in report order.
METRIC_KEYS: tuple[str, ...] = (
    "image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro",
)
_IMAGE_KEYS = METRIC_KEYS[:3]
_PIXEL_KEYS = METRIC_KEYS[3:]
_LABELS = {
    "image_auroc": "image AUROC", "image_ap": "image AP", "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC", "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max",
    "aupro": "AUPRO",
}

#: The paper's published dataset-level means (DESIGN section 6), as fractions like our metrics
#: (0.997 means 99.7 %). Keys are our dataset names; only the figures the paper states as dataset
#: means are here, there are no per-category numbers. Pass one entry to :func:`summarize`.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "mvtec": {"image_auroc": 0.997, "pixel_auroc": 0.987, "aupro": 0.957, "pixel_ap": 0.761},
    "visa": {"image_auroc": 0.988, "pixel_auroc": 0.989},
    "mpdd": {"image_auroc": 0.962},
}


# --------------------------------------------------------------------------- configuration


@dataclass
class EvalConfig:
    """Inference and report settings (defaults: the paper's inference, DESIGN section 2).

    Fields:
        t_s, t_b: the small and big steps of norm guidance (200, 400).
        w: guidance weight (1.0).
        top_k: the image score is the mean of the top-k values of M (50).
        batch_size: images per forward pass.
        seed: seed of the generator of the noises eps_s, eps_b (results are deterministic on CPU).
        device: "auto" (CUDA if available, else CPU), or any torch device string ("cuda:1").
        amp: "auto" = bf16 autocast on CUDA, none on CPU; "bf16" = bf16 autocast (CUDA only;
            on another device it warns and runs in float32); "off" = float32.
        channels_last: run the networks in channels-last memory format (faster convs on GPUs).
        compile: ``torch.compile`` the two networks (in place, ``nn.Module.compile``) before the
            loop; the first batches then pay the compilation (seconds to minutes), so it pays
            off on large test sets on a GPU.
        num_figures: how many test images ``figures/samples.png`` shows (0: no samples figure).
        map_dtype: dtype in which maps are kept; "float16" halves the memory of large test sets
            (maps are in [0, 1], so float16 keeps about 3 significant digits).
    """

    t_s: int = 200
    t_b: int = 400
    w: float = 1.0
    top_k: int = 50
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    amp: AmpMode = "auto"
    channels_last: bool = False
    compile: bool = False
    num_figures: int = 8
    map_dtype: MapDtype = "float32"

    def __post_init__(self) -> None:
        if self.t_s < 0 or self.t_b < 0:
            raise ValueError(f"t_s and t_b must be >= 0, got t_s={self.t_s}, t_b={self.t_b}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not -(2**63) <= self.seed < 2**63 - 1:
            raise ValueError(f"seed must be a 64-bit signed integer (torch.manual_seed's range), got {self.seed}")
        if self.num_figures < 0:
            raise ValueError(f"num_figures must be >= 0, got {self.num_figures}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r} is unknown; choose one of {AMP_MODES}")
        if self.map_dtype not in MAP_DTYPES:
            raise ValueError(f"map_dtype={self.map_dtype!r} is unknown; choose one of {MAP_DTYPES}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalConfig":
        """Build from a dict, rejecting unknown keys (a misspelled key is an error, not ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EvalConfig keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)


class _Predictor(Protocol):
    """What :func:`predict_split` needs from a model (``DiffusionAD`` is one)."""

    def predict(self, images: Tensor, **kwargs: Any) -> Any: ...
    def eval(self) -> Any: ...
    def to(self, *args: Any, **kwargs: Any) -> Any: ...


# --------------------------------------------------------------------------- results


@dataclass
class Predictions:
    """Everything inference produced on one split (N images of H x W), on the host.

    Fields:
        scores: (N,) float32 image scores (mean of the top-k values of M).
        labels: (N,) int64, 0 good / 1 defect.
        maps: (N, H, W) anomaly maps M in [0, 1], float32 (or float16, ``EvalConfig.map_dtype``).
        masks: (N, H, W) uint8 ground truth in {0, 1}.
        paths, defects: N image paths and defect names ("good" for normal images).
        seconds: time of the inference loop; images_per_second: N / seconds.
        figure_indices: (K,) indices of the samples kept for pictures (:func:`figure_indices`).
        figure_images: (K, 3, H, W) float32 inputs of those samples, or None when K = 0.
        reconstructions: (K, 3, H, W) float32 x0_g of those samples in [0, 1], or None.
    """

    scores: np.ndarray
    labels: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    paths: list[str]
    defects: list[str]
    seconds: float
    images_per_second: float
    figure_indices: np.ndarray
    figure_images: Optional[np.ndarray] = None
    reconstructions: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class EvalResult:
    """One category's evaluation.

    Fields:
        category: name shown in reports (may be None).
        metrics: the :data:`METRIC_KEYS` (floats in [0, 1], NaN when undefined) plus
            ``n_images``, ``n_anomalous`` and ``images_per_second``.
        predictions: the :class:`Predictions` the metrics were computed from.
        warnings: why some metrics are NaN (empty when all are defined).
        per_defect: defect type -> the :data:`METRIC_KEYS` on the normal images plus the images
            of that type only (:func:`per_defect_metrics`); empty with fewer than two types.
    """

    category: Optional[str]
    metrics: dict[str, float]
    predictions: Predictions
    warnings: list[str] = field(default_factory=list)
    per_defect: dict[str, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------- inference


def _use_bf16(amp: str, device: torch.device) -> bool:
    if amp == "off":
        return False
    if device.type == "cuda":
        return True
    if amp == "bf16":
        warnings.warn(f"amp='bf16' autocast is used on CUDA only; running in float32 on {device}", stacklevel=3)
    return False


def figure_indices(labels: Union[np.ndarray, Tensor, Sequence[int]], k: int) -> np.ndarray:
    """Up to ``k`` sample indices for pictures, with both good and defect images when present.

    Half of ``k`` (rounded down) goes to good images and the rest to defect images (a class with
    too few images leaves its share to the other); within a class the picks are evenly spaced
    over its images in split order, so several defect types show up. Deterministic; returned
    sorted. Example: labels [0, 0, 0, 1, 1, 1], k = 4 -> [0, 2, 3, 5].
    """
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).ravel()
    good, bad = np.flatnonzero(y == 0), np.flatnonzero(y != 0)
    k = max(0, min(int(k), y.size))
    k_good = min(good.size, k // 2)
    k_bad = min(bad.size, k - k_good)
    k_good = min(good.size, k - k_bad)

    def spread(idx: np.ndarray, m: int) -> np.ndarray:
        if m == 0:
            return idx[:0]
        return idx[np.linspace(0, idx.size - 1, m).round().astype(np.int64)]

    return np.sort(np.concatenate([spread(good, k_good), spread(bad, k_bad)])).astype(np.int64)


@dataclass
class _Split:
    images: Tensor  # (N, 3, H, W) uint8 or float in [0, 1]
    masks: Tensor  # (N, H, W) uint8
    labels: Tensor  # (N,) long
    paths: list[str]
    defects: list[str]


def _as_split(data: Any) -> _Split:
    """Accept a ``SplitTensors`` (or any object with its fields) or a Dataset of sample dicts."""
    if not all(hasattr(data, a) for a in ("images", "masks", "labels")):
        if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
            raise TypeError(
                f"data must be a SplitTensors (diffad_core.data.load_tensors) or a Dataset of sample "
                f"dicts (diffad_core.data.open_dataset(root, category, 'test')), got {type(data).__name__}"
            )
        from .data import load_tensors

        data = load_tensors(data)
    images = torch.as_tensor(data.images)
    masks = torch.as_tensor(data.masks)
    labels = torch.as_tensor(data.labels).long().view(-1)
    n = labels.shape[0]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3 or masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"masks must be (N, 1, H, W) or (N, H, W) matching images {tuple(images.shape)}, "
            f"got {tuple(masks.shape)}"
        )
    if images.shape[0] != n or n == 0:
        raise ValueError(f"got {images.shape[0]} images but {n} labels; the split must hold >= 1 image")
    paths = [str(p) for p in getattr(data, "paths", None) or [f"#{i}" for i in range(n)]]
    defects = [str(d) for d in getattr(data, "defects", None) or ["good" if y == 0 else "defect" for y in labels.tolist()]]
    if len(paths) != n or len(defects) != n:
        raise ValueError(f"got {n} images but {len(paths)} paths and {len(defects)} defect names")
    return _Split(images, (masks > 0).to(torch.uint8), labels, paths, defects)


def _to_unit_float(x: Tensor) -> Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def predict_split(model: _Predictor, data: Any, config: Optional[EvalConfig] = None) -> Predictions:
    """Anomaly maps and image scores for every image of a split, in batches.

    Args:
        model: a :class:`~diffad_core.model.DiffusionAD` (or any object with the same
            ``predict(images, *, t_s, t_b, w, top_k, generator)``, ``eval`` and ``to``). It is put
            in eval mode and moved to ``config.device``.
        data: a ``SplitTensors`` (images (N, 3, H, W) uint8 or float in [0, 1], masks (N, 1, H, W),
            labels (N,), paths, defects), or a Dataset of sample dicts (loaded with
            ``diffad_core.data.load_tensors`` first, which quantises images to uint8).
        config: inference settings (:class:`EvalConfig`).

    Returns:
        :class:`Predictions` (NumPy arrays on the host).
    """
    config = config or EvalConfig()
    split = _as_split(data)
    n, (h, w) = split.images.shape[0], split.images.shape[-2:]
    size = getattr(model, "image_size", None)
    if size is not None and (h, w) != (int(size), int(size)):
        raise ValueError(
            f"the test images are {h} x {w} but the model was built for {size} x {size}; "
            f"open the dataset with image_size={size}"
        )
    from .train import resolve_device  # the one "auto" -> CUDA / CPU rule, shared with training

    device = resolve_device(config.device)
    bf16 = _use_bf16(config.amp, device)
    model.eval()
    model.to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.compile:
        for name in ("unet", "segnet"):
            net = getattr(model, name, None)
            if isinstance(net, torch.nn.Module):
                net.compile()
    map_dtype = torch.float16 if config.map_dtype == "float16" else torch.float32
    picks = figure_indices(split.labels, config.num_figures)
    pick_set = set(picks.tolist())
    images = split.images.pin_memory() if device.type == "cuda" else split.images
    bs = config.batch_size
    kwargs = dict(t_s=config.t_s, t_b=config.t_b, w=config.w, top_k=config.top_k)

    def batch(start: int) -> Tensor:
        x = _to_unit_float(images[start : start + bs].to(device, non_blocking=True))
        return x.contiguous(memory_format=memory_format)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    maps: list[Tensor] = []
    scores: list[Tensor] = []
    recs: list[Tensor] = []
    with torch.inference_mode(), autocast:
        if device.type == "cuda":  # untimed warm-up (kernel selection, allocator), its own noise
            warm = torch.Generator(device=device).manual_seed(config.seed + 1)
            model.predict(batch(0), generator=warm, **kwargs)
            torch.cuda.synchronize(device)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        start_time = time.perf_counter()
        for start in range(0, n, bs):
            out = model.predict(batch(start), generator=generator, **kwargs)
            maps.append(out.anomaly_map[:, 0].to(map_dtype))
            scores.append(out.score.float())
            for i in range(start, min(start + bs, n)):
                if i in pick_set:
                    recs.append(out.reconstruction[i - start : i - start + 1].float())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start_time

    maps_np = torch.cat(maps).cpu().numpy()
    if maps_np.shape != (n, h, w):
        raise ValueError(f"the model returned anomaly maps of shape {maps_np.shape[1:]}, expected ({h}, {w})")
    figure_images = reconstructions = None
    if picks.size:
        reconstructions = torch.cat(recs).cpu().numpy()
        figure_images = _to_unit_float(split.images[torch.from_numpy(picks)]).numpy()
    return Predictions(
        scores=torch.cat(scores).cpu().numpy().astype(np.float32),
        labels=split.labels.numpy().astype(np.int64),
        maps=maps_np,
        masks=split.masks.numpy(),
        paths=split.paths,
        defects=split.defects,
        seconds=float(seconds),
        images_per_second=float(n / seconds) if seconds > 0 else float("inf"),
        figure_indices=picks,
        figure_images=figure_images,
        reconstructions=reconstructions,
    )


# --------------------------------------------------------------------------- metrics


def reconstruction_psnr(model: Any, data: Any, config: Optional[EvalConfig] = None) -> float:
    """Mean PSNR (dB) of the norm-guided reconstruction x0_g against the input, over the *normal*
    images of a split (how well eps_theta reproduces what it should leave unchanged).

    Same inference settings and noise seed as :func:`predict_split`.
    """
    from .metrics import psnr

    config = config or EvalConfig()
    split = _as_split(data)
    normal = (split.labels == 0).nonzero().squeeze(1)
    if normal.numel() == 0:
        raise ValueError("reconstruction_psnr needs at least one normal image in the split")
    from .train import resolve_device

    device = resolve_device(config.device)
    model = model.eval().to(device)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    values = []
    with torch.no_grad():
        for start in range(0, normal.numel(), config.batch_size):
            x = _to_unit_float(split.images[normal[start:start + config.batch_size]]).to(device)
            out = model.predict(x, t_s=config.t_s, t_b=config.t_b, w=config.w, top_k=config.top_k, generator=gen)
            values.append(psnr(out.reconstruction.cpu().numpy(), x.cpu().numpy()))
    return float(np.mean(np.concatenate(values)))


def _both(y: np.ndarray) -> bool:
    n_pos = int(np.count_nonzero(y))
    return 0 < n_pos < y.size


def compute_metrics(pred: Predictions) -> tuple[dict[str, float], list[str]]:
    """The :data:`METRIC_KEYS` of ``pred``, with NaN (and a warning sentence) where undefined."""
    from . import metrics as M

    notes: list[str] = []
    image_ok = _both(pred.labels)
    pixel_ok = _both(pred.masks)
    if image_ok and pixel_ok:
        return M.compute_all(pred.scores, pred.labels, pred.maps, pred.masks), notes
    out = {k: float("nan") for k in METRIC_KEYS}
    n, n_bad = len(pred), int(np.count_nonzero(pred.labels))
    if image_ok:
        out.update(
            image_auroc=M.image_auroc(pred.scores, pred.labels),
            image_ap=M.image_ap(pred.scores, pred.labels),
            image_f1_max=M.f1_max(pred.scores, pred.labels),
        )
    else:
        kind = "normal (label 0)" if n_bad == 0 else "anomalous (label 1)"
        notes.append(
            f"all {n} test images are {kind}: image AUROC, AP and F1-max need both classes and are NaN"
        )
    if pixel_ok:
        out.update(
            pixel_auroc=M.pixel_auroc(pred.maps, pred.masks),
            pixel_ap=M.pixel_ap(pred.maps, pred.masks),
            pixel_f1_max=M.pixel_f1_max(pred.maps, pred.masks),
            aupro=M.aupro(pred.maps, pred.masks),
        )
    else:
        kind = "no anomalous pixel" if not pred.masks.any() else "no normal pixel"
        notes.append(
            f"the ground-truth masks have {kind}: pixel AUROC, AP, F1-max and AUPRO are NaN"
        )
    return out, notes


def per_defect_metrics(pred: Predictions) -> dict[str, dict[str, float]]:
    """Metrics per defect type: each type's images against all normal test images (MVTec-style
    per-defect breakdown). Types are the ``defects`` names other than "good"; NaN where undefined."""
    defects = np.asarray(pred.defects)
    good = defects == "good"
    out: dict[str, dict[str, float]] = {}
    for name in sorted(set(defects.tolist()) - {"good"}):
        keep = np.flatnonzero(good | (defects == name))
        part = dataclasses.replace(
            pred, scores=pred.scores[keep], labels=pred.labels[keep], maps=pred.maps[keep], masks=pred.masks[keep],
            paths=[pred.paths[i] for i in keep], defects=[pred.defects[i] for i in keep],
        )
        values, _ = compute_metrics(part)
        out[name] = {k: float(values[k]) for k in METRIC_KEYS} | {"n_images": int((defects == name).sum())}
    return out


# --------------------------------------------------------------------------- writing


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`diffad_core.checkpoint.atomic_path`)."""
    from .checkpoint import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _pct(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100.0 * value:.1f}"


def _metrics_markdown(result: EvalResult) -> str:
    m = result.metrics
    lines = [
        f"# Evaluation: {result.category or 'test split'}",
        "",
        f"{m['n_images']} test images, {m['n_anomalous']} anomalous; "
        f"{m['images_per_second']:.1f} images/s.",
        "",
        "| metric | value (%) |",
        "|---|---:|",
    ]
    lines += [f"| {_LABELS[k]} | {_pct(m[k])} |" for k in METRIC_KEYS]
    if result.per_defect:
        lines += ["", "Per defect type (its images against all normal test images):", "", per_defect_table(result)]
    if result.warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def per_defect_table(result: EvalResult) -> str:
    """A Markdown table of ``result.per_defect``: images, image AUROC, pixel AUROC, AUPRO (in %)."""
    keys = ("image_auroc", "pixel_auroc", "aupro")
    lines = ["| defect | images | " + " | ".join(_LABELS[k] for k in keys) + " |", "|---|---:|" + "---:|" * len(keys)]
    lines += [f"| {name} | {row['n_images']} | " + " | ".join(_pct(row[k]) for k in keys) + " |"
              for name, row in result.per_defect.items()]
    return "\n".join(lines)


def _scores_csv(pred: Predictions) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "defect", "label", "score"])
    for path, defect, label, score in zip(pred.paths, pred.defects, pred.labels, pred.scores):
        writer.writerow([path, defect, int(label), f"{float(score):.6g}"])
    return buf.getvalue()


def _write_figures(pred: Predictions, folder: Path) -> None:
    from . import viz

    if pred.figure_images is not None and pred.reconstructions is not None:
        idx = pred.figure_indices
        titles = [f"{pred.defects[i]}  s={pred.scores[i]:.3f}" for i in idx]
        fig = viz.plot_samples(
            pred.figure_images, pred.reconstructions, pred.maps[idx].astype(np.float32), pred.masks[idx], titles
        )
        viz.save_figure(fig, folder / "samples.png")
    viz.save_figure(viz.plot_roc(pred.scores, pred.labels, pred.maps, pred.masks), folder / "roc.png")
    viz.save_figure(viz.plot_pro(pred.maps, pred.masks), folder / "pro.png")
    viz.save_figure(viz.plot_score_histogram(pred.scores, pred.labels), folder / "histogram.png")


def write_report(result: EvalResult, out_dir: Union[str, os.PathLike], config: Optional[EvalConfig] = None) -> Path:
    """Write ``metrics.json``, ``metrics.md``, ``scores.csv`` and ``figures/*.png`` to ``out_dir``.

    Each file is written atomically (a temporary file, then ``os.replace``), so a crash never
    leaves a half-written report. NaN metrics are ``null`` in ``metrics.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pred = result.predictions
    payload = {
        "category": result.category,
        "metrics": result.metrics,
        "warnings": result.warnings,
        "per_defect": result.per_defect,
        "seconds": pred.seconds,
        "config": config.to_dict() if config is not None else None,
    }
    _write_atomic(out / "metrics.json", json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")
    _write_atomic(out / "metrics.md", _metrics_markdown(result))
    _write_atomic(out / "scores.csv", _scores_csv(pred))
    _write_figures(pred, out / "figures")
    return out


# --------------------------------------------------------------------------- entry points


def evaluate(
    model: _Predictor,
    data: Any,
    config: Optional[EvalConfig] = None,
    *,
    out_dir: Optional[Union[str, os.PathLike]] = None,
    category: Optional[str] = None,
) -> EvalResult:
    """Predict a test split, compute every metric, and optionally write the report.

    Args:
        model, data, config: as for :func:`predict_split`.
        out_dir: if given, :func:`write_report` writes metrics.json, metrics.md, scores.csv and
            figures/ (samples.png, roc.png, pro.png, histogram.png) there.
        category: name for the report (defaults to the dataset's ``category`` attribute if any).

    Returns:
        :class:`EvalResult`. Metrics that a one-class split leaves undefined are NaN, explained
        in ``result.warnings`` (see the module docstring).
    """
    config = config or EvalConfig()
    if category is None:
        category = getattr(data, "category", None)
    pred = predict_split(model, data, config)
    metrics, notes = compute_metrics(pred)
    for note in notes:
        warnings.warn(f"{category or 'evaluation'}: {note}", UserWarning, stacklevel=2)
    metrics = {k: float(metrics[k]) for k in METRIC_KEYS}
    metrics.update(
        n_images=len(pred),
        n_anomalous=int(np.count_nonzero(pred.labels)),
        images_per_second=pred.images_per_second,
    )
    kinds = set(pred.defects) - {"good"}
    result = EvalResult(category=category, metrics=metrics, predictions=pred, warnings=notes,
                        per_defect=per_defect_metrics(pred) if len(kinds) > 1 else {})
    if out_dir is not None:
        write_report(result, out_dir, config)
    return result


def summarize(results: Sequence[EvalResult], paper: Optional[dict[str, float]] = None) -> str:
    """A Markdown table: one row per category, their mean, and the paper's figures if given.

    Args:
        results: one :class:`EvalResult` per category.
        paper: published dataset means, e.g. ``PAPER_RESULTS["mvtec"]`` (fractions, like our
            metrics). Adds a "paper" row under the mean (``–`` where the paper gives no figure)
            and a "mean - paper" row in percentage points.

    The mean ignores NaN entries (a category where a metric is undefined); values in %.
    """
    if not results:
        raise ValueError("summarize got no results; pass a list of EvalResult")
    if paper is not None:
        unknown = sorted(set(paper) - set(METRIC_KEYS))
        if unknown:
            raise ValueError(f"paper has unknown metric keys {unknown}; valid keys are {list(METRIC_KEYS)}")
    header = "| category | " + " | ".join(_LABELS[k] for k in METRIC_KEYS) + " | images/s |"
    rule = "|---|" + "---:|" * (len(METRIC_KEYS) + 1)
    lines = [header, rule]
    for i, r in enumerate(results):
        name = r.category or f"#{i}"
        cells = [_pct(r.metrics.get(k)) for k in METRIC_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r.metrics.get('images_per_second', float('nan')):.1f} |")
    means: dict[str, float] = {}
    for k in METRIC_KEYS:
        vals = np.array([r.metrics.get(k, float("nan")) for r in results], dtype=np.float64)
        means[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    ips = np.array([r.metrics.get("images_per_second", float("nan")) for r in results], dtype=np.float64)
    ips_mean = float(np.nanmean(ips)) if np.isfinite(ips).any() else float("nan")
    lines.append("| **mean** | " + " | ".join(f"**{_pct(means[k])}**" for k in METRIC_KEYS) + f" | {ips_mean:.1f} |")
    if paper is not None:
        lines.append("| paper | " + " | ".join(_pct(paper.get(k)) for k in METRIC_KEYS) + " | |")
        diffs = []
        for k in METRIC_KEYS:
            if k in paper and math.isfinite(means[k]):
                diffs.append(f"{100.0 * (means[k] - paper[k]):+.1f}")
            else:
                diffs.append("–")
        lines.append("| mean - paper | " + " | ".join(diffs) + " | |")
    return "\n".join(lines) + "\n"


def write_summary(
    out_dir: Union[str, os.PathLike],
    results: Sequence[EvalResult],
    table: Optional[str] = None,
    *,
    name: str = "summary",
) -> Path:
    """Write a multi-category summary: ``<name>.md`` (the table) and ``<name>.json`` (the numbers).

    Args:
        out_dir: folder (created).
        results: the per-category results.
        table: the Markdown table to write (default: ``summarize(results)``, without paper row).
        name: file stem.

    Returns:
        The path of ``<name>.md``. Both files are written atomically; NaN is ``null`` in JSON.
    """
    out = Path(out_dir)
    if table is None:
        table = summarize(results)
    md = f"# {name}\n\nValues in % (images/s: inference only).\n\n{table}"
    notes = [f"- {r.category or f'#{i}'}: {w}" for i, r in enumerate(results) for w in r.warnings]
    if notes:
        md += "\nWarnings:\n\n" + "\n".join(notes) + "\n"
    payload = [{"category": r.category, "metrics": r.metrics, "warnings": r.warnings} for r in results]
    _write_atomic(out / f"{name}.json", json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")
    _write_atomic(out / f"{name}.md", md)
    return out / f"{name}.md"
