"""Do the training and test normals come from the same acquisition groups?

    python tools/acquisition_groups.py --data ../shared/data --category magnetic_tile \\
        [--scores runs/mt128-s26/eval/scores.csv]

Datasets collected in sessions (another lighting, camera or batch) often say so in their file
names, e.g. magnetic_tile's ``exp1_num_10181.jpg``. A split that puts a whole session into the test
normals asks the model to call an unseen session normal, and a model that learned "this session
looks unusual" then ranks those normals above real defects: an image AUROC below 50 is the sign.

The tool groups every image of an MVTec-layout category by the part of its file name that
``--group`` (a regular expression with one group) captures and prints, per group, how many
training normals, test normals and test defects it holds and their mean grey level. With
``--scores`` (the ``scores.csv`` that ``diffad eval`` writes) it adds, per group that holds both
test normals and defects, the image AUROC inside the group, and the image AUROC that the mean
grey level alone would reach as an anomaly score on the whole test set (how far brightness
separates the labels). It reads labels only to report; choose no setting with it.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from diffad_core.data.imageio import list_images


def _group_of(name: str, pattern: re.Pattern[str]) -> str:
    match = pattern.search(name)
    return match.group(1) if match else "(no match)"


def _grey_mean(path: Path) -> float:
    with Image.open(path) as image:
        return float(np.asarray(image.convert("L"), dtype=np.float64).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset root (MVTec layout)")
    parser.add_argument("--category", required=True)
    parser.add_argument("--group", default=r"^([A-Za-z]+\d+)_",
                        help="regular expression whose first group names an image's acquisition group "
                             "(default: a leading word with a number, e.g. exp1_)")
    parser.add_argument("--scores", type=Path, default=None, help="scores.csv written by diffad eval")
    args = parser.parse_args(argv)

    cat_dir = args.data / args.category
    if not (cat_dir / "train" / "good").is_dir():
        print(f"error: {cat_dir / 'train' / 'good'} is not a folder; pass the dataset root as --data "
              "and the category folder's name as --category", file=sys.stderr)
        return 2
    pattern = re.compile(args.group)
    if pattern.groups < 1:
        print(f"error: --group {args.group!r} has no capturing group; wrap the part that names the group in (...)",
              file=sys.stderr)
        return 2

    parts = {"train normal": list_images(cat_dir / "train" / "good"),
             "test normal": list_images(cat_dir / "test" / "good")}
    defect_dirs = sorted(d for d in (cat_dir / "test").glob("*") if d.is_dir() and d.name != "good")
    parts["test defect"] = [p for d in defect_dirs for p in list_images(d)]
    grey: dict[tuple[str, str], list[float]] = defaultdict(list)
    for part, paths in parts.items():
        for path in paths:
            grey[(_group_of(path.name, pattern), part)].append(_grey_mean(path))

    groups = sorted({g for g, _ in grey})
    print(f"{args.category}: images per acquisition group (mean grey level, 0-255)\n")
    print("| group | " + " | ".join(parts) + " |")
    print("|---|" + "---:|" * len(parts))
    for g in groups:
        cells = []
        for part in parts:
            values = grey.get((g, part), [])
            cells.append(f"{len(values)} ({np.mean(values):.0f})" if values else "0")
        print(f"| {g} | " + " | ".join(cells) + " |")

    if args.scores is None:
        return 0
    with open(args.scores, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"path", "label", "score"} - set(rows[0] if rows else {})
    if missing:
        print(f"error: {args.scores} lacks the columns {sorted(missing)}; pass the scores.csv of diffad eval",
              file=sys.stderr)
        return 2
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["score"]) for r in rows])
    names = [Path(r["path"]).name for r in rows]
    row_groups = np.array([_group_of(n, pattern) for n in names])
    print(f"\nimage AUROC of {args.scores} inside each group (its normals against its defects):\n")
    print("| group | test normals | test defects | image AUROC |")
    print("|---|---:|---:|---:|")
    for g in groups:
        inside = row_groups == g
        y = labels[inside]
        if 0 < y.sum() < len(y):
            print(f"| {g} | {int((y == 0).sum())} | {int(y.sum())} | {100 * roc_auc_score(y, scores[inside]):.1f} |")
    print(f"| all | {int((labels == 0).sum())} | {int(labels.sum())} | {100 * roc_auc_score(labels, scores):.1f} |")
    brightness = np.array([_grey_mean(Path(r["path"])) for r in rows])
    print(f"\nthe mean grey level alone as the anomaly score: image AUROC {100 * roc_auc_score(labels, brightness):.1f} "
          f"(its negative: {100 * roc_auc_score(labels, -brightness):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
