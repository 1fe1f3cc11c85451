"""The frozen UNet in OpenVINO: equal to torch's pass, a training run on it, exact resume, clear errors."""

from __future__ import annotations

import pytest
import torch

from diffad_core.checkpoint import load_checkpoint, load_model
from diffad_core.engine import OpenVINOUNet, openvino_available
from diffad_core.pretrained import pretrained_start
from diffad_core.train import TrainConfig, fit

pytestmark = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")


def _config(**kw) -> TrainConfig:
    base = dict(image_size=32, batch_size=4, steps=3, checkpoint_every=2, log_every=1, device="cpu", seed=5,
                lr_unet=0.0, unet_engine="openvino", amp="off", init="pretrained")
    base.update(kw)
    return TrainConfig.from_preset("tiny", **base)


def _images(n=6, size=32, seed=0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _unet_and_input(batch=3, size=32):
    # the shipped start's UNet: a freshly built one's last convolution is zero, so it outputs zeros
    unet = load_model(pretrained_start("tiny", 64)).unet.train()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    return unet, x, torch.tensor([0, 250, 999][:batch])


def test_float32_pass_equals_the_unet_and_leaves_it_as_it_was():
    unet, x, t = _unet_and_input()
    engine = OpenVINOUNet(unet, 3, 32, bf16=False, threads=1)
    assert unet.training  # converted in eval mode, handed back in train mode
    with torch.no_grad():
        want = unet(x, t)
    got = engine(x, t)
    assert got.dtype == torch.float32 and got.shape == want.shape and want.abs().mean() > 0.1
    assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())
    assert torch.allclose(engine(x[:1], t[:1]), got[:1], atol=1e-5)  # any batch size
    first = engine(x, t)
    engine(x.flip(0), t.flip(0))  # a second call must not overwrite the first result
    assert torch.equal(first, got)


def test_bfloat16_pass_is_close_to_the_unet_and_channels_last_input_is_accepted():
    unet, x, t = _unet_and_input()
    engine = OpenVINOUNet(unet, 3, 32, bf16=True, threads=1)
    with torch.no_grad():
        want = unet(x, t)
    got = engine(x.contiguous(memory_format=torch.channels_last), t)
    assert (got - want).abs().max() < 0.15 * want.abs().max()
    assert torch.corrcoef(torch.stack([got.flatten(), want.flatten()]))[0, 1] > 0.999


def test_bad_input_and_settings_are_refused():
    unet, x, t = _unet_and_input()
    engine = OpenVINOUNet(unet, 3, 32, bf16=False, threads=1)
    with pytest.raises(ValueError, match=r"shape \(B, 3, 32, 32\)"):
        engine(torch.zeros(1, 3, 64, 64), t[:1])
    with pytest.raises(ValueError, match="threads=0"):
        OpenVINOUNet(unet, 3, 32, bf16=False, threads=0)
    with pytest.raises(ValueError, match="lr_unet"):
        TrainConfig(lr_unet=1e-4, unet_engine="openvino")
    with pytest.raises(ValueError, match="unet_engine='onnx' is unknown"):
        TrainConfig(lr_unet=0.0, unet_engine="onnx")


def test_training_on_the_engine_matches_torch_and_resumes_exactly(tmp_path):
    # float32 from the shipped start: the engine's eps equal torch's within 1e-4, so the SegNet's
    # losses agree closely
    torch_run = fit(_config(unet_engine="torch"), _images(), progress=False)
    full = fit(_config(), _images(), out_dir=tmp_path / "full", progress=False)
    for name in ("focal", "smooth_l1"):
        assert abs(full.history[-1][name] - torch_run.history[-1][name]) < 1e-3 * max(1.0, torch_run.history[-1][name])
    for name, value in torch_run.model.unet.state_dict().items():  # the UNet stays frozen
        assert torch.equal(value, full.model.unet.state_dict()[name]), name
    fit(_config(steps=2), _images(), out_dir=tmp_path / "part", progress=False)
    fit(_config(), _images(), out_dir=tmp_path / "part", resume=True, progress=False)
    a, b = (load_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
