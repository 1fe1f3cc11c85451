"""Tests for diffad_core.data readers, layouts, categories and image I/O (tiny temp layouts)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffad_core.data.categories import DATASET_CATEGORIES, category_kind
from diffad_core.data.errors import DatasetError, EmptyMaskWarning
from diffad_core.data.imageio import read_image, read_mask, resize_mask
from diffad_core.data.layouts import detect_layout, list_categories
from diffad_core.data.readers import (
    DAGMDataset,
    MVTecDataset,
    SplitTensors,
    VisADataset,
    load_tensors,
    open_dataset,
)

SIZE = 16


# ----------------------------------------------------------------------------- helpers


def _rgb(seed: int, h: int = 20, w: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _mask(h: int = 20, w: int = 24, box=(5, 12, 6, 14), value: int = 255) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[box[0] : box[1], box[2] : box[3]] = value
    return m


def _mvtec(root: Path, category: str = "widget") -> Path:
    """train/good (3), test/good (1), test/scratch (2: ``_mask`` and plain mask names)."""
    cat = root / category
    for i in range(3):
        _save(cat / "train" / "good" / f"{i:03d}.png", _rgb(i))
    _save(cat / "test" / "good" / "000.png", _rgb(10))
    _save(cat / "test" / "scratch" / "000.png", _rgb(11))
    _save(cat / "test" / "scratch" / "001.png", _rgb(12))
    _save(cat / "ground_truth" / "scratch" / "000_mask.png", _mask())
    _save(cat / "ground_truth" / "scratch" / "001.png", _mask(value=1))  # plain name, value 1 > 0
    return root


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    return _mvtec(tmp_path / "mvtec")


# ----------------------------------------------------------------------------- image I/O


def test_read_image_modes(tmp_path: Path) -> None:
    grey = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    out = read_image(_save(tmp_path / "grey.png", grey))
    assert out.shape == (12, 20, 3) and out.dtype == np.float32
    assert np.allclose(out[..., 0], grey / 255.0) and np.array_equal(out[..., 0], out[..., 2])

    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red: alpha is dropped
    assert np.allclose(read_image(_save(tmp_path / "rgba.png", rgba))[..., 0], 200 / 255.0)

    sixteen = np.full((6, 7), 32768, dtype=np.uint16)
    sixteen[0, 0] = 65535
    out = read_image(_save(tmp_path / "16bit.png", sixteen))
    assert out[0, 0, 0] == pytest.approx(1.0) and out[1, 1, 1] == pytest.approx(32768 / 65535)

    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8))
    palette.putpalette([10, 20, 30, 250, 0, 5] + [0] * 762)
    palette.save(tmp_path / "pal.png")
    out = read_image(tmp_path / "pal.png")
    assert np.allclose(out[0, 1] * 255, [250, 0, 5]) and np.allclose(out[0, 0] * 255, [10, 20, 30])

    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(tmp_path / "x.jpg", quality=95)
    assert np.allclose(read_image(tmp_path / "x.jpg"), 120 / 255.0, atol=2 / 255)
    Image.fromarray(np.full((8, 8, 3), 70, np.uint8)).save(tmp_path / "x.bmp")
    Image.fromarray(np.full((8, 8, 3), 70, np.uint8)).save(tmp_path / "x.tiff")
    assert np.allclose(read_image(tmp_path / "x.bmp"), read_image(tmp_path / "x.tiff"))


def test_read_mask_binarises_above_zero(tmp_path: Path) -> None:
    m = np.array([[0, 1, 255], [0, 0, 7]], dtype=np.uint8)
    expected = [[False, True, True], [False, False, True]]
    assert read_mask(_save(tmp_path / "m.png", m)).tolist() == expected
    colour = np.zeros((2, 2, 3), dtype=np.uint8)
    colour[1, 1, 2] = 9
    assert read_mask(_save(tmp_path / "c.png", colour)).tolist() == [[False, False], [False, True]]


def test_resize_mask_nearest_by_hand() -> None:
    m = np.array([[1, 0], [0, 1]], dtype=bool)
    expected = [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert resize_mask(m, (4, 4))[0].tolist() == expected
    big = np.kron(np.eye(2), np.ones((3, 3))).astype(bool)  # 6x6 -> 2x2 keeps the diagonal
    assert resize_mask(big, (2, 2))[0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


# ----------------------------------------------------------------------------- MVTec layout


def test_mvtec_train_and_test_items(mvtec_root: Path) -> None:
    train = MVTecDataset(mvtec_root, "widget", "train", image_size=SIZE)
    assert len(train) == 3 and train.counts() == {"good": 3} and train.labels == [0, 0, 0]
    item = train[1]
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["mask"].shape == (1, SIZE, SIZE) and float(item["mask"].sum()) == 0
    assert item["foreground"].shape == (1, SIZE, SIZE)
    assert item["label"] == 0 and item["defect"] == "good" and item["path"].endswith("001.png")

    test = MVTecDataset(mvtec_root, "widget", "test", image_size=(SIZE, 2 * SIZE))
    assert test.counts() == {"good": 1, "scratch": 2} and sorted(test.labels) == [0, 1, 1]
    for i in range(len(test)):
        s = test[i]
        assert s["image"].shape == (3, SIZE, 2 * SIZE)
        assert set(s["mask"].unique().tolist()) <= {0.0, 1.0}
        assert (float(s["mask"].sum()) > 0) == (s["label"] == 1)
    assert "widget" in repr(test) and "scratch: 2" in repr(test)


def test_mvtec_native_size_and_mask_values(mvtec_root: Path) -> None:
    test = MVTecDataset(mvtec_root, "widget", "test", image_size=None)
    s = next(test[i] for i in range(len(test)) if test.records[i].image.name == "001.png")
    assert s["image"].shape == (3, 20, 24)
    assert torch.equal(s["mask"][0], torch.from_numpy(_mask() > 0).float())
    assert torch.allclose(s["image"], torch.from_numpy(_rgb(12)).permute(2, 0, 1) / 255.0)


def test_mvtec_image_formats(tmp_path: Path) -> None:
    cat = tmp_path / "formats"
    _save(cat / "train" / "good" / "a_grey.png", np.full((20, 24), 100, np.uint8))
    alpha = np.full((20, 24), 9, np.uint8)
    _save(cat / "train" / "good" / "b_rgba.png", np.dstack([_rgb(1), alpha]))
    _save(cat / "train" / "good" / "c_16bit.png", np.full((20, 24), 65535, np.uint16))
    pal = Image.fromarray(np.zeros((20, 24), np.uint8))
    pal.putpalette([30, 60, 90] * 256)
    pal.save(cat / "train" / "good" / "d_pal.png")
    Image.fromarray(_rgb(2)).save(cat / "train" / "good" / "e.JPG")
    (cat / "train" / "good" / "notes.txt").write_text("ignored")
    ds = MVTecDataset(tmp_path, "formats", "train", image_size=SIZE)
    names = [r.image.name for r in ds.records]
    assert names == ["a_grey.png", "b_rgba.png", "c_16bit.png", "d_pal.png", "e.JPG"]
    images = [ds[i]["image"] for i in range(len(ds))]
    assert all(x.shape == (3, SIZE, SIZE) for x in images)
    assert torch.allclose(images[0], torch.full((3, SIZE, SIZE), 100 / 255.0))
    assert torch.allclose(images[2], torch.ones(3, SIZE, SIZE))
    palette_colour = torch.tensor([30.0, 60.0, 90.0]).view(3, 1, 1) / 255.0
    assert torch.allclose(images[3], palette_colour.expand(3, SIZE, SIZE))
    rgba = torch.from_numpy(_rgb(1)).permute(2, 0, 1).float()[None] / 255.0  # alpha dropped
    resized = torch.nn.functional.interpolate(rgba, (SIZE, SIZE), mode="bilinear", antialias=True)
    assert torch.allclose(images[1], resized[0].clamp(0, 1), atol=1e-6)


def test_mvtec3d_and_btad_layouts(tmp_path: Path) -> None:
    cat = tmp_path / "bagel"  # MVTec 3D-AD: rgb/ and gt/ subfolders
    _save(cat / "train" / "good" / "rgb" / "000.png", _rgb(0))
    _save(cat / "test" / "good" / "rgb" / "000.png", _rgb(1))
    _save(cat / "test" / "crack" / "rgb" / "000.png", _rgb(2))
    _save(cat / "test" / "crack" / "gt" / "000.png", _mask())
    test = MVTecDataset(tmp_path, "bagel", "test", image_size=SIZE)
    assert test.counts() == {"good": 1, "crack": 1} and test.records[0].mask.parent.name == "gt"
    assert len(MVTecDataset(tmp_path, "bagel", "train", image_size=SIZE)) == 1

    btad = tmp_path / "01"  # BTAD: ok / ko folders, bmp images
    _save(btad / "train" / "ok" / "0000.bmp", _rgb(3))
    _save(btad / "test" / "ok" / "0001.bmp", _rgb(4))
    _save(btad / "test" / "ko" / "0002.bmp", _rgb(5))
    _save(btad / "ground_truth" / "ko" / "0002.png", _mask())
    test = MVTecDataset(tmp_path, "01", "test", image_size=SIZE)
    assert test.counts() == {"good": 1, "ko": 1}


# ----------------------------------------------------------------------------- bad input


def test_missing_root_and_category(tmp_path: Path, mvtec_root: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as err:
        MVTecDataset(tmp_path / "nowhere", "widget")
    assert str(tmp_path / "nowhere") in str(err.value)
    with pytest.raises(DatasetError, match="Categories found") as err:
        MVTecDataset(mvtec_root, "gadget")
    assert "widget" in str(err.value) and str(mvtec_root / "gadget") in str(err.value)


def test_no_training_images(tmp_path: Path) -> None:
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No training images") as err:
        MVTecDataset(tmp_path, "empty", "train")
    assert str(tmp_path / "empty" / "train" / "good") in str(err.value)
    (tmp_path / "nogood" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="good"):
        MVTecDataset(tmp_path, "nogood", "train")


def test_defect_without_mask(mvtec_root: Path) -> None:
    _save(mvtec_root / "widget" / "test" / "scratch" / "002.png", _rgb(5))
    with pytest.raises(DatasetError, match="no ground-truth mask") as err:
        MVTecDataset(mvtec_root, "widget", "test")
    assert "002.png" in str(err.value) and "002_mask.png" in str(err.value)


def test_truncated_file_names_the_file(mvtec_root: Path) -> None:
    path = mvtec_root / "widget" / "train" / "good" / "001.png"
    path.write_bytes(path.read_bytes()[:60])
    ds = MVTecDataset(mvtec_root, "widget", "train", image_size=SIZE)
    with pytest.raises(DatasetError, match="Could not read") as err:
        ds[1]
    assert str(path) in str(err.value)
    bad_mask = mvtec_root / "widget" / "ground_truth" / "scratch" / "000_mask.png"
    bad_mask.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError) as err:
        MVTecDataset(mvtec_root, "widget", "test")
    assert str(bad_mask) in str(err.value)


def test_mask_size_mismatch(mvtec_root: Path) -> None:
    gt = mvtec_root / "widget" / "ground_truth" / "scratch"
    _save(gt / "000_mask.png", _mask(40, 48, box=(10, 24, 12, 28)))  # same aspect: accepted
    test = MVTecDataset(mvtec_root, "widget", "test", image_size=None)
    index = next(i for i, r in enumerate(test.records) if r.image.name == "000.png" and r.label)
    s = test[index]
    assert s["mask"].shape == (1, 20, 24)
    assert torch.equal(s["mask"][0], torch.from_numpy(_mask() > 0).float())
    _save(gt / "000_mask.png", _mask(20, 20))  # different aspect: error naming both sizes
    with pytest.raises(DatasetError, match="20x20") as err:
        MVTecDataset(mvtec_root, "widget", "test")
    assert "20x24" in str(err.value) and "000_mask.png" in str(err.value)


def test_empty_mask_warns_once(mvtec_root: Path) -> None:
    gt = mvtec_root / "widget" / "ground_truth" / "scratch"
    _save(gt / "000_mask.png", np.zeros((20, 24), np.uint8))
    _save(gt / "001.png", np.zeros((20, 24), np.uint8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        test = MVTecDataset(mvtec_root, "widget", "test", image_size=SIZE)
    ours = [w for w in caught if issubclass(w.category, EmptyMaskWarning)]
    assert len(ours) == 1
    assert "2 of 2" in str(ours[0].message) and "000.png" in str(ours[0].message)
    assert sorted(test.labels) == [0, 1, 1]  # kept as anomalous


def test_mask_vanishing_when_resized_warns(mvtec_root: Path) -> None:
    gt = mvtec_root / "widget" / "ground_truth" / "scratch"
    _save(gt / "000_mask.png", _mask(box=(0, 1, 0, 1)))  # one pixel: lost at 4x4
    with pytest.warns(EmptyMaskWarning, match="1 of 2"):
        MVTecDataset(mvtec_root, "widget", "test", image_size=4)


def test_invalid_options(mvtec_root: Path) -> None:
    with pytest.raises(ValueError, match="foreground"):
        MVTecDataset(mvtec_root, "widget", foreground="magic")
    with pytest.raises(ValueError, match="kind"):
        MVTecDataset(mvtec_root, "widget", kind="blob")
    with pytest.raises(DatasetError, match="split"):
        MVTecDataset(mvtec_root, "widget", "val")
    with pytest.raises(DatasetError, match="image_size"):
        MVTecDataset(mvtec_root, "widget", image_size=-3)


# ----------------------------------------------------------------------------- foreground files


def test_foreground_files_released_and_ours(mvtec_root: Path) -> None:
    cat = mvtec_root / "widget"
    fg = np.zeros((20, 24), np.uint8)
    fg[:10] = 255
    _save(cat / "DISthresh" / "good" / "001.png", fg)  # released object masks
    train = MVTecDataset(mvtec_root, "widget", "train", image_size=None, kind="object")
    assert train.num_foreground_files == 1
    assert torch.equal(train[1]["foreground"][0], torch.from_numpy(fg > 127).float())

    _save(cat / "foreground" / "test" / "scratch" / "000.png", 255 - fg)  # our layout, any split
    test = MVTecDataset(mvtec_root, "widget", "test", image_size=None)
    i = next(i for i, r in enumerate(test.records) if r.foreground is not None)
    assert torch.equal(test[i]["foreground"][0], torch.from_numpy(fg == 0).float())
    assert torch.equal(test[0]["foreground"], torch.ones(1, 20, 24))  # texture default: whole

    whole = MVTecDataset(mvtec_root, "widget", "train", image_size=None, foreground="whole")
    assert torch.equal(whole[1]["foreground"], torch.ones(1, 20, 24))


def test_texture_thresh_masks_assigned_by_hash(mvtec_root: Path) -> None:
    cat = mvtec_root / "widget"
    for j in range(4):
        _save(cat / "thresh" / f"{j}.png", _mask(box=(j, j + 5, 0, 24)))
    a = MVTecDataset(mvtec_root, "widget", "train", image_size=None)
    b = MVTecDataset(mvtec_root, "widget", "train", image_size=None)
    assert a.num_foreground_files == 3
    assert [r.foreground for r in a.records] == [r.foreground for r in b.records]
    assert all(r.foreground.parent.name == "thresh" for r in a.records)


# ----------------------------------------------------------------------------- VisA


def _visa_raw(root: Path) -> Path:
    rows = ["object,split,label,image,mask"]
    for i in range(2):
        p = f"candle/Data/Images/Normal/{i:04d}.JPG"
        _save(root / p, _rgb(i))
        rows.append(f"candle,train,normal,{p},")
    p = "candle/Data/Images/Normal/0002.JPG"
    _save(root / p, _rgb(5))
    rows.append(f"candle,test,normal,{p},")
    p, m = "candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png"
    _save(root / p, _rgb(6))
    _save(root / m, _mask(value=3))  # VisA masks hold class indices > 0
    rows.append(f"candle,test,anomaly,{p},{m}")
    _save(root / "pcb1/Data/Images/Normal/0000.JPG", _rgb(7))
    rows.append("pcb1,train,normal,pcb1/Data/Images/Normal/0000.JPG,")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return root


def test_visa_raw_release(tmp_path: Path) -> None:
    root = _visa_raw(tmp_path / "visa")
    train = VisADataset(root, "candle", "train", image_size=SIZE)
    assert len(train) == 2 and train.kind == "object" and train.labels == [0, 0]
    test = VisADataset(root, "candle", "test", image_size=SIZE)
    assert test.counts() == {"good": 1, "bad": 1}
    s = test[1]
    assert s["label"] == 1 and s["defect"] == "bad" and float(s["mask"].sum()) > 0
    assert train[0]["foreground"].shape == (1, SIZE, SIZE)
    assert list_categories(root) == ["candle", "pcb1"]
    with pytest.raises(DatasetError, match="candle, pcb1"):
        VisADataset(root, "cashew", "train")
    assert detect_layout(root, "candle") == "visa"
    assert isinstance(open_dataset(root, "candle", "test", SIZE), VisADataset)


def test_visa_raw_bad_csv(tmp_path: Path) -> None:
    root = _visa_raw(tmp_path / "visa")
    (root / "candle/Data/Masks/Anomaly/000.png").unlink()
    with pytest.raises(DatasetError, match="000.png"):
        VisADataset(root, "candle", "test")
    (root / "split_csv" / "1cls.csv").write_text("object,split,image\ncandle,train,x.JPG\n")
    with pytest.raises(DatasetError, match="label, mask"):
        VisADataset(root, "candle", "train")


def test_visa_prepared_layout(tmp_path: Path) -> None:
    cat = tmp_path / "candle"
    _save(cat / "train" / "good" / "000.JPG", _rgb(0))
    _save(cat / "test" / "good" / "001.JPG", _rgb(1))
    _save(cat / "test" / "bad" / "002.JPG", _rgb(2))
    _save(cat / "ground_truth" / "bad" / "002.png", _mask())
    test = VisADataset(tmp_path, "candle", "test", image_size=SIZE)
    assert test.counts() == {"good": 1, "bad": 1} and test.kind == "object"


# ----------------------------------------------------------------------------- DAGM


def _dagm(root: Path, with_labels_txt: bool = True) -> Path:
    for split, defective in (("Train", {"0002"}), ("Test", {"0001", "0003"})):
        folder = root / "Class3" / split
        lines = ["1"]
        for i in range(1, 5):
            name = f"{i:04d}"
            _save(folder / f"{name}.PNG", np.full((20, 20), 40 * i, np.uint8))
            if name in defective:
                _save(folder / "Label" / f"{name}_label.PNG", _mask(20, 20))
                lines.append(f"{i}\t1\t{name}.PNG\t0\t{name}_label.PNG")
            else:
                lines.append(f"{i}\t0\t{name}.PNG\t0\t0")
        if with_labels_txt:
            (folder / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("with_labels_txt", [True, False])
def test_dagm(tmp_path: Path, with_labels_txt: bool) -> None:
    root = _dagm(tmp_path / "dagm", with_labels_txt)
    train = DAGMDataset(root, "Class3", "train", image_size=SIZE)
    assert [r.image.name for r in train.records] == ["0001.PNG", "0003.PNG", "0004.PNG"]
    assert train.kind == "texture" and train.labels == [0, 0, 0]
    test = DAGMDataset(root, "Class3", "test", image_size=SIZE)
    assert test.labels == [1, 0, 1, 0] and test.counts() == {"good": 2, "defect": 2}
    assert float(test[0]["mask"].sum()) > 0 and float(test[1]["mask"].sum()) == 0
    assert detect_layout(root, "Class3") == "dagm"
    assert isinstance(open_dataset(root, "Class3", "train", SIZE), DAGMDataset)


def test_dagm_flagged_without_label_file(tmp_path: Path) -> None:
    root = _dagm(tmp_path / "dagm")
    (root / "Class3" / "Test" / "Label" / "0003_label.PNG").unlink()
    with pytest.raises(DatasetError, match="0003"):
        DAGMDataset(root, "Class3", "test")


# ----------------------------------------------------------------------------- detection


def test_open_dataset_detection_and_errors(tmp_path: Path, mvtec_root: Path) -> None:
    ds = open_dataset(mvtec_root, "widget", "test", image_size=SIZE)
    assert isinstance(ds, MVTecDataset) and len(ds) == 3
    with pytest.raises(DatasetError, match="1cls.csv") as err:
        open_dataset(mvtec_root, "gadget", "train")
    assert "Train/" in str(err.value) and "widget" in str(err.value)
    (mvtec_root / "odd").mkdir()
    with pytest.raises(DatasetError, match="Could not recognise"):
        open_dataset(mvtec_root, "odd", "train")
    with pytest.raises(ValueError, match="dataset"):
        open_dataset(mvtec_root, "widget", dataset="imagenet")
    # an explicit dataset picks that table's kind
    _mvtec(tmp_path / "mpdd", "metal_plate")
    assert open_dataset(tmp_path / "mpdd", "metal_plate", dataset="mpdd").kind == "object"
    assert open_dataset(tmp_path / "mpdd", "metal_plate", dataset="mvtec").kind == "texture"


def test_category_tables() -> None:
    sizes = {name: len(table) for name, table in DATASET_CATEGORIES.items()}
    assert sizes == {"mvtec": 15, "visa": 12, "mpdd": 6, "dagm": 10, "mini": sizes["mini"]}
    textures = {c for c, k in DATASET_CATEGORIES["mvtec"].items() if k == "texture"}
    assert textures == {"carpet", "grid", "leather", "tile", "wood", "zipper"}
    assert category_kind("zipper") == "texture" and category_kind("bottle") == "object"
    assert category_kind("pcb3") == "object" and category_kind("Class7") == "texture"
    assert category_kind("magnetic_tile") == "texture"  # unknown -> texture
    assert category_kind("bottle", "dagm") == "texture"
    with pytest.raises(ValueError, match="mvtec"):
        category_kind("bottle", "nope")


def test_list_categories(tmp_path: Path, mvtec_root: Path) -> None:
    _mvtec(mvtec_root, "other")
    (mvtec_root / "not_a_category").mkdir()
    assert list_categories(mvtec_root) == ["other", "widget"]
    root = _dagm(tmp_path / "dagm")
    assert list_categories(root, "dagm") == ["Class3"]


# ----------------------------------------------------------------------------- load_tensors


def test_load_tensors(mvtec_root: Path) -> None:
    test = MVTecDataset(mvtec_root, "widget", "test", image_size=SIZE)
    cache = load_tensors(test, batch_size=2)
    assert isinstance(cache, SplitTensors)
    assert cache.images.shape == (3, 3, SIZE, SIZE) and cache.images.dtype == torch.uint8
    assert cache.masks.shape == (3, 1, SIZE, SIZE) and cache.masks.dtype == torch.uint8
    assert cache.foreground.shape == (3, 1, SIZE, SIZE) and cache.foreground.dtype == torch.uint8
    assert cache.labels.dtype == torch.long and cache.labels.tolist() == test.labels
    assert cache.defects == [r.defect for r in test.records]
    assert cache.paths == [str(r.image) for r in test.records]
    assert int(cache.masks.max()) == 1
    expected = (test[2]["image"] * 255).round().to(torch.uint8)
    assert torch.equal(cache.images[2], expected)


def test_load_tensors_workers_match(mvtec_root: Path) -> None:
    train = MVTecDataset(mvtec_root, "widget", "train", image_size=SIZE)
    a, b = load_tensors(train), load_tensors(train, num_workers=1)
    assert torch.equal(a.images, b.images) and a.paths == b.paths


def test_load_tensors_needs_fixed_size(mvtec_root: Path) -> None:
    with pytest.raises(DatasetError, match="image_size"):
        load_tensors(MVTecDataset(mvtec_root, "widget", "train", image_size=None))
