"""The one runtime rule (device, autocast, compile, noise draws) shared by training and evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffad_core.model import DiffusionAD
from diffad_core.runtime import Networks, compile_networks, randn, resolve_device, use_bf16


class _FakeOptimized(nn.Module):
    """Mimics torch.compile's wrapper of a module: calls go through it, attribute lookups that the
    wrapper lacks are handed to the original module (which is how the SegNet bug arose)."""

    def __init__(self, mod: nn.Module, calls: list) -> None:
        super().__init__()
        self._orig_mod = mod
        self._calls = calls

    def forward(self, *args, **kwargs):
        self._calls.append(type(self._orig_mod).__name__)
        return self._orig_mod(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._orig_mod, name)


@pytest.fixture
def fake_compile(monkeypatch):
    """Replace torch.compile by a spy; returns the list of names that ran through a 'compiled' call."""
    calls: list[str] = []

    def compile_(fn, *args, **kwargs):
        if isinstance(fn, nn.Module):
            return _FakeOptimized(fn, calls)
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", "fn"))

        def wrapped(*a, **k):
            calls.append(name)
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(torch, "compile", compile_)
    return calls


def test_bf16_rule_is_the_same_for_every_device_and_mode() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not use_bf16("off", cpu) and not use_bf16("off", cuda)
    assert use_bf16("bf16", cpu) and use_bf16("bf16", cuda)
    assert not use_bf16("auto", cpu) and use_bf16("auto", cuda)
    with pytest.raises(ValueError, match="amp"):
        use_bf16("fp8", cpu)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="not a valid torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_randn_draws_on_the_generator_device_in_float32_then_casts() -> None:
    a = randn((2, 3), generator=torch.Generator().manual_seed(5))
    b = torch.randn((2, 3), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.float32
    c = randn((2, 3), generator=torch.Generator().manual_seed(5), dtype=torch.bfloat16)
    assert c.dtype == torch.bfloat16 and torch.equal(c, b.to(torch.bfloat16))
    torch.manual_seed(1)
    d = randn((4,))
    torch.manual_seed(1)
    assert torch.equal(d, torch.randn(4))


def test_compile_networks_leaves_the_model_alone(fake_compile) -> None:
    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    unet, segnet = model.unet, model.segnet
    nets = compile_networks(model)
    assert model.unet is unet and model.segnet is segnet
    assert getattr(model.unet, "_compiled_call_impl", None) is None
    x = torch.rand(1, 6, 32, 32)
    nets.segnet.forward_logits(x)
    assert fake_compile == ["SegUNet.forward_logits"]  # the logits path is compiled, not forwarded
    assert compile_networks(model, enabled=False) == Networks(unet, segnet)


def test_training_with_compile_runs_the_segnet_compiled(fake_compile) -> None:
    """Bug: the loss looks up segnet.forward_logits, which a compile wrapper forwards to the plain module."""
    from diffad_core.train import TrainConfig, fit

    cfg = TrainConfig.from_preset("tiny", image_size=32, steps=1, batch_size=2, compile=True, init="scratch",
                                  device="cpu", log_every=1)
    fit(cfg, torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), progress=False)
    assert "SegUNet.forward_logits" in fake_compile
    assert "ReconUNet" in fake_compile


def test_evaluation_with_compile_does_not_change_the_callers_model(fake_compile) -> None:
    """Bug: evaluation compiled the networks in place (nn.Module.compile)."""
    from diffad_core.inference import EvalConfig, predict_images

    model = DiffusionAD.from_preset("tiny", image_size=32)
    predict_images(model, torch.rand(2, 3, 32, 32), EvalConfig(device="cpu", compile=True, batch_size=2))
    assert getattr(model.unet, "_compiled_call_impl", None) is None
    assert getattr(model.segnet, "_compiled_call_impl", None) is None
    assert "ReconUNet" in fake_compile and any("SegUNet" in c for c in fake_compile)


def test_cores_and_native_bf16_probe(monkeypatch) -> None:
    import os

    from diffad_core.runtime import available_cores, cpu_has_native_bf16

    assert 1 <= available_cores() <= (os.cpu_count() or 1)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is True
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert cpu_has_native_bf16() is False  # a torch without the probes: assume emulated bf16
