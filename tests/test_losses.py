"""The joint loss: normal-only noise loss, focal/smooth-L1 parts, gradient flow, edge batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import ToySegNet, ToyUNet
from diffad_core.losses import diffusionad_loss, focal_loss, sample_timesteps
from diffad_core.schedule import NoiseSchedule


def _batch(gen, b=4, hw=8):
    x = torch.rand(b, 3, hw, hw, generator=gen)
    mask = torch.zeros(b, 1, hw, hw)
    mask[1, :, 2:5, 2:5] = 1
    mask[3, :, 0:2, :] = 1
    label = (mask.flatten(1).amax(1) > 0).long()
    return x, mask, label


def test_focal_loss_hand_value():
    p = torch.tensor([0.8, 0.3])
    y = torch.tensor([1.0, 0.0])
    ref = 0.5 * (-(0.2**4) * math.log(0.8)) + 0.5 * (-(0.3**4) * math.log(0.7))
    assert focal_loss(p, y).item() == pytest.approx(ref / 2, rel=1e-5)
    logits = torch.logit(p)
    assert focal_loss(p, y, logits=logits).item() == pytest.approx(ref / 2, rel=1e-4)


def test_focal_loss_shape_error():
    with pytest.raises(ValueError, match="same shape"):
        focal_loss(torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4))


def test_loss_parts_match_independent_computation(gen):
    torch.manual_seed(0)
    s = NoiseSchedule()
    unet, seg = ToyUNet(), ToySegNet()
    x, mask, label = _batch(gen)
    t_s = torch.tensor([5, 100, 200, 299])
    t_b = torch.tensor([300, 500, 700, 999])
    ns, nb = torch.randn_like(x), torch.randn_like(x)
    out = diffusionad_loss(unet, seg, s, x, mask, label, t_s=t_s, t_b=t_b, noise_s=ns, noise_b=nb)
    # independent recomputation, normal samples are 0 and 2
    x_ts, x_tb = s.add_noise(x, ns, t_s), s.add_noise(x, nb, t_b)
    e_s, e_b = unet(x_ts, t_s), unet(x_tb, t_b)
    per = ((ns - e_s) ** 2).flatten(1).mean(1) + ((nb - e_b) ** 2).flatten(1).mean(1)
    assert out.noise.item() == pytest.approx(per[[0, 2]].mean().item(), rel=1e-5)
    x0_b = s.predict_x0(x_tb, e_b, t_b).clamp(-1, 1)
    x0_g = s.norm_guided_x0(x_ts, t_s, e_s, x0_b, 1.0)
    m = seg(torch.cat([x, x0_g], 1))
    assert torch.allclose(out.anomaly_map, m, atol=1e-6)
    assert out.smooth_l1.item() == pytest.approx(F.smooth_l1_loss(m, mask).item(), rel=1e-5)
    assert out.total.item() == pytest.approx((out.noise + 5 * out.focal + out.smooth_l1).item(), rel=1e-6)


def test_all_anomalous_batch_has_zero_noise_loss(gen):
    s = NoiseSchedule()
    x, mask, _ = _batch(gen)
    label = torch.ones(4, dtype=torch.long)
    out = diffusionad_loss(ToyUNet(), ToySegNet(), s, x, mask, label, generator=gen)
    assert out.noise.item() == 0.0
    assert torch.isfinite(out.total)


def test_segmentation_gradient_reaches_unet(gen):
    s = NoiseSchedule()
    unet, seg = ToyUNet(), ToySegNet()
    x, mask, _ = _batch(gen)
    label = torch.ones(4, dtype=torch.long)  # noise loss is 0: only the seg losses can move the UNet
    out = diffusionad_loss(unet, seg, s, x, mask, label, generator=gen)
    out.total.backward()
    assert unet.conv.weight.grad is not None and unet.conv.weight.grad.abs().sum() > 0
    assert seg.conv.weight.grad.abs().sum() > 0


def test_timestep_draws_respect_ranges(gen):
    t = sample_timesteps(10000, 0, 300, generator=gen)
    assert t.min() >= 0 and t.max() <= 299 and t.dtype == torch.long
    assert len(t.unique()) == 300
    with pytest.raises(ValueError, match="empty"):
        sample_timesteps(3, 300, 300)


def test_loss_is_reproducible_with_generator():
    s = NoiseSchedule()
    unet, seg = ToyUNet(), ToySegNet()
    x, mask, label = _batch(torch.Generator().manual_seed(1))
    a = diffusionad_loss(unet, seg, s, x, mask, label, generator=torch.Generator().manual_seed(3))
    b = diffusionad_loss(unet, seg, s, x, mask, label, generator=torch.Generator().manual_seed(3))
    assert a.total.item() == b.total.item()


@pytest.mark.parametrize(
    "mask_shape, label_shape, match",
    [((4, 8, 8), (4,), "mask must be"), ((4, 1, 8, 8), (4, 1), "label must be")],
)
def test_loss_shape_errors(gen, mask_shape, label_shape, match):
    with pytest.raises(ValueError, match=match):
        diffusionad_loss(ToyUNet(), ToySegNet(), NoiseSchedule(), torch.rand(4, 3, 8, 8), torch.zeros(mask_shape), torch.zeros(label_shape), generator=gen)
