"""Does a model see each defect kind at all, or only rank whole images differently?

    python tools/localisation.py --checkpoint runs/mt128-s35bn --data ../shared/data \\
        --category magnetic_tile [--blur 7] [--t-s 200 --t-b 400] [--threads 2]

The pixel AUROC of ``diffad eval`` pools every pixel of every test image, so two things mix in it:
whether the anomaly map ranks a defect's pixels above the normal pixels *of the same image*, and
whether whole images score higher or lower than others (exposure, session, texture). This tool
separates them. Per defect kind it prints:

- the share of the test set's defective pixels that kind holds (the weight it has in the pooled
  pixel AUROC);
- the pooled pixel AUROC on the normal images plus that kind's images (as ``diffad eval``'s
  per-defect table);
- the within-image pixel AUROC of the anomaly map M: for each image whose mask holds both classes,
  the AUROC of its own pixels; mean and median over those images. 50 means M does not single out
  the defect inside its own image;
- the same for the reconstruction error, ``|x - x0_g|`` averaged over channels and box-blurred
  (``--blur`` pixels, 0 for none), at the same inference setting: whether the norm-guided
  reconstruction removes the defect, before the SegNet looks at it. ``--t-s`` and ``--t-b`` change
  both noise levels (the paper's 200 and 400 by default) to ask whether a stronger noising would.

A kind that scores near 50 within its images cannot be found by any threshold or image-level
normalisation; a kind whose within-image figure is high and pooled figure low is lost to offsets
between images. The last line is one JSON object with the same figures. It reads labels only to
report; choose no setting with it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from diffad_core.inference import EvalConfig, predict_images, to_unit_float
from diffad_core.metrics import has_both_classes, pixel_auroc


class KindFigures(NamedTuple):
    """Localisation figures of one defect kind (AUROCs in [0, 1], NaN when undefined)."""

    images: int  # images of the kind whose mask holds both classes
    pixel_share: float  # share of all defective pixels of the split
    pooled_auroc: float  # pixels of the normal images and of this kind's images, pooled
    within_mean: float  # anomaly map M, per-image AUROC, mean
    within_median: float
    error_within_mean: float  # reconstruction error, per-image AUROC, mean (NaN without errors)
    error_within_median: float


def within_image_auroc(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per-image pixel AUROC of maps (N, H, W) against masks (N, H, W); NaN where a mask is
    empty or full (one class only)."""
    out = np.full(len(maps), np.nan)
    for i, (m, g) in enumerate(zip(maps, masks)):
        if has_both_classes(g):
            out[i] = pixel_auroc(m[None], g[None])
    return out


