"""Scoring new, unlabelled images: ``diffad predict`` and its Python twin :func:`predict_folder`.

    summary = predict_folder("runs/brick/model.safetensors", "incoming/", "runs/brick/predict")
    summary.rows[0].path, summary.rows[0].score, summary.rows[0].decision

What it does:

1. collects the images: a folder (recursively), a glob pattern (``**`` allowed) or one file; any
   extension of :data:`diffad_core.data.imageio.IMAGE_EXTENSIONS`, any size;
2. decodes each file (a file that cannot be read gets one line on stderr and is skipped, the run
   goes on), resizes it to the model's side, and predicts in batches with the shared inference
   loop (:func:`diffad_core.inference.run_batches`, the paper's setting, seeded noise);
3. writes to the output folder, every file atomically:

   * ``predictions.csv``: ``path, score, normalized_score, decision, threshold, height, width``,
     one row per readable image in input order; ``decision`` is ``defect`` when the score is at
     or above the threshold, ``good`` below it, and empty when no threshold is known;
   * ``maps/<name>.png``: the anomaly map at the image's *original* resolution (bilinear
     upsampling), 8-bit grey, 0 = map value 0, 255 = 1;
   * ``overlays/<rank>_<name>.png``: image | map overlay figures of the ``top_k`` highest scores
     (all images when there are at most ``top_k``);
   * ``summary.json``: counts, threshold and its source, seconds.

The threshold: ``threshold=`` when given, else the image threshold calibrated on held-out normal
images and synthetic anomalies and stored in the model file (:mod:`diffad_core.calibration`),
else none (scores only). ``normalized_score`` = score / threshold (1.0 = at the threshold).
"""

from __future__ import annotations

import csv
import glob
import io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .files import write_json, write_text
from .inference import EvalConfig, run_batches

__all__ = ["collect_images", "predict_folder", "PredictionRow", "PredictSummary"]

PathLike = Union[str, os.PathLike]


def collect_images(source: PathLike) -> list[Path]:
    """Image files of ``source``: a folder (recursively, sorted), a glob pattern, or one file.

    Raises FileNotFoundError (naming ``source``) when nothing matches.
    """
    from .data.imageio import IMAGE_EXTENSIONS

    text = str(source)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not found:
            raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
        return found
    if any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise FileNotFoundError(f"the pattern {text!r} matches no image file")
        return found
    raise FileNotFoundError(f"{text} is neither an image file, a folder nor a glob pattern")


@dataclass
class PredictionRow:
    """One scored image: its path, original size, score, normalised score and decision."""

    path: str
    height: int
    width: int
    score: float
    normalized_score: Optional[float]
    decision: str
    threshold: Optional[float]


@dataclass
class PredictSummary:
    """What :func:`predict_folder` returns (also written as ``summary.json``)."""

    rows: list[PredictionRow]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    threshold: Optional[float] = None
    threshold_source: str = "none"
    seconds: float = 0.0
    out_dir: Optional[Path] = None

    @property
    def n_defect(self) -> int:
        return sum(r.decision == "defect" for r in self.rows)

    def line(self) -> str:
        """The one-line summary the command prints."""
        verdict = (f"{self.n_defect} at or above the threshold {self.threshold:.4g} ({self.threshold_source})"
                   if self.threshold is not None else "no threshold (pass --threshold or calibrate the model)")
        return (f"{len(self.rows)} images scored, {len(self.skipped)} skipped; {verdict}; "
                f"{self.seconds:.1f} s; results in {self.out_dir}")


