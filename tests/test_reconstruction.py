"""reconstruct / iterative_reconstruct with oracle and toy networks."""

from __future__ import annotations

import pytest
import torch

from conftest import OracleUNet, ToyUNet
from diffad_core.reconstruction import ddim_timesteps, iterative_reconstruct, reconstruct
from diffad_core.schedule import NoiseSchedule


def test_oracle_reconstructs_exactly(gen):
    s = NoiseSchedule()
    x0 = torch.rand(3, 3, 8, 8, generator=gen) * 2 - 1
    rec = reconstruct(OracleUNet(s, x0), s, x0, t_s=200, t_b=400, w=1.0, generator=gen)
    for field in (rec.x0_guided, rec.x0_small, rec.x0_big):
        assert field.shape == x0.shape
        assert torch.allclose(field, x0, atol=1e-4)


def test_explicit_noises_make_it_deterministic(gen):
    s = NoiseSchedule()
    net = ToyUNet()
    x = torch.rand(2, 3, 8, 8, generator=gen)
    ns, nb = torch.randn_like(x), torch.randn_like(x)
    a = reconstruct(net, s, x, noise_s=ns, noise_b=nb)
    b = reconstruct(net, s, x, noise_s=ns, noise_b=nb)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    c = reconstruct(net, s, x)  # random noises differ
    assert not torch.equal(a.x0_guided, c.x0_guided)


def test_w0_equals_small_estimate(gen):
    s = NoiseSchedule()
    x = torch.rand(2, 3, 8, 8, generator=gen)
    rec = reconstruct(ToyUNet(), s, x, w=0.0, generator=gen)
    assert torch.allclose(rec.x0_guided, rec.x0_small, atol=1e-6)


def test_unet_called_twice_with_per_sample_long_t(gen):
    calls = []

    def unet(x_t, t):
        calls.append((t.dtype, tuple(t.shape), t.tolist()))
        return torch.zeros_like(x_t)

    reconstruct(unet, NoiseSchedule(), torch.rand(2, 3, 4, 4), t_s=10, t_b=20)
    assert sorted(c[2] for c in calls) == [[10, 10], [20, 20]]
    assert all(c[0] == torch.long and c[1] == (2,) for c in calls)


def test_iterative_ddpm_oracle_and_call_count(gen):
    s = NoiseSchedule()
    x0 = torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    oracle = OracleUNet(s, x0)
    count = {"n": 0}

    def unet(x_t, t):
        count["n"] += 1
        return oracle(x_t, t)

    out = iterative_reconstruct(unet, s, x0, t_start=20, method="ddpm", generator=gen)
    assert count["n"] == 21
    assert torch.allclose(out, x0, atol=1e-4)


def test_iterative_ddim_steps(gen):
    s = NoiseSchedule()
    x0 = torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    out = iterative_reconstruct(OracleUNet(s, x0), s, x0, t_start=400, steps=10, method="ddim", generator=gen)
    assert torch.allclose(out, x0, atol=1e-4)
    assert ddim_timesteps(400, 5) == [400, 300, 200, 100, 0]
    assert ddim_timesteps(7, 1) == [7]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t_start": 1000}, "t_start"),
        ({"t_start": 10, "method": "euler"}, "method"),
        ({"t_start": 10, "steps": 5}, "DDPM visits every step"),
    ],
)
def test_iterative_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        iterative_reconstruct(ToyUNet(), NoiseSchedule(), torch.rand(1, 3, 4, 4), **kwargs)


def test_reconstruct_errors():
    s = NoiseSchedule()
    with pytest.raises(ValueError, match="t_s=1000"):
        reconstruct(ToyUNet(), s, torch.rand(1, 3, 4, 4), t_s=1000)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        reconstruct(ToyUNet(), s, torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="integer dtype"):
        reconstruct(ToyUNet(), s, torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="noise_s has shape"):
        reconstruct(ToyUNet(), s, torch.rand(1, 3, 4, 4), noise_s=torch.rand(1, 3, 2, 2))
