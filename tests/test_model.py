"""DiffusionAD as one module: pixel ranges, prediction, network overrides."""

from __future__ import annotations

import pytest
import torch

from diffad_core.model import DiffusionAD, image_scores
from diffad_core.runtime import Networks


def _model(pixel_range: str = "unit") -> DiffusionAD:
    torch.manual_seed(0)
    return DiffusionAD.from_preset("tiny", image_size=32, pixel_range=pixel_range).eval()


def test_symmetric_pixel_range_round_trip() -> None:
    model = _model("symmetric")
    x = torch.rand(2, 3, 32, 32)
    z = model.to_model_space(x)
    assert z.min() >= -1 and z.max() <= 1 and torch.allclose(z, 2 * x - 1)
    assert torch.allclose(model.to_image_space(z), x, atol=1e-6)
    assert model.to_image_space(torch.full((1,), 3.0)).item() == 1.0  # clamped for display
    unit = _model("unit")
    assert torch.equal(unit.to_model_space(x), x)


@pytest.mark.parametrize("pixel_range", ["unit", "symmetric"])
def test_predict_shapes_ranges_and_determinism(pixel_range: str) -> None:
    model = _model(pixel_range)
    x = torch.rand(2, 3, 32, 32)
    a = model.predict(x, generator=torch.Generator().manual_seed(1), top_k=8)
    b = model.predict(x, generator=torch.Generator().manual_seed(1), top_k=8)
    assert a.anomaly_map.shape == (2, 1, 32, 32) and a.score.shape == (2,)
    assert torch.equal(a.anomaly_map, b.anomaly_map)
    assert a.reconstruction.min() >= 0 and a.reconstruction.max() <= 1
    assert torch.allclose(a.score, image_scores(a.anomaly_map, 8))
    assert a.anomaly_map.dtype == torch.float32


def test_predict_runs_the_networks_it_is_given() -> None:
    model = _model()
    calls: list[str] = []

    def unet(x_t, t):
        calls.append("unet")
        return model.unet(x_t, t)

    def segnet(x):
        calls.append("seg")
        return model.segnet(x)

    model.predict(torch.rand(1, 3, 32, 32), generator=torch.Generator().manual_seed(0), nets=Networks(unet, segnet))
    assert calls == ["unet", "unet", "seg"]


def test_bad_images_get_one_clear_error() -> None:
    model = _model()
    with pytest.raises(ValueError, match="integer dtype"):
        model.predict(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="built for 32 x 32"):
        model.predict(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.predict(torch.rand(3, 32, 32))


def test_gain_norm_removes_exposure_and_keeps_the_input_exposure_for_display() -> None:
    torch.manual_seed(0)
    model = DiffusionAD.from_preset("tiny", image_size=32, input_norm="gain").eval()
    x = 0.2 + 0.3 * torch.rand(2, 3, 32, 32)  # means near 0.35
    bright = 1.6 * x  # the same scene at a 1.6x exposure
    z = model.to_model_space(x)
    assert torch.allclose(z.mean(dim=(1, 2, 3)), torch.full((2,), 0.5), atol=1e-6)
    assert torch.allclose(z, model.to_model_space(bright), atol=1e-6)
    a = model.predict(x, generator=torch.Generator().manual_seed(1), top_k=8)
    b = model.predict(bright, generator=torch.Generator().manual_seed(1), top_k=8)
    assert torch.allclose(a.anomaly_map, b.anomaly_map, atol=1e-5) and torch.allclose(a.score, b.score, atol=1e-5)
    # reconstructions come back at each input's own exposure (where 1.6x does not clip)
    inside = (b.reconstruction < 0.99) & (a.reconstruction > 0.01)
    assert inside.float().mean() > 0.5
    assert torch.allclose((1.6 * a.reconstruction)[inside], b.reconstruction[inside], atol=1e-4)
    assert torch.equal(model.to_model_space(torch.zeros(1, 3, 32, 32)), torch.zeros(1, 3, 32, 32))  # black stays black
    plain = _model()
    assert plain.input_gain(x) is None and torch.equal(plain.to_model_space(bright), bright)


def test_unknown_input_norm_is_refused_and_old_configs_read_as_none() -> None:
    from diffad_core.model import ModelConfig

    with pytest.raises(ValueError, match="input_norm='global' is unknown"):
        DiffusionAD.from_preset("tiny", image_size=32, input_norm="global")
    data = _model().config.to_dict()
    assert data["input_norm"] == "none"
    del data["input_norm"]  # a file written before the option existed
    assert ModelConfig.from_dict(data).input_norm == "none"


def test_input_norm_survives_a_save_and_load(tmp_path) -> None:
    from diffad_core.checkpoint import load_model, save_weights

    model = DiffusionAD.from_preset("tiny", image_size=32, input_norm="gain")
    save_weights(tmp_path / "m.safetensors", model)
    assert load_model(tmp_path / "m.safetensors").config.input_norm == "gain"
