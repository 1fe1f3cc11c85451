"""Folder layouts of the supported benchmarks: one parse function per layout.

Each ``parse_*`` function turns ``(root, category, split)`` into a list of :class:`Record`
(image path, mask path, label, defect name, foreground path) and raises one
:class:`~diffad_core.data.errors.DatasetError` naming the folder when the layout is wrong. The
torch datasets in :mod:`diffad_core.data.readers` only load what the records point to.

Layouts
-------
``"mvtec"`` (MVTec AD, MPDD, BTAD, VisA prepared, MVTec 3D-AD RGB, any folder so arranged)::

    root/<category>/train/good/*.png             normal training images ("ok" is accepted too)
    root/<category>/test/good/*.png              normal test images
    root/<category>/test/<defect>/*.png          defective test images
    root/<category>/ground_truth/<defect>/<name>_mask.png   (or <name>.png, <name>_label.png)
    MVTec 3D-AD:  .../<good|defect>/rgb/*.png with masks in .../<defect>/gt/<name>.png

``"visa"`` raw release: ``root/split_csv/1cls.csv`` with columns object, split, label, image,
mask (paths relative to ``root``, label "normal" or "anomaly"; anomalies get the defect name
"bad", as in the prepared layout). The prepared per-category VisA layout is the MVTec one.

``"dagm"`` (DAGM 2007): ``root/ClassN/Train|Test/*.PNG`` with ``Label/<name>_label.PNG`` and
``Label/Labels.txt``. An image is defective when Labels.txt flags it (or, without Labels.txt,
when it has a label file). DAGM has no separate normal training folder: the training split is
the defect-free subset of ``Train`` (defective Train images are left out).

Any extension of :data:`~diffad_core.data.imageio.IMAGE_EXTENSIONS` is accepted, in any case.

Foreground files (optional, docs/method.md §4), looked up for each image in this order:

1. ``root/<category>/foreground/<split>/<defect>/<name>.<ext>`` (our layout, written by the mini
   benchmark; works for every split);
2. training split only: ``root/<category>/DISthresh/good/<name>.<ext>`` (the released code's
   object masks from the DIS salient-object model: the training image path with ``train``
   replaced by ``DISthresh``);
3. training split only: ``root/<category>/thresh/*.png`` (the released code's texture masks, blob
   masks not paired with images: a file with the image's name is used if there is one,
   otherwise each image gets one of them picked by a hash of its file name, so the choice is
   fixed. The released code re-draws one at random from ``carpet/thresh`` on every iteration).
"""

from __future__ import annotations

import csv
import os
import zlib
from pathlib import Path
from typing import Literal, NamedTuple, Optional

from .errors import DatasetError
from .imageio import IMAGE_EXTENSIONS, list_images

__all__ = [
    "Layout",
    "Split",
    "Record",
    "NORMAL_NAMES",
    "parse_mvtec",
    "parse_visa",
    "parse_dagm",
    "detect_layout",
    "list_categories",
]

Layout = Literal["mvtec", "visa", "dagm"]
Split = Literal["train", "test"]

#: Folder names that hold defect-free images (reported as defect "good").
NORMAL_NAMES: tuple[str, ...] = ("good", "ok")

_MASK_SUFFIXES = ("_mask", "", "_label")
_VISA_CSV = Path("split_csv") / "1cls.csv"
_VISA_COLUMNS = ("object", "split", "label", "image", "mask")


class Record(NamedTuple):
    """One sample of a split, before loading.

    ``mask`` is None for normal images; ``foreground`` is None when no foreground file exists.
    """

    image: Path
    mask: Optional[Path]
    label: int
    defect: str
    foreground: Optional[Path] = None


# ----------------------------------------------------------------------------- helpers


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise DatasetError(f"split={split!r} is not valid; use 'train' or 'test'.")


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(
            f"Dataset root {root} does not exist or is not a folder. Pass the folder that "
            "contains the category folders (for MVTec AD: the folder holding bottle/, cable/, ...)."
        )


def _child(folder: Path, name: str) -> Optional[Path]:
    """``folder/name`` if it is a directory, matching the name case-insensitively."""
    if not folder.is_dir():
        return None
    matches = [
        e for e in sorted(os.listdir(folder)) if e.lower() == name.lower() and (folder / e).is_dir()
    ]
    if not matches:
        return None
    return folder / (name if name in matches else matches[0])


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _index_by_stem(folder: Optional[Path]) -> dict[str, Path]:
    """Image files of ``folder`` keyed by file name without extension."""
    if folder is None:
        return {}
    return {p.stem: p for p in list_images(folder)}


