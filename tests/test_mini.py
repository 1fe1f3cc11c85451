"""Tests for the embedded mini benchmark (diffad_core.data.mini)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffad_core.data.categories import DATASET_CATEGORIES
from diffad_core.data.mini import (
    MINI_CATEGORIES,
    MINI_DEFECTS,
    TOLERANCE,
    make_mini_benchmark,
    render_mini_sample,
)
from diffad_core.data.readers import MVTecDataset

COUNTS = dict(num_train=3, num_test_good=2, num_per_defect=1)


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_benchmark(tmp_path_factory.mktemp("mini") / "a", seed=0, **COUNTS)


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_same_seed_same_bytes(mini_root: Path, tmp_path: Path) -> None:
    again = make_mini_benchmark(tmp_path / "b", seed=0, **COUNTS)
    assert _files(mini_root) == _files(again)
    other = make_mini_benchmark(tmp_path / "c", seed=1, categories=["brick"], **COUNTS)
    a, c = _files(mini_root), _files(other)
    assert a["brick/train/good/000.png"] != c["brick/train/good/000.png"]


def test_category_does_not_depend_on_others(mini_root: Path, tmp_path: Path) -> None:
    alone = make_mini_benchmark(tmp_path / "nut", seed=0, categories=["nut"], **COUNTS)
    nut = {k: v for k, v in _files(mini_root).items() if k.startswith("nut/")}
    assert nut == {k: v for k, v in _files(alone).items() if k.startswith("nut/")}


def test_layout_and_counts(mini_root: Path) -> None:
    assert DATASET_CATEGORIES["mini"] == MINI_CATEGORIES
    assert sorted(p.name for p in mini_root.iterdir() if p.is_dir()) == sorted(MINI_CATEGORIES)
    assert "| brick | texture |" in (mini_root / "README.md").read_text()
    for category, kinds in MINI_DEFECTS.items():
        assert len(kinds) >= 4
        assert ("missing" in kinds) == (MINI_CATEGORIES[category] == "object")
        cat = mini_root / category
        assert len(list((cat / "train" / "good").glob("*.png"))) == 3
        assert sorted(p.name for p in (cat / "test").iterdir()) == sorted(("good",) + kinds)
        for kind in kinds:
            for image in (cat / "test" / kind).glob("*.png"):
                mask = np.array(Image.open(cat / "ground_truth" / kind / f"{image.stem}_mask.png"))
                assert set(np.unique(mask)) == {0, 255}
                picture = Image.open(image)
                assert picture.mode == "RGB" and picture.size == (128, 128)
        has_fg = (cat / "foreground").is_dir()
        assert has_fg == (MINI_CATEGORIES[category] == "object")


def test_training_images_differ(mini_root: Path) -> None:
    for category in MINI_CATEGORIES:
        paths = sorted((mini_root / category / "train" / "good").glob("*.png"))
        images = [np.array(Image.open(p)) for p in paths]
        assert all(not np.array_equal(images[0], other) for other in images[1:])


@pytest.mark.parametrize("category", list(MINI_CATEGORIES))
def test_masks_are_exactly_the_changed_pixels(category: str) -> None:
    rng = np.random.default_rng(7)
    for defect in ("good",) + MINI_DEFECTS[category]:
        for _ in range(2):
            s = render_mini_sample(category, defect, rng=rng)
            changed = np.abs(s.image.astype(int) - s.clean.astype(int)).max(axis=-1) > TOLERANCE
            assert np.array_equal(changed, s.mask), (category, defect)
            if defect == "good":
                assert np.array_equal(s.image, s.clean) and not s.mask.any()
            else:
                assert s.mask.sum() >= 10
                assert np.array_equal(s.image[~s.mask], s.clean[~s.mask])  # untouched elsewhere
            if MINI_CATEGORIES[category] == "object" and defect not in ("good", "missing"):
                assert (s.mask & s.foreground).sum() >= 0.5 * s.mask.sum()  # on the object
            if defect == "missing":
                assert (s.mask & s.foreground).sum() < 0.5 * s.mask.sum()  # now background


def test_readable_by_mvtec_reader(mini_root: Path) -> None:
    for category, kind in MINI_CATEGORIES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no empty-mask warning
            test = MVTecDataset(mini_root, category, "test", image_size=128)
        assert test.kind == kind and set(test.labels) == {0, 1}
        assert test.counts() == {"good": 2, **{k: 1 for k in sorted(MINI_DEFECTS[category])}}
        item = test[len(test) - 1]
        assert item["image"].shape == (3, 128, 128) and float(item["mask"].sum()) > 0
        if kind == "object":  # the saved true foreground, not the whole image
            assert 0.1 < float(item["foreground"].mean()) < 0.9
    nut = MVTecDataset(mini_root, "nut", "train", image_size=128)
    assert nut.num_foreground_files == len(nut)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="brick"):
        make_mini_benchmark(tmp_path, categories=["marble"])
    with pytest.raises(ValueError, match="valid"):
        render_mini_sample("nut", "hole", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="counts"):
        make_mini_benchmark(tmp_path, num_train=0)


def test_other_image_size(tmp_path: Path) -> None:
    root = make_mini_benchmark(
        tmp_path, categories=["pill"], image_size=64, num_train=1, num_test_good=1, num_per_defect=1
    )
    image = Image.open(root / "pill" / "test" / "missing" / "000.png")
    assert image.size == (64, 64)
    assert torch.tensor(np.array(Image.open(root / "pill/ground_truth/missing/000_mask.png"))).any()


def test_cli_writes_the_same_files_as_the_function(mini_root: Path, tmp_path: Path, capsys) -> None:
    from diffad_core.cli import main

    out = tmp_path / "cli"
    argv = ["mini", "--out", str(out), "--seed", "0", "--categories", "nut",
            "--num-train", "3", "--num-test-good", "2", "--num-per-defect", "1"]
    assert main(argv) == 0
    nut = {k: v for k, v in _files(mini_root).items() if k.startswith("nut/")}
    assert nut == {k: v for k, v in _files(out).items() if k.startswith("nut/")}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["nut"]
    capsys.readouterr()
    assert main(["mini", "--out", str(tmp_path / "bad"), "--num-per-defect", "0"]) == 2
    assert "num_per_defect=0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
