"""Fuzzing the dataset readers: corrupt files, every PIL mode and bit depth, mismatched masks.

Property (issue 7): a reader either returns the right arrays or raises ONE
:class:`DatasetError` whose message names the offending file - never a raw PIL/numpy/torch
exception, a hang, or wrong pixel values. Expected values come from an independent reference
(the arrays the test itself wrote), not from the reader.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from conftest import write_tiny_mvtec
from diffad_core.data import DatasetError, EmptyMaskWarning, MVTecDataset, load_tensors
from diffad_core.data.imageio import read_image, read_mask, resize_image
from reliability import CLEAR_ERROR, OK, assert_names, flush_counts_after_module, fuzz_settings, record  # noqa: F401

SIZE = 16


@pytest.fixture(scope="module")
def base_tree(tmp_path_factory) -> Path:
    """A tiny clean MVTec-layout category; each example works on a copy of it."""
    return write_tiny_mvtec(tmp_path_factory.mktemp("clean"), size=SIZE, n_train=3, n_good=1, n_bad=2)


def _copy(base: Path, into: str) -> Path:
    root = Path(into) / "data"
    shutil.copytree(base, root)
    return root


def _load(root: Path, split: str, image_size=SIZE):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyMaskWarning)
        ds = MVTecDataset(root, "widget", split, image_size=image_size)
        return ds, load_tensors(ds)


def _check_split(ds, cache, size) -> None:
    n = len(ds)
    assert cache.images.shape == (n, 3, *size) and cache.images.dtype == torch.uint8
    assert cache.masks.shape == (n, 1, *size) and set(cache.masks.unique().tolist()) <= {0, 1}
    assert cache.labels.tolist() == ds.labels


# --------------------------------------------------------------------------- corrupt files

_TARGETS = {
    "train image": ("train", "train/good/000.png"),
    "test image": ("test", "test/scratch/001.png"),
    "mask": ("test", "ground_truth/scratch/001_mask.png"),
}


@st.composite
def corrupt_bytes(draw, original: bytes):
    kind = draw(st.sampled_from(["random bytes", "truncated", "flipped bytes", "empty", "text", "png header only"]))
    if kind == "random bytes":
        data = draw(st.binary(min_size=1, max_size=300))
    elif kind == "truncated":
        data = original[: draw(st.integers(1, len(original) - 1))]
    elif kind == "flipped bytes":
        buf = bytearray(original)
        for pos in draw(st.lists(st.integers(8, len(buf) - 1), min_size=1, max_size=4)):
            buf[pos] ^= draw(st.integers(1, 255))
        data = bytes(buf)
    elif kind == "empty":
        data = b""
    elif kind == "text":
        data = draw(st.text(min_size=1, max_size=50)).encode("utf-8")
    else:
        data = original[:33]  # signature + IHDR, no pixel data
    return kind, data


@pytest.fixture(scope="module")
def clean_splits(base_tree) -> dict:
    return {split: _load(base_tree, split)[1] for split in ("train", "test")}


@fuzz_settings(60)
@given(data=st.data(), target=st.sampled_from(sorted(_TARGETS)))
def test_corrupt_image_and_mask_files_fail_clearly(base_tree, clean_splits, data, target):
    split, rel = _TARGETS[target]
    with tempfile.TemporaryDirectory() as tmp:
        root = _copy(base_tree, tmp)
        file = root / "widget" / rel
        kind, payload = data.draw(corrupt_bytes(file.read_bytes()))
        file.write_bytes(payload)
        try:
            ds, cache = _load(root, split)
        except DatasetError as err:
            assert_names(str(err), file.name)
            record("image and mask files (readers)", f"{kind} as {target}", CLEAR_ERROR)
            return
        # Read without error (e.g. a PNG cut after its last pixel chunk, a flip in an ancillary
        # chunk): then every pixel must be the clean file's, never silently different.
        _check_split(ds, cache, (SIZE, SIZE))
        clean = clean_splits[split]
        assert torch.equal(cache.images, clean.images) and torch.equal(cache.masks, clean.masks), kind
        record("image and mask files (readers)", f"{kind} as {target}", OK)


def test_missing_file_after_listing_is_named(base_tree, tmp_path):
    root = _copy(base_tree, str(tmp_path))
    ds = MVTecDataset(root, "widget", "train", image_size=SIZE)
    victim = root / "widget" / "train" / "good" / "001.png"
    victim.unlink()  # deleted between listing and loading (another process, a flaky disk)
    with pytest.raises(DatasetError, match="001.png"):
        load_tensors(ds)
    record("image and mask files (readers)", "file deleted after listing", CLEAR_ERROR)


# --------------------------------------------------------------------------- modes and depths


def _reference_and_image(mode: str, h: int, w: int, rng: np.random.Generator):
    """A PIL image of ``mode`` and the RGB float (H, W, 3) in [0, 1] the reader must return."""
    if mode == "RGB" or mode == "RGBA":
        arr = rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8)
        return Image.fromarray(arr, mode), arr[..., :3] / 255.0
    if mode == "L":
        arr = rng.integers(0, 256, (h, w), dtype=np.uint8)
        return Image.fromarray(arr, "L"), np.repeat(arr[..., None], 3, 2) / 255.0
    if mode == "LA":
        arr = rng.integers(0, 256, (h, w, 2), dtype=np.uint8)
        return Image.fromarray(arr, "LA"), np.repeat(arr[..., :1], 3, 2) / 255.0
    if mode == "1":
        arr = rng.integers(0, 2, (h, w)).astype(bool)
        return Image.fromarray(arr), np.repeat(arr[..., None], 3, 2).astype(np.float64)
    if mode == "P":
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        idx = rng.integers(0, 256, (h, w), dtype=np.uint8)
        im = Image.frombytes("P", (w, h), idx.tobytes())
        im.putpalette(palette.ravel().tolist())
        return im, palette[idx] / 255.0
    if mode == "I;16":
        arr = rng.integers(0, 65536, (h, w)).astype(np.uint16)
        return Image.fromarray(arr), np.repeat(arr[..., None], 3, 2) / 65535.0
    if mode == "I":
        arr = rng.integers(-1000, 70000, (h, w)).astype(np.int32)
        ref = np.clip(arr / 65535.0, 0, 1)
        return Image.fromarray(arr), np.repeat(ref[..., None], 3, 2)
    if mode == "F":
        arr = rng.uniform(-0.5, 1.5, (h, w)).astype(np.float32)
        ref = np.clip(arr, 0, 1)
        return Image.fromarray(arr), np.repeat(ref[..., None], 3, 2)
    if mode == "CMYK":
        arr = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        im = Image.fromarray(arr, "CMYK")
        # CMYK -> RGB has several conventions; PIL's is the documented one (module docstring).
        return im, np.asarray(im.convert("RGB")) / 255.0
    raise AssertionError(mode)


_FORMATS = {  # lossless formats PIL writes for each mode
    "RGB": ("png", "tiff", "bmp"), "RGBA": ("png", "tiff"), "L": ("png", "tiff", "bmp"), "LA": ("png", "tiff"),
    "1": ("png", "tiff", "bmp"), "P": ("png", "bmp", "tiff"), "I;16": ("png", "tiff"), "I": ("tiff",),
    "F": ("tiff",), "CMYK": ("tiff",),
}


@pytest.mark.parametrize("mode", sorted(_FORMATS))
@fuzz_settings(10)
@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    seed=st.integers(0, 2**16),
    fmt_pick=st.integers(0, 2),
    out_h=st.integers(1, 20),
    out_w=st.integers(1, 20),
)
def test_every_mode_and_depth_reads_the_right_pixels(mode, h, w, seed, fmt_pick, out_h, out_w):
    rng = np.random.default_rng(seed)
    im, ref = _reference_and_image(mode, h, w, rng)
    fmt = _FORMATS[mode][fmt_pick % len(_FORMATS[mode])]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"img_{mode.replace(';', '')}.{fmt}"
        im.save(path)
        got = read_image(path)
        assert got.shape == (h, w, 3) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-6, err_msg=f"{mode} {fmt}")
        mask = read_mask(path)
        np.testing.assert_array_equal(mask, ref.max(axis=2) > 0)
        resized = resize_image(got, (out_h, out_w))
        assert tuple(resized.shape) == (3, out_h, out_w)
        assert bool(((resized >= 0) & (resized <= 1)).all())
    record("image modes, sizes and bit depths (readers)", f"mode {mode}", OK)


@fuzz_settings(15)
@given(values=st.lists(st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.25]), min_size=4, max_size=4))
def test_float_images_with_nan_or_inf_are_refused_or_finite(values):
    arr = np.array(values, dtype=np.float32).reshape(2, 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "float.tiff"
        Image.fromarray(arr).save(path)
        if np.isnan(arr).any():
            with pytest.raises(DatasetError, match="float.tiff"):
                read_image(path)
            record("image modes, sizes and bit depths (readers)", "mode F with NaN", CLEAR_ERROR)
            return
        got = read_image(path)
        np.testing.assert_array_equal(got[..., 0], np.clip(arr, 0, 1))
        record("image modes, sizes and bit depths (readers)", "mode F with +-inf", OK)


# --------------------------------------------------------------------------- mask sizes


def _same_aspect(a, b) -> bool:
    ra, rb = a[0] / a[1], b[0] / b[1]
    return abs(ra - rb) <= 0.01 * max(ra, rb)


@fuzz_settings(40)
@given(
    img_hw=st.tuples(st.integers(4, 40), st.integers(4, 40)),
    scale=st.sampled_from([None, 0.5, 2.0, 3.0]),
    mask_hw=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    mask_mode=st.sampled_from(["L", "1", "RGB", "I;16"]),
    out=st.sampled_from([None, 8, (12, 6)]),
)
def test_masks_that_do_not_match_their_image(img_hw, scale, mask_hw, mask_mode, out):
    if scale is not None:  # a scaled mask keeps the aspect ratio (as when masks were resized)
        mask_hw = (max(1, round(img_hw[0] * scale)), max(1, round(img_hw[1] * scale)))
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tiny_mvtec(Path(tmp) / "data", size=16, n_train=1, n_good=1, n_bad=1)
        cat = root / "widget"
        img_path = cat / "test" / "scratch" / "000.png"
        Image.fromarray(np.full((*img_hw, 3), 128, np.uint8)).save(img_path)
        mask = np.ones(mask_hw, np.uint8)  # all defective: survives any resize
        mask_img = {"L": lambda: Image.fromarray(mask * 255),
                    "1": lambda: Image.fromarray(mask.astype(bool)),
                    "RGB": lambda: Image.fromarray(np.repeat(mask[..., None] * 200, 3, 2)),
                    "I;16": lambda: Image.fromarray(mask.astype(np.uint16) * 1000)}[mask_mode]()
        mask_path = cat / "ground_truth" / "scratch" / "000_mask.png"
        mask_img.save(mask_path)
        try:
            ds = MVTecDataset(root, "widget", "test", image_size=out)
        except DatasetError as err:
            assert not _same_aspect(mask_hw, img_hw), f"refused a mask with the image's aspect: {err}"
            assert_names(str(err), mask_path.name)
            record("masks vs image sizes (readers)", "different aspect ratio", CLEAR_ERROR)
            return
        assert mask_hw == img_hw or _same_aspect(mask_hw, img_hw)
        sample = ds[[r.image for r in ds.records].index(img_path)]
        size = img_hw if out is None else ((out, out) if isinstance(out, int) else out)
        assert tuple(sample["mask"].shape) == (1, *size)
        assert bool((sample["mask"] == 1).all()) and sample["label"] == 1
        assert tuple(sample["image"].shape) == (3, *size)
        kind = "same size" if mask_hw == img_hw else "same aspect, other size"
        record("masks vs image sizes (readers)", kind, OK)