def _image_dir(folder: Path) -> Path:
    """``folder/rgb`` for MVTec 3D-AD style folders, else ``folder``."""
    rgb = folder / "rgb"
    return rgb if rgb.is_dir() and not list_images(folder) else folder


def _category_dir(root: Path, category: str, layout: str) -> Path:
    _check_root(root)
    cat_dir = root / category
    if not cat_dir.is_dir():
        found = list_categories(root)
        raise DatasetError(
            f"Category folder {cat_dir} does not exist ({layout} layout). Categories found in "
            f"{root}: {', '.join(found) if found else 'none'}. Check the spelling of the category "
            "or pass the right root folder."
        )
    return cat_dir


class _ForegroundFinder:
    """Resolves the optional foreground file of each image (see the module docstring)."""

    def __init__(self, cat_dir: Path, split: str):
        self.cat_dir = cat_dir
        self.split = split
        self._ours: dict[str, dict[str, Path]] = {}
        self._dis: dict[str, Path] = {}
        self._thresh: list[Path] = []
        if split == "train":
            dis_dir = _child(cat_dir, "DISthresh")
            if dis_dir is not None:
                self._dis.update(_index_by_stem(dis_dir))
                for sub in _subdirs(dis_dir):
                    self._dis.update(_index_by_stem(sub))
            self._thresh = list_images(cat_dir / "thresh")
        self._thresh_by_stem = {p.stem: p for p in self._thresh}

    def __call__(self, image: Path, defect: str) -> Optional[Path]:
        if defect not in self._ours:
            self._ours[defect] = _index_by_stem(self.cat_dir / "foreground" / self.split / defect)
        stem = image.stem
        found = self._ours[defect].get(stem)
        if found is None and self.split == "train":
            found = self._dis.get(stem) or self._thresh_by_stem.get(stem)
            if found is None and self._thresh:
                pick = zlib.crc32(image.name.encode("utf-8")) % len(self._thresh)
                found = self._thresh[pick]
        return found


def _no_images_error(folder: Path, what: str) -> DatasetError:
    exts = ", ".join(IMAGE_EXTENSIONS)
    return DatasetError(
        f"No {what} images in {folder} (looked for files ending in {exts}, any case). "
        "Check that the dataset was extracted completely into this folder."
    )


# ----------------------------------------------------------------------------- MVTec layout


def _find_normal_dir(parent: Path) -> Optional[Path]:
    for name in NORMAL_NAMES:
        found = _child(parent, name)
        if found is not None:
            return found
    return None


def parse_mvtec(root: str | os.PathLike, category: str, split: Split) -> list[Record]:
    """Records of one split of an MVTec-layout category (see the module docstring)."""
    _check_split(split)
    root = Path(root)
    cat_dir = _category_dir(root, category, "MVTec")
    find_fg = _ForegroundFinder(cat_dir, split)
    split_dir = _child(cat_dir, split)
    if split_dir is None:
        raise DatasetError(
            f"No {split}/ folder in {cat_dir}. The MVTec layout needs {cat_dir}/train/good/ with "
            f"normal images and {cat_dir}/test/<good|defect>/ with test images."
        )
    if split == "train":
        normal_dir = _find_normal_dir(split_dir)
        if normal_dir is None:
            raise DatasetError(
                f"No {split_dir}/good/ folder: put the normal training images in "
                f"{split_dir}/good/ (MVTec layout; 'ok' is accepted as well)."
            )
        images = list_images(_image_dir(normal_dir))
        if not images:
            raise _no_images_error(_image_dir(normal_dir), "training")
        return [Record(p, None, 0, "good", find_fg(p, "good")) for p in images]

    records: list[Record] = []
    gt_root = _child(cat_dir, "ground_truth")
    for sub in _subdirs(split_dir):
        images = list_images(_image_dir(sub))
        if sub.name.lower() in NORMAL_NAMES:
            records += [Record(p, None, 0, "good", find_fg(p, "good")) for p in images]
            continue
        masks = _index_by_stem(_child(gt_root, sub.name) if gt_root is not None else None)
        masks_3d = _index_by_stem(sub / "gt")  # MVTec 3D-AD keeps masks next to rgb/
        no_masks_at_all = gt_root is None and not masks_3d  # test/<good|defect> only: image metrics
        for p in images:
            mask = masks_3d.get(p.stem)
            for suffix in _MASK_SUFFIXES:
                mask = mask or masks.get(p.stem + suffix)
            if mask is None and not no_masks_at_all:
                where = (gt_root or cat_dir / "ground_truth") / sub.name
                raise DatasetError(
                    f"Defect image {p} has no ground-truth mask: looked for "
                    f"{where}/{p.stem}_mask.png (or {p.stem}.png, {p.stem}_label.png, any image "
                    f"extension) and {sub}/gt/{p.stem}.png. Add the mask, or move the image out "
                    "of the test folder."
                )
            records.append(Record(p, mask, 1, sub.name, find_fg(p, sub.name)))
    if not records:
        raise _no_images_error(split_dir / "<good|defect>", "test")
    return records


