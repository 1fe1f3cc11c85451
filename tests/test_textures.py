"""Tests for diffad_core.textures: procedural textures, texture folders, the grid shuffle (docs/method.md §4)."""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

from _images import seeded, write_pngs
from diffad_core.synthesis import AnomalySynthesizer
from diffad_core.textures import PROCEDURAL_FAMILIES, TextureFolder, load_texture_folder, procedural_textures, shuffle_grid

# --------------------------------------------------------------------------- procedural textures


def test_procedural_textures():
    tex = procedural_textures(10, (24, 32), generator=seeded())
    assert tex.shape == (10, 3, 24, 32) and tex.dtype == torch.float32
    assert tex.min() >= 0 and tex.max() <= 1
    assert (tex.flatten(1).std(1) > 0.02).all()  # none is flat
    assert (tex.mean((2, 3))[:, None] - tex.mean((2, 3))[None]).abs().sum(-1).triu(1).max() > 0.3  # colours vary
    assert torch.equal(tex, procedural_textures(10, (24, 32), generator=seeded()))
    assert not torch.equal(tex, procedural_textures(10, (24, 32), generator=seeded(1)))
    assert len(PROCEDURAL_FAMILIES) == 5


# --------------------------------------------------------------------------- texture folders


def test_load_texture_folder(tmp_path):
    write_pngs(tmp_path / "a", [(255, 0, 0), (0, 255, 0)])
    write_pngs(tmp_path / "b" / "c", [(0, 0, 255)])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    bank = load_texture_folder(tmp_path, (8, 12))
    assert bank.shape == (3, 3, 8, 12) and bank.dtype == torch.uint8
    assert sorted(bank[:, :, 0, 0].tolist()) == [[0, 0, 255], [0, 255, 0], [255, 0, 0]]
    assert load_texture_folder(tmp_path, 8, max_images=2).shape[0] == 2


def write_classes(root, classes: int = 6, per_class: int = 10):
    """A DTD-like tree root/<class>/<i>.jpg|png, each file a distinct flat colour (red = file number)."""
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            k = c * per_class + i
            suffix = ".jpg" if k % 2 else ".png"
            Image.new("RGB", (40 + k % 7, 30), (4 * k, 255 - 4 * k, 128)).save(folder / f"{i:03d}{suffix}", quality=95)


def red_values(bank: torch.Tensor) -> list[int]:
    return [round(v / 4) for v in bank[:, 0].float().mean((1, 2)).tolist()]


def test_texture_folder_uses_every_image(tmp_path):
    write_classes(tmp_path / "dtd")
    (tmp_path / "dtd" / "class00" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "dtd" / "class03" / "empty.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipping 2 unreadable.*broken\.jpg") as record:
        folder = TextureFolder(tmp_path / "dtd", cache_images=8)
    assert len([w for w in record if "unreadable" in str(w.message)]) == 1  # one warning for all
    assert len(folder) == 60
    everything = folder.images(range(60), (6, 5))
    assert everything.shape == (60, 3, 6, 5) and everything.dtype == torch.uint8
    assert red_values(everything) == list(range(60))  # every file, in sorted path order
    assert len(folder._cache) == 8  # bounded: only the last 8 decoded images are kept


def test_texture_folder_draws_do_not_depend_on_the_cache(tmp_path):
    write_classes(tmp_path / "dtd", classes=3, per_class=20)
    picks = torch.randint(0, 60, (40,), generator=seeded())
    small = TextureFolder(tmp_path / "dtd", cache_images=1)
    large = TextureFolder(tmp_path / "dtd", cache_images=100)
    large.images(range(60), 8)  # a warm cache
    assert torch.equal(small.images(picks, 8), large.images(picks, 8))
    assert red_values(small.images(picks, 8)) == picks.tolist()


def test_synthesizer_samples_the_whole_folder(tmp_path):
    write_classes(tmp_path / "dtd")
    synth = AnomalySynthesizer(kind="texture", anomaly_source=tmp_path / "dtd", max_source_images=4,
                               num_augmentations=0, p_anomaly=1.0, beta_range=(0.0, 0.0))
    seen = set()
    for step in range(12):
        out = synth(torch.zeros(16, 3, 16, 16), generator=seeded(step))
        inside = out.image[:, 0][out.mask[:, 0] > 0]  # red channel = 4 k / 255 of texture k
        seen |= set((inside * 255 / 4).round().long().tolist())
        assert len(synth.texture_folder()._cache) <= 4
    assert len(seen) > 50  # 192 draws out of 60 files: nearly all are used (a 512 cap would not matter here)
    again = AnomalySynthesizer(kind="texture", anomaly_source=tmp_path / "dtd", num_augmentations=0, p_anomaly=1.0)
    first = AnomalySynthesizer(kind="texture", anomaly_source=tmp_path / "dtd", num_augmentations=0, p_anomaly=1.0)
    first(torch.zeros(4, 3, 16, 16), generator=seeded(0))  # a different history: same result for the same seed
    for u, v in zip(again(torch.zeros(4, 3, 16, 16), generator=seeded(7)), first(torch.zeros(4, 3, 16, 16), generator=seeded(7))):
        assert torch.equal(u, v)


def test_texture_folder_replaces_undecodable_file(tmp_path):
    write_pngs(tmp_path / "t", [(10, 0, 0), (20, 0, 0), (30, 0, 0)])
    good = (tmp_path / "t" / "tex1.png").read_bytes()
    (tmp_path / "t" / "tex1.png").write_bytes(good[: len(good) // 2])  # header fine, pixels truncated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = TextureFolder(tmp_path / "t")
    if len(folder) == 3:  # the header passed: decoding fails, the next file stands in
        with pytest.warns(UserWarning, match="tex1.png"):
            bank = folder.images([0, 1, 2], 4)
        assert bank[:, 0, 0, 0].tolist() == [10, 30, 30]


def test_load_texture_folder_errors(tmp_path):
    empty = tmp_path / "empty_textures"
    empty.mkdir()
    (empty / "junk.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="empty_textures"):
        load_texture_folder(empty, 8)
    with pytest.raises(FileNotFoundError, match="missing_folder"):
        load_texture_folder(tmp_path / "missing_folder", 8)
    synth = AnomalySynthesizer(anomaly_source=empty, p_anomaly=1.0, texture_prob_object=1.0)
    with pytest.raises(ValueError, match="empty_textures"):
        synth(torch.rand(2, 3, 16, 16))


# --------------------------------------------------------------------------- self-augmentation grid


def test_shuffle_grid_permutes_tiles():
    x = torch.arange(2 * 1 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16)
    out = shuffle_grid(x, grid=4, generator=seeded())
    for b in range(2):
        tiles_in = {tuple(x[b, 0, i : i + 4, j : j + 4].flatten().tolist()) for i in range(0, 16, 4) for j in range(0, 16, 4)}
        tiles_out = [tuple(out[b, 0, i : i + 4, j : j + 4].flatten().tolist()) for i in range(0, 16, 4) for j in range(0, 16, 4)]
        # each output tile is an input tile: the rows of tiles and the columns of tiles are permuted
        assert set(tiles_out) <= tiles_in
    assert not torch.equal(out, x)
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_shuffle_grid_keeps_remainder_rows():
    x = torch.rand(3, 3, 19, 21, generator=seeded())
    out = shuffle_grid(x, grid=8, generator=seeded(1))
    assert torch.equal(out[:, :, 16:, 16:], x[:, :, 16:, 16:])  # beyond 8 * (19 // 8) rows / columns
    with pytest.raises(ValueError, match="too small"):
        shuffle_grid(torch.zeros(1, 3, 4, 4), grid=8)
