"""Checkpoints: atomic writes, safe loading (malicious pickles refused), weights round trip."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from diffad_core.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint, save_weights
from diffad_core.files import atomic_path
from diffad_core.model import DiffusionAD


@pytest.fixture(scope="module")
def model() -> DiffusionAD:
    torch.manual_seed(0)
    return DiffusionAD.from_preset("tiny", image_size=32)


def _save(path, model, step=1):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return save_checkpoint(path, model=model, optimizers={"all": opt}, step=step, train_config={"seed": 1})


def test_round_trip(tmp_path, model):
    _save(tmp_path / "c.pt", model, step=7)
    ck = load_checkpoint(tmp_path / "c.pt")
    assert ck["step"] == 7 and ck["train_config"] == {"seed": 1}
    assert ck["model_config"]["recon"]["image_size"] == 32
    loaded = load_model(tmp_path / "c.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    save_weights(tmp_path / "w.safetensors", model)
    loaded = load_model(tmp_path / "w.safetensors")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    # a run folder works too: model.safetensors first, else checkpoint.pt
    (tmp_path / "run").mkdir()
    _save(tmp_path / "run" / "checkpoint.pt", model, step=3)
    assert all(torch.equal(v, load_model(tmp_path / "run").state_dict()[k]) for k, v in model.state_dict().items())


def test_failed_write_keeps_previous_checkpoint(tmp_path, model, monkeypatch):
    path = _save(tmp_path / "c.pt", model, step=1)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        _save(path, model, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"], "temporary file left behind"


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "diffad-checkpoint-v1", "payload": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        load_model(evil)
    assert not (tmp_path / "PWNED_MARKER").exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_truncated_and_foreign_files(tmp_path, model):
    path = _save(tmp_path / "c.pt", model)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a diffad training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors")


def test_half_precision_weights_load_into_float32(tmp_path, model):
    save_weights(tmp_path / "h.safetensors", model, dtype=torch.float16)
    loaded = load_model(tmp_path / "h.safetensors")
    for k, v in model.state_dict().items():
        got = loaded.state_dict()[k]
        assert got.dtype == v.dtype
        if v.is_floating_point():
            assert torch.allclose(got, v, atol=1e-3, rtol=1e-3), k


def test_stale_temporaries_are_removed_and_files_are_world_readable(tmp_path, model):
    from diffad_core.files import remove_stale_temporaries

    path = _save(tmp_path / "c.pt", model)
    assert path.stat().st_mode & 0o044, "checkpoint is not readable by group/others"
    (tmp_path / ".c.pt.abc123.tmp").write_bytes(b"half")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".c.pt.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