# ----------------------------------------------------------------------------- VisA raw


def _read_visa_csv(root: Path) -> list[dict[str, str]]:
    csv_path = root / _VISA_CSV
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except OSError as err:
        raise DatasetError(f"Could not read the VisA split file {csv_path}: {err}.") from err
    missing = [c for c in _VISA_COLUMNS if c not in columns]
    if missing:
        raise DatasetError(
            f"VisA split file {csv_path} lacks the column(s) {', '.join(missing)} (found: "
            f"{', '.join(columns) or 'none'}). Use the 1cls.csv shipped with the VisA release."
        )
    return rows


def parse_visa(root: str | os.PathLike, category: str, split: Split) -> list[Record]:
    """Records of one split of VisA: raw release (``split_csv/1cls.csv``) or prepared layout.

    For the raw release the training split keeps only rows labelled "normal".
    """
    _check_split(split)
    root = Path(root)
    _check_root(root)
    if not (root / _VISA_CSV).is_file():
        return parse_mvtec(root, category, split)
    csv_path = root / _VISA_CSV
    rows = _read_visa_csv(root)
    objects = sorted({r["object"] for r in rows})
    if category not in objects:
        raise DatasetError(
            f"Category {category!r} does not appear in the 'object' column of {csv_path}. "
            f"Categories listed there: {', '.join(objects) or 'none'}."
        )
    find_fg = _ForegroundFinder(root / category, split)
    records: list[Record] = []
    for row in rows:
        if row["object"] != category or row["split"] != split:
            continue
        label_name = row["label"].lower()
        if label_name not in ("normal", "anomaly"):
            raise DatasetError(
                f"Unknown label {row['label']!r} for {row['image']} in {csv_path}; expected "
                "'normal' or 'anomaly'."
            )
        label = int(label_name == "anomaly")
        if split == "train" and label:
            continue
        image = root / row["image"]
        if not image.is_file():
            raise DatasetError(
                f"Image {image} is listed in {csv_path} but does not exist. Extract the "
                "complete VisA archive into the folder that holds split_csv/."
            )
        mask = None
        if label:
            if not row["mask"] or not (root / row["mask"]).is_file():
                raise DatasetError(
                    f"Defect image {image} has no ground-truth mask: the mask column of "
                    f"{csv_path} names {row['mask'] or 'nothing'!r}"
                    + (f" and {root / row['mask']} does not exist." if row["mask"] else ".")
                    + " Restore the mask file from the VisA archive."
                )
            mask = root / row["mask"]
        defect = "bad" if label else "good"
        records.append(Record(image, mask, label, defect, find_fg(image, defect)))
    if not records:
        which = "normal train" if split == "train" else "test"
        raise DatasetError(f"No {which} rows for {category!r} in {csv_path}.")
    return records


# ----------------------------------------------------------------------------- DAGM 2007


def _read_dagm_labels(labels_txt: Path) -> dict[str, tuple[int, Optional[str]]]:
    """Labels.txt -> {image file name: (flag, label file name or None)}.

    Each data line reads ``index flag image_name 0 label_name_or_0``; other lines (the header
    line with a single number) are skipped.
    """
    table: dict[str, tuple[int, Optional[str]]] = {}
    try:
        lines = labels_txt.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DatasetError(f"Could not read {labels_txt}: {err}.") from err
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) < 3:
            continue
        if not fields[2].lower().endswith(IMAGE_EXTENSIONS) or fields[1] not in ("0", "1"):
            raise DatasetError(
                f"Line {number} of {labels_txt} is not 'index flag image_name 0 label_name': "
                f"{line!r}. Restore Labels.txt from the DAGM archive or delete it (then an image "
                "is defective when it has a Label/<name>_label.PNG file)."
            )
        label_file = fields[-1] if fields[-1].lower().endswith(IMAGE_EXTENSIONS) else None
        table[fields[2]] = (int(fields[1]), label_file)
    return table


