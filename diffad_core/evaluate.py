"""Evaluation: metrics of a model's predictions on a test split, reports, multi-category tables.

    result = evaluate(model, open_dataset(root, "bottle", "test"), out_dir="runs/bottle/eval")
    result.metrics["image_auroc"], result.metrics["aupro"]

Steps:

1. :func:`diffad_core.inference.predict_split` runs the norm-guided one-step inference (two
   eps_theta evaluations per image, docs/method.md §1) in batches and returns every anomaly map M,
   image score and the ground truth as NumPy arrays (:class:`~diffad_core.inference.Predictions`);
   determinism and timing are described there.
2. :func:`evaluate` computes the metrics of :mod:`diffad_core.metrics` (image AUROC / AP / F1-max,
   pixel AUROC / AP / F1-max, AUPRO) and, with ``out_dir``, writes ``metrics.json``,
   ``metrics.md``, ``scores.csv`` and ``figures/`` (samples, ROC, PRO, score histogram).
3. :func:`summarize` puts several categories in one Markdown table, with the paper's published
   dataset means (:data:`PAPER_RESULTS`) beside ours.

Undefined metrics: every metric needs both classes. If the test split holds only normal (or only
anomalous) images, the image metrics are NaN; if the masks hold no anomalous (or no normal) pixel,
the pixel metrics and AUPRO are NaN. Each such case adds a sentence to ``EvalResult.warnings``
(and to ``metrics.json``'s ``"warnings"``) and raises a ``UserWarning``; the rest is still
computed. In ``metrics.json``, NaN is written as ``null`` (strict JSON has no NaN).

``images_per_second`` is N divided by the time of the inference loop alone (metrics and file
writing excluded).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import metrics as M
from .files import write_json, write_text
from .inference import EvalConfig, Predictions, predict_split

__all__ = [
    "EvalResult",
    "METRIC_KEYS",
    "PAPER_RESULTS",
    "evaluate",
    "summarize",
    "write_summary",
    "compute_metrics",
    "per_defect_metrics",
    "per_defect_table",
    "threshold_metrics",
    "threshold_line",
    "write_report",
]

#: Metric keys of :func:`diffad_core.metrics.compute_all`, in report order.
METRIC_KEYS: tuple[str, ...] = (
    "image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro",
)
_LABELS = {
    "image_auroc": "image AUROC", "image_ap": "image AP", "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC", "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max",
    "aupro": "AUPRO",
}

#: The paper's published dataset-level means (docs/method.md §6), as fractions like our metrics
#: (0.997 means 99.7 %). Keys are our dataset names; only the figures the paper states as dataset
#: means are here, there are no per-category numbers. Pass one entry to :func:`summarize`.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "mvtec": {"image_auroc": 0.997, "pixel_auroc": 0.987, "aupro": 0.957, "pixel_ap": 0.761},
    "visa": {"image_auroc": 0.988, "pixel_auroc": 0.989},
    "mpdd": {"image_auroc": 0.962},
}


# --------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    """One category's evaluation.

    Fields:
        category: name shown in reports (may be None).
        metrics: the :data:`METRIC_KEYS` (floats in [0, 1], NaN when undefined) plus
            ``n_images``, ``n_anomalous`` and ``images_per_second``.
        predictions: the :class:`~diffad_core.inference.Predictions` the metrics were computed from.
        warnings: why some metrics are NaN (empty when all are defined).
        per_defect: defect type -> the :data:`METRIC_KEYS` on the normal images plus the images
            of that type only (:func:`per_defect_metrics`); empty with fewer than two types.
    """

    category: Optional[str]
    metrics: dict[str, float]
    predictions: Predictions
    warnings: list[str] = field(default_factory=list)
    per_defect: dict[str, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------- metrics


def compute_metrics(pred: Predictions) -> tuple[dict[str, float], list[str]]:
    """The :data:`METRIC_KEYS` of ``pred``, with NaN (and a warning sentence) where undefined."""
    from . import metrics as M

    notes: list[str] = []
    image_ok = M.has_both_classes(pred.labels)
    unknown = 0 if pred.mask_known is None else int(np.count_nonzero(~np.asarray(pred.mask_known, dtype=bool)))
    pixel_ok = unknown == 0 and M.has_both_classes(pred.masks)
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
        if unknown:
            notes.append(
                f"{unknown} of the {n_bad} defect images have no ground-truth mask: pixel AUROC, AP, F1-max "
                "and AUPRO are not available (image metrics only)"
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
            mask_known=pred.mask_known[keep] if pred.mask_known is not None else None,
        )
        values, _ = compute_metrics(part)
        out[name] = {k: float(values[k]) for k in METRIC_KEYS} | {"n_images": int((defects == name).sum())}
    return out


# --------------------------------------------------------------------------- writing


def _pct(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100.0 * value:.1f}"


def threshold_metrics(pred: Predictions, threshold: Optional[float], calibration: Optional[dict]) -> dict[str, Any]:
    """Precision / recall / F1 at a fixed decision threshold (image level, and pixel level when the
    calibration holds a pixel threshold): ``threshold`` if given, else the calibrated one; {} if none.

    The calibrated thresholds come from held-out normal training images and synthetic anomalies
    (:mod:`diffad_core.calibration`); they never saw the test labels they are scored on here.
    """
    from .calibration import at_threshold

    calibration = calibration or {}
    source = "given" if threshold is not None else "calibrated"
    if threshold is None:
        threshold = calibration.get("image_threshold")
    if threshold is None:
        return {}
    out: dict[str, Any] = {"threshold": float(threshold), "threshold_source": source}
    image = at_threshold(pred.scores, pred.labels, threshold)
    out.update({f"image_{k}_at_threshold": v for k, v in image.items()})
    masks_known = pred.mask_known is None or bool(np.all(pred.mask_known))
    if calibration.get("pixel_threshold") is not None and masks_known and M.has_both_classes(pred.masks):
        out["pixel_threshold"] = float(calibration["pixel_threshold"])
        pixel = at_threshold(pred.maps.astype(np.float32), pred.masks, out["pixel_threshold"])
        out.update({f"pixel_{k}_at_threshold": v for k, v in pixel.items()})
    return out


def threshold_line(result: "EvalResult") -> Optional[str]:
    """One sentence with the "at threshold" figures of ``result`` (None when no threshold is known)."""
    m = result.metrics
    if "threshold" not in m:
        return None
    where = ("calibrated on held-out normal training images and synthetic anomalies, never on test labels"
             if m["threshold_source"] == "calibrated" else "given")
    text = (f"at the image threshold {m['threshold']:.4g} ({where}): precision {_pct(m['image_precision_at_threshold'])} %, "
            f"recall {_pct(m['image_recall_at_threshold'])} %, F1 {_pct(m['image_f1_at_threshold'])} %")
    if "pixel_threshold" in m:
        text += (f"; pixels at {m['pixel_threshold']:.4g}: precision {_pct(m['pixel_precision_at_threshold'])} %, "
                 f"recall {_pct(m['pixel_recall_at_threshold'])} %, F1 {_pct(m['pixel_f1_at_threshold'])} %")
    return text


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
    line = threshold_line(result)
    if line:
        lines += ["", line[0].upper() + line[1:] + "."]
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
    write_json(out / "metrics.json", payload)
    write_text(out / "metrics.md", _metrics_markdown(result))
    write_text(out / "scores.csv", _scores_csv(pred))
    _write_figures(pred, out / "figures")
    return out


# --------------------------------------------------------------------------- entry points


def evaluate(
    model: Any,
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
    metrics.update(threshold_metrics(pred, config.threshold, getattr(model, "calibration", None)))
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
    write_json(out / f"{name}.json", payload)
    write_text(out / f"{name}.md", md)
    return out / f"{name}.md"
