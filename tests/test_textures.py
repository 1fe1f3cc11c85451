"""Tests for diffad_core.textures: procedural textures, texture folders, the grid shuffle (docs/method.md §4)."""

from __future__ import annotations

import pytest
import torch

from _images import seeded, write_pngs
from diffad_core.synthesis import AnomalySynthesizer
from diffad_core.textures import PROCEDURAL_FAMILIES, load_texture_folder, procedural_textures, shuffle_grid

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