def parse_dagm(root: str | os.PathLike, category: str, split: Split) -> list[Record]:
    """Records of one split of a DAGM 2007 class (``split="train"``: defect-free Train images)."""
    _check_split(split)
    root = Path(root)
    cat_dir = _category_dir(root, category, "DAGM")
    folder_name = "Train" if split == "train" else "Test"
    split_dir = _child(cat_dir, folder_name)
    if split_dir is None:
        raise DatasetError(
            f"No {folder_name}/ folder in {cat_dir}. The DAGM layout is "
            f"{root}/ClassN/Train|Test/*.PNG with Label/<name>_label.PNG."
        )
    images = list_images(split_dir)
    if not images:
        raise _no_images_error(split_dir, f"DAGM {folder_name}")
    label_dir = _child(split_dir, "Label")
    label_files = _index_by_stem(label_dir)
    labels_txt = None
    if label_dir is not None:
        labels_txt = next((p for p in label_dir.iterdir() if p.name.lower() == "labels.txt"), None)
    table = _read_dagm_labels(labels_txt) if labels_txt is not None else None
    find_fg = _ForegroundFinder(cat_dir, split)
    records: list[Record] = []
    for p in images:
        mask = label_files.get(p.stem + "_label")
        if table is not None and p.name in table:
            flag, named = table[p.name]
            if flag and named and label_dir is not None and (label_dir / named).is_file():
                mask = label_dir / named
        else:
            flag = int(mask is not None)
        if flag and mask is None:
            raise DatasetError(
                f"Defect image {p} (flagged in {labels_txt}) has no label image: looked for "
                f"{split_dir}/Label/{p.stem}_label.PNG. Restore it from the DAGM archive."
            )
        if split == "train" and flag:
            continue
        defect = "defect" if flag else "good"
        records.append(Record(p, mask if flag else None, flag, defect, find_fg(p, defect)))
    if not records:
        raise DatasetError(f"No defect-free images in {split_dir}: nothing to train on.")
    return records


# ----------------------------------------------------------------------------- detection


def _mvtec_like(folder: Path) -> bool:
    names = set(os.listdir(folder))
    return "train" in names or "test" in names


def _dagm_like(folder: Path) -> bool:
    names = set(os.listdir(folder))
    return "Train" in names or "Test" in names


def detect_layout(root: str | os.PathLike, category: str) -> Layout:
    """Which layout ``root`` / ``category`` follows: "visa" (raw csv), "dagm" or "mvtec".

    Raises :class:`DatasetError` listing what was looked for when none matches.
    """
    root = Path(root)
    _check_root(root)
    if (root / _VISA_CSV).is_file():
        return "visa"
    cat_dir = root / category
    if cat_dir.is_dir():
        if _dagm_like(cat_dir):
            return "dagm"
        if _mvtec_like(cat_dir):
            return "mvtec"
    if _mvtec_like(root) or _dagm_like(root):  # the category folder itself was given as the root
        raise DatasetError(
            f"{root} is a category folder (it holds the train/test folders itself): pass its parent "
            f"as the dataset root (--data {root.parent}) and --category {root.name}."
        )
    found = list_categories(root)
    raise DatasetError(
        f"Could not recognise a dataset layout for category {category!r} in {root}. Looked for "
        f"{root / _VISA_CSV} (VisA raw release), {cat_dir}/train/ and test/ (MVTec layout, also "
        f"MPDD, BTAD, VisA prepared) and {cat_dir}/Train/ and Test/ (DAGM 2007). Categories "
        f"found in {root}: {', '.join(found) if found else 'none'}."
    )


def list_categories(root: str | os.PathLike, dataset: str = "auto") -> list[str]:
    """Category names present under ``root`` (sorted).

    ``dataset``: "auto" (every layout), "mvtec"/"mpdd" (folders with train/ or test/), "visa"
    (objects of split_csv/1cls.csv, or prepared folders), "dagm" (folders with Train/ or Test/).
    """
    valid = ("auto", "mvtec", "mpdd", "visa", "dagm", "mini")
    if dataset not in valid:
        raise ValueError(f"Unknown dataset {dataset!r}; valid values: {', '.join(valid)}.")
    root = Path(root)
    _check_root(root)
    found: set[str] = set()
    if dataset in ("auto", "visa") and (root / _VISA_CSV).is_file():
        found.update(r["object"] for r in _read_visa_csv(root))
    for sub in _subdirs(root):
        if dataset in ("auto", "dagm") and _dagm_like(sub):
            found.add(sub.name)
        if dataset != "dagm" and _mvtec_like(sub):
            found.add(sub.name)
    return sorted(found)
