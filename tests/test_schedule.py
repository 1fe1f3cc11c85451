"""NoiseSchedule: hand-computed values, closed-form identities, iterative steps and error paths."""

from __future__ import annotations

import math

import pytest
import torch

from diffad_core.schedule import NoiseSchedule, cosine_betas, linear_betas


def test_linear_schedule_matches_hand_values():
    s = NoiseSchedule(1000, "linear")
    assert s.betas.dtype == torch.float64 and s.betas.shape == (1000,)
    assert s.betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    assert s.betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    step = (0.02 - 1e-4) / 999
    assert s.betas[1].item() == pytest.approx(1e-4 + step, rel=1e-12)
    assert s.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4, rel=1e-14)
    assert s.alphas_cumprod[1].item() == pytest.approx((1 - 1e-4) * (1 - 1e-4 - step), rel=1e-14)
    # the released scaling by 1000 / T
    s2 = NoiseSchedule(500, "linear")
    assert s2.betas[0].item() == pytest.approx(2e-4) and s2.betas[-1].item() == pytest.approx(0.04)


def test_linear_schedule_slow_cumprod_reference():
    betas = linear_betas(1000).tolist()
    prod, ref = 1.0, []
    for b in betas:
        prod *= 1.0 - b
        ref.append(prod)
    assert torch.allclose(NoiseSchedule(1000).alphas_cumprod, torch.tensor(ref, dtype=torch.float64), rtol=1e-12)


def test_cosine_schedule_telescopes_to_f_ratio():
    T = 1000
    s = NoiseSchedule(T, "cosine")
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 1, 10, 500, 900):
        assert s.alphas_cumprod[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)
    assert float(cosine_betas(T).max()) <= 0.999


def test_add_noise_predict_x0_roundtrip_per_sample_t(gen):
    s = NoiseSchedule()
    x0 = torch.rand(4, 3, 8, 8, generator=gen) * 2 - 1
    eps = torch.randn(4, 3, 8, 8, generator=gen)
    t = torch.tensor([0, 10, 500, 999])
    x_t = s.add_noise(x0, eps, t)
    assert torch.allclose(s.predict_x0(x_t, eps, t), x0, atol=1e-4)
    assert torch.allclose(s.predict_eps(x_t, x0, t), eps, atol=1e-4)
    # per-sample coefficients really differ: sample 0 barely noised, sample 3 almost pure noise
    assert (x_t[0] - x0[0]).abs().max() < 0.05
    abar = s.alphas_cumprod[999].item()
    assert torch.allclose(x_t[3], math.sqrt(abar) * x0[3] + math.sqrt(1 - abar) * eps[3], atol=1e-5)