def reconstruction_error(images: np.ndarray, reconstructions: np.ndarray, blur: int) -> np.ndarray:
    """|x - x0_g| averaged over channels, (N, 3, H, W) -> (N, H, W), box-blurred over ``blur`` pixels
    (odd; 0 or 1 leaves it as is)."""
    err = torch.from_numpy(np.abs(images - reconstructions).mean(axis=1, keepdims=True))
    if blur > 1:
        err = F.avg_pool2d(err, blur, stride=1, padding=blur // 2, count_include_pad=False)
    return err[:, 0].numpy()


def kind_figures(
    maps: np.ndarray, masks: np.ndarray, defects: list[str], errors: np.ndarray | None = None
) -> dict[str, KindFigures]:
    """:class:`KindFigures` per defect kind ("good" images are the normals of every kind)."""
    defects_arr = np.asarray(defects)
    good = defects_arr == "good"
    total = float(masks[~good].sum())
    per_map = within_image_auroc(maps, masks)
    per_err = within_image_auroc(errors, masks) if errors is not None else np.full(len(maps), np.nan)
    result: dict[str, KindFigures] = {}
    for kind in sorted(set(defects) - {"good"}):
        inside = defects_arr == kind
        both = inside & ~np.isnan(per_map)
        pooled_rows = inside | good
        pooled_masks = masks[pooled_rows]
        pooled = pixel_auroc(maps[pooled_rows], pooled_masks) if has_both_classes(pooled_masks) else math.nan
        result[kind] = KindFigures(
            images=int(both.sum()),
            pixel_share=float(masks[inside].sum()) / total if total else math.nan,
            pooled_auroc=float(pooled),
            within_mean=_defined(per_map[inside], np.mean),
            within_median=_defined(per_map[inside], np.median),
            error_within_mean=_defined(per_err[inside], np.mean),
            error_within_median=_defined(per_err[inside], np.median),
        )
    return result


def _defined(values: np.ndarray, reduce: Callable[[np.ndarray], float]) -> float:
    """``reduce`` over the non-NaN values (NaN when there are none)."""
    values = values[~np.isnan(values)]
    return float(reduce(values)) if len(values) else math.nan


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def table(figures: dict[str, KindFigures]) -> str:
    """The figures as a Markdown table (percentages)."""
    lines = ["| defect | images with both classes | share of defective pixels | pooled pixel AUROC "
             "| within-image AUROC of M (mean / median) | within-image AUROC of the reconstruction error (mean / median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind, f in figures.items():
        lines.append(f"| {kind} | {f.images} | {_pct(f.pixel_share)} | {_pct(f.pooled_auroc)} "
                     f"| {_pct(f.within_mean)} / {_pct(f.within_median)} "
                     f"| {_pct(f.error_within_mean)} / {_pct(f.error_within_median)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run folder or model file")
    parser.add_argument("--data", type=Path, required=True, help="dataset root (MVTec layout)")
    parser.add_argument("--category", required=True)
    parser.add_argument("--blur", type=int, default=7, help="box blur of the reconstruction error, pixels (odd)")
    parser.add_argument("--t-s", type=int, default=EvalConfig.t_s, help="the small noise level t_s")
    parser.add_argument("--t-b", type=int, default=EvalConfig.t_b, help="the big noise level t_b")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.blur < 0 or (args.blur > 1 and args.blur % 2 == 0):
        print(f"error: --blur {args.blur} must be 0, 1 or an odd number of pixels", file=sys.stderr)
        return 2
    if not args.checkpoint.exists():
        print(f"error: {args.checkpoint} does not exist; pass a run folder or a model file", file=sys.stderr)
        return 2

    from diffad_core.checkpoint import load_model
    from diffad_core.data import load_tensors, open_dataset
    from diffad_core.runtime import set_threads

    set_threads(args.threads)
    model = load_model(args.checkpoint)
    steps = model.schedule.num_train_timesteps
    for flag, t in (("--t-s", args.t_s), ("--t-b", args.t_b)):
        if not 0 <= t < steps:
            print(f"error: {flag} {t} is outside the model's noise levels 0..{steps - 1}", file=sys.stderr)
            return 2
    split = load_tensors(open_dataset(args.data, args.category, "test", image_size=model.image_size))
    # a defect image without a ground-truth mask would count as normal pixels: leave it out
    keep = torch.ones(len(split.defects), dtype=torch.bool) if split.mask_known is None else split.mask_known
    rows = keep.nonzero().squeeze(1)
    pred = predict_images(model, split.images[rows], EvalConfig(t_s=args.t_s, t_b=args.t_b), reconstructions=True)
    images = to_unit_float(split.images[rows]).numpy()
    masks = (split.masks[rows].reshape(pred.maps.shape) > 0).numpy().astype(np.uint8)
    errors = reconstruction_error(images, pred.reconstructions, args.blur)
    figures = kind_figures(pred.maps, masks, [split.defects[i] for i in rows.tolist()], errors)
    print(f"{args.category}, {args.checkpoint} at t_s = {args.t_s}, t_b = {args.t_b}: where the anomaly map "
          f"and the reconstruction error rank each kind's pixels (percent)\n")
    if len(rows) < len(keep):
        print(f"{len(keep) - len(rows)} defect images without a ground-truth mask are left out\n")
    print(table(figures))
    print(json.dumps({kind: {k: (None if isinstance(v, float) and math.isnan(v) else round(v, 4))
                             for k, v in f._asdict().items()} for kind, f in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
