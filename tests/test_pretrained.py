"""Shipped weights: paths, the missing-file error, and fp16 files loading into a float32 model."""

from __future__ import annotations

import pytest
import torch

from diffad_core import DiffusionAD, save_weights
from diffad_core import pretrained
from diffad_core.pretrained import PRETRAINED, load_pretrained, pretrained_path


def _fp16_weights(path, seed: int = 0) -> DiffusionAD:
    torch.manual_seed(seed)
    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    half = DiffusionAD(model.config).eval()
    half.load_state_dict(model.state_dict())
    save_weights(path, half.half())
    return model


def test_every_category_names_a_safetensors_file_under_the_weights_dir(monkeypatch):
    monkeypatch.delenv(pretrained.WEIGHTS_ENV, raising=False)
    assert set(PRETRAINED) == {"brick", "gravel", "nut", "pill"}
    for cat, name in PRETRAINED.items():
        assert pretrained_path(cat) == pretrained.WEIGHTS_DIR / name and name.endswith(".safetensors")


def test_unknown_category_lists_the_known_ones():
    with pytest.raises(ValueError, match="brick"):
        pretrained_path("bottle")


def test_missing_file_says_how_to_get_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="diffad train"):
        load_pretrained("nut")


def test_fp16_file_loads_into_float32_parameters_in_eval_mode(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(tmp_path))
    reference = _fp16_weights(tmp_path / PRETRAINED["brick"])
    model = load_pretrained("brick")
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        # the values are the reference's, rounded to fp16 once
        assert torch.equal(p, q.half().float()), name
    x = torch.rand(2, 3, 32, 32)
    out = model.predict(x, generator=torch.Generator().manual_seed(0))
    assert out.anomaly_map.dtype == torch.float32 and out.anomaly_map.shape == (2, 1, 32, 32)


@pytest.mark.parametrize("category", sorted(PRETRAINED))
def test_shipped_weights_when_present_are_tiny_models_at_their_sizes(category, monkeypatch):
    monkeypatch.delenv(pretrained.WEIGHTS_ENV, raising=False)
    if not pretrained_path(category).is_file():
        pytest.skip(f"{pretrained_path(category)} not shipped in this checkout")
    model = load_pretrained(category)
    # gravel and nut ship at 128 px (chosen on validation sets; README, "Trained models"), brick and pill at 64 px
    assert model.image_size == (128 if category in ("gravel", "nut") else 64) and model.config.preset == "tiny"
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