def _safe_name(path: Path, used: set[str]) -> str:
    raw = f"{path.parent.name}_{path.stem}" if path.parent.name else path.stem
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in raw) or "image"
    name, i = stem, 1
    while name in used:
        i += 1
        name = f"{stem}_{i}"
    used.add(name)
    return name


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    from .files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _overlay_figure(image: np.ndarray, amap: np.ndarray, title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    from .viz import overlay_anomaly_map, save_figure

    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax_img, ax_map = fig.subplots(1, 2)
    ax_img.imshow(image)
    ax_img.set_title(title, fontsize=9)
    ax_map.imshow(overlay_anomaly_map(image.transpose(2, 0, 1), amap, vmin=0.0, vmax=max(float(amap.max()), 1e-6)))
    ax_map.set_title(f"anomaly map (max {amap.max():.3f})", fontsize=9)
    for ax in (ax_img, ax_map):
        ax.axis("off")
    save_figure(fig, path)


def predict_folder(
    model: Any,
    images: Union[PathLike, Sequence[PathLike]],
    out_dir: PathLike,
    config: Optional[EvalConfig] = None,
    *,
    threshold: Optional[float] = None,
    top_k: int = 16,
    progress: bool = True,
    warn: Any = None,
) -> PredictSummary:
    """Score every image of ``images`` with ``model`` (a model or a model file) and write the results.

    Args:
        model: a :class:`~diffad_core.model.DiffusionAD` or the path of a model file.
        images: a folder, a glob pattern, one file, or a list of files.
        out_dir: output folder (created); see the module docstring for its files.
        config: inference settings (batch size, device, seed; the paper's t_s / t_b / w / top-k).
        threshold: image-score threshold; None takes the one stored with the model, if any.
        top_k: how many overlay figures (highest scores first).
        progress: a progress bar on stdout.
        warn: called with one line per skipped file (default: print to stderr).
    """
    from .checkpoint import load_model
    from .data.errors import DatasetError
    from .data.imageio import read_image, resize_image

    config = config or EvalConfig()
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    warn = warn or (lambda line: print(line, file=sys.stderr))
    paths = collect_images(images) if isinstance(images, (str, os.PathLike)) else [Path(p) for p in images]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder; pick another output path")
    calibration = getattr(model, "calibration", None) or {}
    source = "given" if threshold is not None else ("calibrated" if "image_threshold" in calibration else "none")
    if threshold is None and "image_threshold" in calibration:
        threshold = float(calibration["image_threshold"])
    size = int(model.image_size)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), file=sys.stdout, desc="predict", dynamic_ncols=True, leave=False)
    rows: list[PredictionRow] = []
    skipped: list[tuple[str, str]] = []
    top: list[tuple[float, int, np.ndarray]] = []  # (score, row index, map at original size), kept small
    used: set[str] = set()
    names: list[str] = []
    t0 = time.perf_counter()
    bs = config.batch_size
    for start in range(0, len(paths), bs):
        batch_paths, batch_images = [], []
        for p in paths[start:start + bs]:
            try:
                arr = read_image(p)
            except DatasetError as err:
                skipped.append((str(p), str(err)))
                warn(f"diffad: skipped {p}: {str(err).splitlines()[0]}")
                continue
            batch_paths.append(p)
            batch_images.append((arr, resize_image(arr, (size, size))))
        if not batch_images:
            if bar is not None:
                bar.update(len(paths[start:start + bs]))
            continue
        stack = torch.stack([small for _, small in batch_images])
        outputs: list[Any] = []
        run_batches(model, stack, config, lambda _s, pred: outputs.append(pred))
        maps = torch.cat([o.anomaly_map for o in outputs]).float().cpu()
        scores = torch.cat([o.score for o in outputs]).float().cpu()
        for (arr, _), p, amap, score in zip(batch_images, batch_paths, maps, scores):
            h, w = arr.shape[:2]
            full = F.interpolate(amap[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0].clamp_(0, 1).numpy()
            name = _safe_name(p, used)
            names.append(name)
            _write_bytes(out / "maps" / f"{name}.png", _png_bytes((full * 255.0 + 0.5).astype(np.uint8)))
            s = float(score)
            decision = "" if threshold is None else ("defect" if s >= threshold else "good")
            rows.append(PredictionRow(str(p), h, w, s, s / threshold if threshold else None, decision, threshold))
            top.append((s, len(rows) - 1, full))
            top.sort(key=lambda item: -item[0])
            del top[top_k:]
        if bar is not None:
            bar.update(len(paths[start:start + bs]))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    if not rows:
        raise ValueError(f"none of the {len(paths)} files could be read; see the lines above")
    for rank, (s, i, full) in enumerate(top, start=1):
        arr = read_image(rows[i].path)  # decoded again: only the top_k are kept in memory as maps
        label = f"{Path(rows[i].path).parent.name}/{Path(rows[i].path).name}  score {s:.4f}" + (f"  -> {rows[i].decision}" if rows[i].decision else "")
        _overlay_figure(arr, full, label, out / "overlays" / f"{rank:03d}_{names[i]}.png")

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "score", "normalized_score", "decision", "threshold", "height", "width"])
    for r in rows:
        writer.writerow([r.path, f"{r.score:.6g}", "" if r.normalized_score is None else f"{r.normalized_score:.6g}",
                         r.decision, "" if r.threshold is None else f"{r.threshold:.6g}", r.height, r.width])
    write_text(out / "predictions.csv", buf.getvalue())
    summary = PredictSummary(rows, skipped, threshold, source, seconds, out)
    write_json(out / "summary.json", {
        "images": len(rows), "skipped": [{"path": p, "reason": r} for p, r in skipped], "defect": summary.n_defect,
        "threshold": threshold, "threshold_source": source, "seconds": round(seconds, 3),
        "config": config.to_dict(), "overlays": len(top),
    })
    return summary