def test_add_noise_int_t_equals_tensor_t(gen):
    s = NoiseSchedule()
    x0, eps = torch.rand(2, 3, 4, 4, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    assert torch.equal(s.add_noise(x0, eps, 123), s.add_noise(x0, eps, torch.tensor([123, 123])))


def test_norm_guided_w0_is_plain_small_estimate(gen):
    s = NoiseSchedule()
    x_ts = torch.randn(2, 3, 8, 8, generator=gen) * 0.3
    eps_s = torch.randn(2, 3, 8, 8, generator=gen) * 0.1
    x0_b = torch.rand(2, 3, 8, 8, generator=gen)
    out = s.norm_guided_x0(x_ts, 200, eps_s, x0_b, w=0.0)
    assert torch.allclose(out, s.predict_x0(x_ts, eps_s, 200).clamp(-1, 1), atol=1e-6)


def test_norm_guided_hand_computed_scalar():
    s = NoiseSchedule()
    a = s.alphas_cumprod[200].item()
    x_ts, e, xb = 0.3, 0.1, 0.5
    xb_ts = math.sqrt(a) * xb + math.sqrt(1 - a) * e
    e_hat = e - 1.0 * math.sqrt(1 - a) * (xb_ts - x_ts)
    ref = (x_ts - math.sqrt(1 - a) * e_hat) / math.sqrt(a)
    out = s.norm_guided_x0(torch.full((1, 1, 1, 1), x_ts), 200, torch.full((1, 1, 1, 1), e), torch.full((1, 1, 1, 1), xb), 1.0)
    assert out.item() == pytest.approx(max(-1, min(1, ref)), rel=1e-5)
    # w = 1 mixes the two estimates: the result lies between x0_small and x0_b
    small = (x_ts - math.sqrt(1 - a) * e) / math.sqrt(a)
    assert min(small, xb) <= out.item() <= max(small, xb)


def test_norm_guided_clamps(gen):
    s = NoiseSchedule()
    out = s.norm_guided_x0(torch.full((1, 1, 2, 2), 5.0), 200, torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 1.0)
    assert out.max().item() == 1.0


def test_ddpm_step_oracle_reaches_x0(gen):
    s = NoiseSchedule()
    x0 = torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    x_t = s.add_noise(x0, torch.randn(2, 3, 4, 4, generator=gen), 0)
    eps = s.predict_eps(x_t, x0, 0)
    # at t = 0 the step returns the posterior mean, which is x0 itself
    assert torch.allclose(s.ddpm_step(eps, 0, x_t, generator=gen), x0, atol=1e-5)


def test_ddpm_step_posterior_mean_hand(gen):
    s = NoiseSchedule()
    t = 50
    x0 = torch.full((1, 1, 1, 1), 0.2)
    x_t = torch.full((1, 1, 1, 1), 0.4)
    eps = s.predict_eps(x_t, x0, t)
    b, a, ap = s.betas[t].item(), s.alphas_cumprod[t].item(), s.alphas_cumprod_prev[t].item()
    mean = b * math.sqrt(ap) / (1 - a) * 0.2 + (1 - ap) * math.sqrt(1 - b) / (1 - a) * 0.4
    var = b * (1 - ap) / (1 - a)
    draws = torch.stack([s.ddpm_step(eps, t, x_t, generator=gen) for _ in range(4000)]).flatten()
    assert draws.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / 4000))
    assert draws.var().item() == pytest.approx(var, rel=0.1)


def test_ddim_step_deterministic_and_exact_with_oracle(gen):
    s = NoiseSchedule()
    x0 = torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    noise = torch.randn(2, 3, 4, 4, generator=gen)
    x_t = s.add_noise(x0, noise, 300)
    eps = s.predict_eps(x_t, x0, 300)
    x_prev = s.ddim_step(eps, 300, 100, x_t)
    # DDIM with eta = 0 keeps the same noise: x_100 = sqrt(abar_100) x0 + sqrt(1 - abar_100) eps
    assert torch.allclose(x_prev, s.add_noise(x0, noise, 100), atol=1e-4)
    assert torch.allclose(s.ddim_step(eps, 300, -1, x_t), x0, atol=1e-4)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s, x: s.add_noise(x, x, 1000), "outside"),
        (lambda s, x: s.add_noise(x, x, -1), "outside"),
        (lambda s, x: s.add_noise(x, x, torch.tensor([1, 2, 3])), "batch has 2"),
        (lambda s, x: s.add_noise(x, x, torch.tensor([0.5, 1.0])), "integer"),
        (lambda s, x: s.add_noise(x, x[:1], 3), "same shape"),
        (lambda s, x: s.add_noise((x * 255).to(torch.uint8), x, 3), "integer dtype"),
        (lambda s, x: s.predict_x0(x, x, torch.tensor([5, 1000])), "outside"),
        (lambda s, x: s.ddim_step(x, 5, 2, x, eta=-1.0), "eta"),
    ],
)
def test_errors(call, match):
    s = NoiseSchedule()
    with pytest.raises(ValueError, match=match):
        call(s, torch.rand(2, 3, 4, 4))


def test_constructor_errors():
    with pytest.raises(ValueError, match="linear.*cosine|cosine"):
        NoiseSchedule(1000, "quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta >= 1"):
        NoiseSchedule(10, "linear")
    with pytest.raises(ValueError, match="integer >= 2"):
        NoiseSchedule(1)
    assert NoiseSchedule(10, "cosine").alphas_cumprod.shape == (10,)


def test_to_device_and_dtype_follow_input():
    s = NoiseSchedule()
    x = torch.rand(1, 3, 2, 2, dtype=torch.float64)
    assert s.add_noise(x, x, 4).dtype == torch.float64
    assert s.add_noise(x.float(), x.float(), 4).dtype == torch.float32
    assert s.state_dict() == {} or all(k not in s.state_dict() for k in ("betas",))
