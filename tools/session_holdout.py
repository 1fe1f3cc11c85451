"""Does a training setting carry over to an acquisition session the model never saw? No test labels.

    python tools/session_holdout.py --data ../shared/data --category magnetic_tile --holdout exp5 \\
        --image-size 128 --minutes 20 --variant plain --out runs/holdout &
    python tools/session_holdout.py ... --variant jitter:exposure_jitter=1.0 --out runs/holdout
    python tools/session_holdout.py --report runs/holdout

Only ``train/good`` is read. Its images are grouped by the part of their file names that
``--group`` captures (as in ``tools/acquisition_groups.py``); the images of the ``--holdout`` group
play the unseen session, the others are split (seeded, 10 %) into training images and in-session
validation images. Each variant trains the ``tiny`` preset from the pretrained start on the
training images with its settings (``name:key=value,key=value``, :class:`TrainConfig` fields),
then prints and writes to ``OUT/<name>.json``:

- ``exposure_auroc``: image AUROC of the held-out session's normals against the in-session
  validation normals, scored by the model as anomalies. 50 means the model does not tell the
  sessions apart; the higher, the more it flags the unseen session as anomalous.
- ``false_alarms``: the share of the held-out session's normals at or above the image threshold
  that :func:`diffad_core.calibration.calibrate` sets on the in-session validation images.
- ``synthetic`` image / pixel AUROC on the held-out session's normals turned into synthetic
  anomalies (the training synthesizer), and the same on the in-session validation images: the
  detection the variant keeps.
- ``grey_spearman``: Spearman's rank correlation between an image's mean grey level and its score
  over all the normals scored (in-session validation and held-out session). Near 0 means the
  score does not follow the exposure; a score that rises with brightness lets bright normals
  outrank dark defects when sessions are pooled.

Variants run one per process (start two at once with one thread each on a 2-core machine);
``--report`` prints the table of every JSON in a folder.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from diffad_core.calibration import calibrate, synthetic_auroc, validation_split
from diffad_core.config import EvalConfig, TrainConfig
from diffad_core.data import open_dataset
from diffad_core.data.readers import load_tensors
from diffad_core.inference import predict_images
from diffad_core.metrics import image_auroc
from diffad_core.runtime import set_threads
from diffad_core.train import fit


def parse_variant(spec: str) -> tuple[str, dict[str, object]]:
    """``name:key=value,key=value`` -> (name, overrides); values parsed as JSON when they can be."""
    name, _, rest = spec.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"--variant {spec!r}: the name before ':' must be letters, digits, '_', '.' or '-'")
    overrides: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--variant {spec!r}: {item!r} is not key=value")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:+.2f}"  # records written before the column existed


def _report(folder: Path) -> int:
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    if not rows:
        print(f"error: no variant results (*.json) in {folder}", file=sys.stderr)
        return 2
    print("| variant | settings | steps | exposure AUROC | false alarms | synthetic, held-out session "
          "(image / pixel AUROC) | synthetic, in-session | grey-score Spearman |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        held, own = r["synthetic_holdout"], r["synthetic_in_session"]
        print(f"| {r['variant']} | {r['overrides'] or '-'} | {r['steps']} | {100 * r['exposure_auroc']:.1f} | "
              f"{100 * r['false_alarms']:.1f} % | {100 * held['image_auroc']:.1f} / {100 * held['pixel_auroc']:.1f} | "
              f"{100 * own['image_auroc']:.1f} / {100 * own['pixel_auroc']:.1f} | "
              f"{_fmt(r.get('grey_spearman'))} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--category")
    parser.add_argument("--holdout", help="the group that plays the unseen session, e.g. exp5")
    parser.add_argument("--group", default=r"^([A-Za-z]+\d+)_", help="regular expression; its first group names the session")
    parser.add_argument("--variant", default="plain", help="name:key=value,... (TrainConfig fields; default: plain)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="folder for <variant>.json")
    parser.add_argument("--report", type=Path, default=None, help="print the table of a folder's results and stop")
    args = parser.parse_args(argv)
    if args.report is not None:
        return _report(args.report)
    missing = [f"--{k}" for k in ("data", "category", "holdout", "out") if getattr(args, k) is None]
    if missing or (args.minutes is None) == (args.steps is None):
        print(f"error: give {', '.join(missing) or 'the options'} and exactly one of --minutes / --steps", file=sys.stderr)
        return 2
    try:
        name, overrides = parse_variant(args.variant)
        config = TrainConfig.from_preset("tiny", image_size=args.image_size, minutes=args.minutes, steps=args.steps,
                                         seed=args.seed, val_fraction=0.0, init="pretrained", amp="bf16", **overrides)
    except (TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    set_threads(args.threads)

    split = load_tensors(open_dataset(args.data, args.category, "train", image_size=args.image_size))
    pattern = re.compile(args.group)
    groups = [(m.group(1) if (m := pattern.search(Path(p).name)) else "") for p in split.paths]
    held = torch.tensor([g == args.holdout for g in groups])
    if not held.any() or held.all():
        found = sorted(set(groups))
        print(f"error: --holdout {args.holdout!r} must name some but not all training images' group; "
              f"groups found: {found}", file=sys.stderr)
        return 2
    own = torch.nonzero(~held).flatten()
    train_idx, val_idx = validation_split(len(own), 0.1, args.seed)
    if len(val_idx) == 0:
        print(f"error: only {len(own)} training images outside session {args.holdout}; the check holds 10 % of "
              "them out and needs at least 20", file=sys.stderr)
        return 2
    train_images, val_images = split.images[own[train_idx]], split.images[own[val_idx]]
    holdout_images = split.images[held]
    kind = split.kind or "texture"
    print(f"{args.category}: {len(train_idx)} training images, {len(val_idx)} in-session validation images, "
          f"{int(held.sum())} of session {args.holdout}; variant {name} {overrides or ''}", flush=True)

    t0 = time.perf_counter()
    result = fit(config, train_images.float().div(255.0), kind=kind, progress=False)
    seconds = time.perf_counter() - t0
    model = result.model.eval()
    eval_config = EvalConfig(seed=args.seed)
    val_scores = predict_images(model, val_images.float().div(255.0), eval_config).scores
    held_scores = predict_images(model, holdout_images.float().div(255.0), eval_config).scores
    labels = np.r_[np.zeros(len(val_scores)), np.ones(len(held_scores))]
    grey = torch.cat([val_images, holdout_images]).float().mean(dim=(1, 2, 3)).numpy()
    rho = spearmanr(grey, np.r_[val_scores, held_scores]).statistic
    threshold = calibrate(model, val_images, kind=kind, config=eval_config, seed=args.seed)["image_threshold"]
    record = {
        "variant": name,
        "overrides": overrides,
        "holdout": args.holdout,
        "steps": result.steps,
        "train_seconds": round(seconds, 1),
        "exposure_auroc": float(image_auroc(np.r_[val_scores, held_scores], labels)),
        "false_alarms": float(np.mean(held_scores >= threshold)),
        "in_session_false_alarms": float(np.mean(val_scores >= threshold)),
        "grey_spearman": None if np.isnan(rho) else float(rho),
        "synthetic_holdout": synthetic_auroc(model, holdout_images, kind=kind, config=eval_config, seed=args.seed),
        "synthetic_in_session": synthetic_auroc(model, val_images, kind=kind, config=eval_config, seed=args.seed),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
