"""Tests for diffad_core.synthesis: augmentations, blending and the synthesizer (docs/method.md §4).

Perlin noise is tested in test_perlin.py, texture sources and the grid shuffle in test_textures.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

import diffad_core.synthesis as synthesis
from _images import disc_images, old_rotate, seeded, write_pngs
from diffad_core.synthesis import (
    AUGMENTATIONS,
    AnomalySynthesizer,
    SynthesisConfig,
    SynthesisOutput,
    augment_sources,
    blend_anomaly,
    shade_region,
)

CUDA = torch.cuda.is_available()


# --------------------------------------------------------------------------- augmentations


def uint8_batch(seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(seed)
    arr = (rng.beta(2, 5, (3, 20, 24, 3)) * 255).astype(np.uint8)
    return arr, torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255


def fix_draws(monkeypatch, *, uniform: float | None = None, randint: int | None = None) -> None:
    """Make the ops' parameter draws constant."""
    if uniform is not None:
        monkeypatch.setattr(synthesis, "uniform", lambda shape, lo, hi, generator, device: torch.full(shape, float(uniform)))
    if randint is not None:
        monkeypatch.setattr(synthesis, "randint", lambda shape, lo, hi, generator, device: torch.full(shape, randint))


def to_levels(x: torch.Tensor) -> np.ndarray:
    return (x * 255).permute(0, 2, 3, 1).numpy()


def test_equalize_matches_pil_exactly():
    arr, x = uint8_batch()
    ref = np.stack([np.asarray(ImageOps.equalize(Image.fromarray(a))) for a in arr])
    np.testing.assert_array_equal(to_levels(synthesis._equalize(x, None)).round(), ref)


@pytest.mark.parametrize("cutoff", [0, 7, 20])
def test_autocontrast_matches_pil(monkeypatch, cutoff):
    arr, x = uint8_batch(1)
    fix_draws(monkeypatch, randint=cutoff)
    ref = np.stack([np.asarray(ImageOps.autocontrast(Image.fromarray(a), cutoff=cutoff)) for a in arr])
    assert np.abs(to_levels(synthesis._autocontrast(x, None)) - ref).max() <= 1.0  # PIL truncates


@pytest.mark.parametrize("factor", [0.0, 0.6, 2.0])
def test_sharpness_matches_pil(monkeypatch, factor):
    arr, x = uint8_batch(2)
    fix_draws(monkeypatch, uniform=factor)
    ref = np.stack([np.asarray(ImageEnhance.Sharpness(Image.fromarray(a)).enhance(factor)) for a in arr])
    # PIL rounds twice (its smoothed image is uint8, then the blend): within 1.5 levels
    assert np.abs(to_levels(synthesis._sharpness(x, None)) - ref).max() <= 1.5


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_posterize_matches_pil(monkeypatch, bits):
    arr, x = uint8_batch(3)
    fix_draws(monkeypatch, randint=bits)
    ref = np.stack([np.asarray(ImageOps.posterize(Image.fromarray(a), bits)) for a in arr])
    np.testing.assert_array_equal(to_levels(synthesis._posterize(x, None)).round(), ref)


def test_hue_saturation_matches_matplotlib(monkeypatch):
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    _, x = uint8_batch(4)
    fix_draws(monkeypatch, uniform=0.1)  # dh = ds = 0.1
    hsv = rgb_to_hsv(x.permute(0, 2, 3, 1).numpy())
    hsv[..., 0] = (hsv[..., 0] + 0.1) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] + 0.1, 0, 1)
    ref = hsv_to_rgb(hsv)
    ours = synthesis._hue_saturation(x, None).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_pointwise_ops_by_hand(monkeypatch):
    x = torch.tensor([0.0, 64.0, 128.0, 255.0]).div(255).view(1, 1, 1, 4).expand(1, 3, 1, 4).contiguous()
    fix_draws(monkeypatch, uniform=0.5)
    torch.testing.assert_close(synthesis._gamma(x, None), x**0.5)
    torch.testing.assert_close(synthesis._invert(x, None), 1 - x)
    # solarize: apply (0.5 < 0.5 is False) -> unchanged
    torch.testing.assert_close(synthesis._solarize(x, None), x)
    fix_draws(monkeypatch, uniform=0.2)  # apply, threshold 0.2: values >= 0.2 inverted
    torch.testing.assert_close(synthesis._solarize(x, None)[0, 0, 0], torch.tensor([0.0, 191.0, 127.0, 0.0]) / 255)


def test_table_ops_see_the_uint8_image(monkeypatch):
    # gamma, solarize and posterize act on the 8-bit level of each pixel, as imgaug's uint8 ops:
    # off-level inputs give the result of their nearest level, and equal kornia's op on levels
    import kornia.enhance as KE

    x = torch.rand(3, 3, 10, 12, generator=seeded(12))
    levels = (x * 255).round() / 255
    gamma = torch.tensor([[0.5, 1.0, 2.0], [0.7, 1.3, 1.9], [1.5, 0.6, 1.1]])
    draws(monkeypatch, [gamma])
    torch.testing.assert_close(synthesis._gamma(x, None), KE.adjust_gamma(levels, gamma), atol=1e-6, rtol=0)
    threshold = torch.tensor([0.2, 0.4, 0.5])
    draws(monkeypatch, [torch.tensor([0.0, 0.9, 0.1]), threshold])
    expected = KE.solarize(levels, torch.tensor([0.2, 2.0, 0.5]))
    torch.testing.assert_close(synthesis._solarize(x, None), expected, atol=0, rtol=0)
    bits = torch.tensor([2, 5, 8])
    draws(monkeypatch, [bits])
    torch.testing.assert_close(synthesis._posterize(x, None), KE.posterize(levels, bits), atol=0, rtol=0)
    # brightness on a grey image (Y = 0.5): every channel becomes Y * mul + add
    monkeypatch.setattr(synthesis, "uniform", lambda shape, lo, hi, generator, device: torch.full(shape, (lo + hi) / 2 + 0.05))
    grey = torch.full((1, 3, 2, 2), 0.5)
    out = synthesis._brightness(grey, None)  # mul = 1.0 + 0.05, add = 0.0 + 0.05
    torch.testing.assert_close(out, torch.full_like(grey, 0.5 * 1.05 + 0.05))


# The hand-written torch versions these ops had before they moved to kornia (issue 12), kept
# as references: each was checked against PIL / matplotlib / kornia when it was written.


def old_gamma(x, gamma):
    return torch.log(x).mul_(gamma.view(-1, 3, 1, 1)).exp_()


def old_brightness(x, mul, add):
    luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return (x + luma * (mul.view(-1, 1, 1, 1) - 1.0) + add.view(-1, 1, 1, 1)).clamp(0, 1)


def old_solarize(x, apply, threshold):
    t = torch.where(apply, threshold, 2.0).view(-1, 1, 1, 1)
    return torch.where(x >= t, 1.0 - x, x)


def old_posterize(x, bits):
    step = (2 ** (8 - bits.view(-1, 1, 1, 1))).float()
    return (x * 255.0).round().div(step).floor().mul(step / 255.0)


def old_equalize(x):
    n, c, h, w = x.shape
    levels = (x * 255.0).round().long().reshape(n * c, -1)
    hist = torch.stack([torch.bincount(row, minlength=256) for row in levels])
    ids = torch.arange(256).expand_as(hist)
    last = torch.where(hist > 0, ids, 0).amax(1, keepdim=True)
    step = (hist.sum(1, keepdim=True) - hist.gather(1, last)) // 255
    table = ((hist.cumsum(1) - hist + step // 2) // step.clamp(min=1)).clamp(max=255)
    lut = torch.where(step > 0, table, ids).float() / 255.0
    return lut.gather(1, levels).view(n, c, h, w)



def draws(monkeypatch, values: list) -> None:
    """Make the ops' draws return the given tensors, in call order (uniform and randint alike)."""
    queue = list(values)
    pop = lambda shape, lo, hi, generator, device: queue.pop(0).reshape(shape)  # noqa: E731
    monkeypatch.setattr(synthesis, "uniform", pop)
    monkeypatch.setattr(synthesis, "randint", pop)


def test_gamma_matches_old_and_numpy(monkeypatch):
    arr, x = uint8_batch(5)
    gamma = torch.tensor([[0.5, 1.0, 2.0], [0.7, 1.3, 1.9], [1.5, 0.6, 1.1]])
    draws(monkeypatch, [gamma])
    ours = synthesis._gamma(x, None)
    torch.testing.assert_close(ours, old_gamma(x, gamma), atol=2e-6, rtol=0)
    ref = (arr / 255.0) ** gamma.numpy()[:, None, None, :]
    np.testing.assert_allclose(ours.permute(0, 2, 3, 1).numpy(), ref, atol=1e-5)


def test_brightness_matches_old_where_nothing_clips(monkeypatch):
    _, x = uint8_batch(6)
    x = 0.2 + 0.6 * x  # Y stays inside [0, 1] for these factors
    mul, add = torch.tensor([0.8, 1.0, 1.2]), torch.tensor([-30.0, 0.0, 30.0]) / 255
    draws(monkeypatch, [mul, add])
    torch.testing.assert_close(synthesis._brightness(x, None), old_brightness(x, mul, add), atol=2e-6, rtol=0)


def test_brightness_clips_luma_like_uint8(monkeypatch):
    # white * 1.2 clips Y to 1 before the add (imgaug's uint8 Multiply then Add): 1 - 30/255
    white = torch.ones(1, 3, 2, 2)
    draws(monkeypatch, [torch.tensor([1.2]), torch.tensor([-30.0 / 255])])
    torch.testing.assert_close(synthesis._brightness(white, None), torch.full_like(white, 1 - 30 / 255))


@pytest.mark.parametrize("threshold", [32, 77, 128])
def test_solarize_matches_pil(monkeypatch, threshold):
    arr, x = uint8_batch(7)
    draws(monkeypatch, [torch.tensor([0.0, 0.0, 0.9]), torch.full((3,), threshold / 255)])  # third not applied
    ours = to_levels(synthesis._solarize(x, None)).round()
    ref = np.stack([np.asarray(ImageOps.solarize(Image.fromarray(a), threshold)) for a in arr[:2]])
    np.testing.assert_array_equal(ours[:2], ref)
    np.testing.assert_array_equal(ours[2], arr[2])
    apply, t = torch.tensor([True, True, False]), torch.full((3,), threshold / 255)
    draws(monkeypatch, [torch.tensor([0.0, 0.0, 0.9]), t])
    torch.testing.assert_close(synthesis._solarize(x, None), old_solarize(x, apply, t), atol=0, rtol=0)


def test_posterize_per_sample_bits_and_rounding(monkeypatch):
    # off-level inputs: kornia truncates x * 255, we round first (uint8 semantics), as before
    x = torch.rand(4, 3, 9, 11, generator=seeded(8))
    bits = torch.tensor([1, 3, 7, 8])
    draws(monkeypatch, [bits])
    torch.testing.assert_close(synthesis._posterize(x, None), old_posterize(x, bits), atol=1e-6, rtol=0)


def test_equalize_matches_old_off_levels():
    x = torch.rand(3, 3, 17, 19, generator=seeded(9))
    torch.testing.assert_close(synthesis._equalize(x, None), old_equalize(x), atol=1e-6, rtol=0)
    flat = torch.full((1, 3, 4, 4), 0.3)  # step 0: returned as its 8-bit level, unchanged
    torch.testing.assert_close(synthesis._equalize(flat, None), synthesis._levels(flat))


def test_invert_matches_pil():
    arr, x = uint8_batch(10)
    ref = np.stack([np.asarray(ImageOps.invert(Image.fromarray(a))) for a in arr])
    np.testing.assert_array_equal(to_levels(synthesis._invert(x, None)).round(), ref)


def test_rotate_matches_old(monkeypatch):
    x = torch.rand(3, 3, 16, 21, generator=seeded(11))
    angle = torch.tensor([-45.0, 10.0, 33.0])
    draws(monkeypatch, [angle])
    torch.testing.assert_close(synthesis._rotate(x, None), old_rotate(x, angle).clamp(0, 1), atol=1e-4, rtol=0)


def test_cpu_closed_forms_match_kornia():
    from kornia.enhance import sharpness

    x = torch.rand(4, 3, 12, 15, generator=seeded(12))
    factor = torch.tensor([0.0, 0.5, 1.0, 2.0])
    torch.testing.assert_close(synthesis._sharpness_cpu(x, factor), sharpness(x, factor), atol=2e-6, rtol=0)
    dh = torch.tensor([-50.0, -3.0, 20.0, 50.0]) / 255
    ds = torch.tensor([30.0, -50.0, 0.0, 50.0]) / 255
    torch.testing.assert_close(synthesis._hue_saturation_cpu(x, dh, ds), synthesis._hue_saturation_kornia(x, dh, ds),
                               atol=1e-5, rtol=0)


def test_ops_take_per_sample_parameters_in_one_call(monkeypatch):
    # one batched call with per-sample parameters equals one call per sample
    x = torch.rand(4, 3, 10, 10, generator=seeded(13))
    for name, op in synthesis._OPS.items():
        torch.manual_seed(0)
        monkeypatch.undo()
        g = seeded(5)
        together = op(x, g)
        g = seeded(5)
        params = []  # record the batched draws, then replay them one sample at a time
        real_u, real_r = synthesis.uniform, synthesis.randint
        monkeypatch.setattr(synthesis, "uniform", lambda *a, **k: params.append(real_u(*a, **k)) or params[-1])
        monkeypatch.setattr(synthesis, "randint", lambda *a, **k: params.append(real_r(*a, **k)) or params[-1])
        op(x, g)
        for i in range(4):
            queue = [p[i : i + 1] for p in params]
            fake = lambda shape, lo, hi, generator, device, q=queue: q.pop(0).reshape(shape)  # noqa: E731
            monkeypatch.setattr(synthesis, "uniform", fake)
            monkeypatch.setattr(synthesis, "randint", fake)
            torch.testing.assert_close(op(x[i : i + 1], None), together[i : i + 1], atol=1e-5, rtol=0, msg=name)


def test_augment_sources_applies_distinct_ops(monkeypatch):
    # replace the ten ops by "add 2**k" so the result tells which ops ran, each exactly once
    fake = {name: (lambda k: lambda x, g: x + 2.0**k)(k) for k, name in enumerate(AUGMENTATIONS)}
    monkeypatch.setattr(synthesis, "_OPS", fake)
    x = torch.zeros(64, 3, 4, 4)
    for count in (0, 1, 3, 10):
        out = augment_sources(x, num_augmentations=count, generator=seeded(count))
        codes = out[:, 0, 0, 0].long().tolist()
        assert all(bin(c).count("1") == count for c in codes)
        assert (out == out[:, :1, :1, :1]).all()  # the whole image got the same ops
    assert len(set(codes)) == 1 and codes[0] == 2**10 - 1
    out = augment_sources(x, num_augmentations=3, generator=seeded(1))
    assert len(set(out[:, 0, 0, 0].tolist())) > 10  # choices vary per sample


def test_augment_sources_range_and_errors():
    x, _ = disc_images(12, 24)
    out = augment_sources(x, num_augmentations=3, generator=seeded())
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    assert torch.equal(augment_sources(x, num_augmentations=0), x)
    with pytest.raises(ValueError, match="num_augmentations"):
        augment_sources(x, num_augmentations=11)


def test_blend_by_hand():
    image = torch.full((1, 3, 2, 2), 0.2)
    source = torch.full((1, 3, 2, 2), 1.0)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    out = blend_anomaly(image, source, mask, torch.tensor([0.25]))
    inside = 0.75 * 1.0 + 0.25 * 0.2
    torch.testing.assert_close(out[0, 0], torch.tensor([[inside, 0.2], [0.2, inside]]))


# --------------------------------------------------------------------------- the synthesizer


def check_invariants(x: torch.Tensor, out: SynthesisOutput, fg: torch.Tensor | None = None) -> None:
    assert out.image.shape == x.shape and out.mask.shape == (x.shape[0], 1, *x.shape[2:])
    assert out.label.shape == (x.shape[0],)
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}
    outside = (out.mask == 0).expand_as(x)
    assert torch.equal(out.image[outside], x[outside])  # exactly unchanged outside the mask
    assert torch.equal(out.label, (out.mask.flatten(1).sum(1) > 0).to(out.label.dtype))
    normal = out.label == 0
    assert torch.equal(out.image[normal], x[normal])
    if fg is not None:
        assert (out.mask <= (fg > 0.5).float()).all()
    assert out.image.min() >= 0 and out.image.max() <= 1


@pytest.mark.parametrize("kind", ["object", "texture"])
def test_synthesizer_invariants(kind):
    x, fg = disc_images(16, 32)
    synth = AnomalySynthesizer(kind=kind, bank_size=10)
    out = synth(x, fg, generator=seeded())
    check_invariants(x, out, fg)
    assert 0 < out.label.sum() < 16
    anomalous = out.label == 1
    assert (out.image[anomalous] != x[anomalous]).flatten(1).any(1).all()


def test_synthesizer_anomaly_rate():
    x = torch.rand(400, 3, 32, 32, generator=seeded())
    out = AnomalySynthesizer(bank_size=10)(x, generator=seeded(7))
    # Binomial(400, 0.5): mean 200, sd 10; every attempted sample gets a non-empty mask
    assert 160 <= int(out.label.sum()) <= 240
    check_invariants(x, out)
    always = AnomalySynthesizer(p_anomaly=1.0, bank_size=10)(x[:20], generator=seeded())
    never = AnomalySynthesizer(p_anomaly=0.0, bank_size=10)(x[:20], generator=seeded())
    assert always.label.sum() == 20 and never.label.sum() == 0 and torch.equal(never.image, x[:20])


def test_synthesizer_is_deterministic():
    x, fg = disc_images(8, 32)
    synth = AnomalySynthesizer(bank_size=10)
    a = synth(x, fg, generator=seeded(3))
    b = AnomalySynthesizer(bank_size=10)(x, fg, generator=seeded(3))  # fresh instance, same bank seed
    c = synth(x, fg, generator=seeded(4))
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(a.mask, c.mask)


def test_self_augmentation_vs_texture_source():
    # constant images: a self-augmented source (no colour ops) is the same constant -> no visible change;
    # a texture source changes the pixels inside the mask
    x = torch.full((6, 3, 32, 32), 0.3)
    own = AnomalySynthesizer(kind="object", texture_prob_object=0.0, num_augmentations=0, p_anomaly=1.0)(x, generator=seeded())
    assert own.label.sum() == 6
    torch.testing.assert_close(own.image, x)
    tex = AnomalySynthesizer(kind="texture", num_augmentations=0, p_anomaly=1.0, bank_size=10)(x, generator=seeded())
    assert tex.label.sum() == 6
    assert ((tex.image - x).abs().amax(1, keepdim=True) > 1e-3)[tex.mask > 0].float().mean() > 0.5
    # object images, self-augmentation only: the source is the image's own pixels, shuffled
    y, _ = disc_images(4, 32)
    out = AnomalySynthesizer(texture_prob_object=0.0, num_augmentations=0, p_anomaly=1.0, beta_range=(0.0, 0.0))(y, generator=seeded())
    inside = out.mask.expand_as(y) > 0
    own_values = set(np.round(y.numpy().ravel(), 5).tolist())
    assert set(np.round(out.image[inside].numpy(), 5).tolist()) <= own_values


def test_anomaly_source_folder(tmp_path):
    write_pngs(tmp_path / "textures" / "red", [(255, 0, 0)] * 3)
    synth = AnomalySynthesizer(kind="texture", anomaly_source=tmp_path / "textures", num_augmentations=0,
                               p_anomaly=1.0, beta_range=(0.5, 0.5))
    x = torch.zeros(4, 3, 16, 16)
    out = synth(x, generator=seeded())
    assert synth.texture_bank(16, 16, "cpu").shape == (3, 3, 16, 16)
    inside = out.image.permute(0, 2, 3, 1)[out.mask[:, 0] > 0]
    torch.testing.assert_close(inside, torch.tensor([0.5, 0.0, 0.0]).expand_as(inside))


# --------------------------------------------------------------------------- shades (ours)


def test_shade_prob_zero_keeps_the_released_draws_and_one_shades_every_anomaly():
    x, fg = disc_images(12, 48)
    released = AnomalySynthesizer(bank_size=10)(x, fg, generator=seeded(4))
    zero = AnomalySynthesizer(bank_size=10, shade_prob=0.0)(x, fg, generator=seeded(4))
    assert all(torch.equal(a, b) for a, b in zip(released, zero))
    shaded = AnomalySynthesizer(bank_size=10, shade_prob=1.0)(x, fg, generator=seeded(4))
    check_invariants(x, shaded, fg)
    assert torch.equal(shaded.label, released.label)  # the same samples become anomalous
    anomalous = shaded.label == 1
    assert (shaded.image[anomalous] != x[anomalous]).flatten(1).any(1).all()
    assert not torch.equal(shaded.mask, released.mask)  # its own coarse region


def test_shade_fades_in_from_the_region_edge_and_stays_inside_it():
    x = torch.full((1, 3, 64, 64), 0.5)
    region = torch.zeros(1, 1, 64, 64)
    region[..., 16:48, 16:48] = 1
    out, mask, label = shade_region(x, region, seeded(1))
    assert label.tolist() == [1.0]
    change = (out - x).abs().amax(1)[0]
    assert (mask <= region).all() and change[region[0, 0] == 0].max() == 0
    assert change[32, 32] > 0.03  # the inside moves by the drawn gain and shift
    assert change[16, 32] < 0.2 * change[32, 32]  # the edge row barely moves: no hard step
    row = change[32, 16:33]
    assert (row[1:] >= row[:-1] - 1e-6).all()  # rising monotonically from the edge to the middle
    assert out.min() >= 0 and out.max() <= 1


def test_shade_of_a_thin_region_keeps_it_with_a_hard_edge():
    x = torch.full((2, 3, 32, 32), 0.5)
    region = torch.zeros(2, 1, 32, 32)
    region[..., 10, 5:25] = 1  # one pixel wide: no pixel is a sigma deep
    out, mask, _ = shade_region(x, region, seeded(2))
    assert torch.equal(mask, region)
    assert ((out - x).abs().amax(1, keepdim=True) > 0).float().equal(region)


def test_shade_prob_is_validated_in_both_configs():
    with pytest.raises(ValueError, match="shade_prob"):
        SynthesisConfig(shade_prob=1.5)
    from diffad_core import TrainConfig

    with pytest.raises(ValueError, match="shade_prob"):
        TrainConfig(shade_prob=-0.1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_dtype_is_preserved(dtype):
    x = torch.rand(4, 3, 16, 16, generator=seeded(), dtype=torch.float64).to(dtype)  # not float32 values
    out = AnomalySynthesizer(p_anomaly=1.0, bank_size=5)(x, generator=seeded())
    assert out.image.dtype == out.mask.dtype == out.label.dtype == dtype
    check_invariants(x, out)


def test_input_validation():
    synth = AnomalySynthesizer(bank_size=5)
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 8\)"):
        synth(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(3, 8, 8\)"):
        synth(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        synth(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="max 255"):
        synth(torch.full((2, 3, 8, 8), 255.0))
    with pytest.raises(ValueError, match="min -1"):
        synth(torch.full((2, 3, 8, 8), -1.0))
    with pytest.raises(ValueError, match=r"foreground.*\(2, 8, 8\)"):
        synth(torch.rand(2, 3, 8, 8), torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match="ndarray"):
        synth(np.zeros((2, 3, 8, 8)))


def test_config_validation():
    with pytest.raises(ValueError, match="valid options"):
        AnomalySynthesizer(p_anomoly=0.3)
    with pytest.raises(ValueError, match="kind"):
        AnomalySynthesizer(kind="textures")
    with pytest.raises(ValueError, match="p_anomaly"):
        SynthesisConfig(p_anomaly=1.5)
    with pytest.raises(ValueError, match="perlin_scale_range"):
        SynthesisConfig(perlin_scale_range=(3, 3))
    cfg = SynthesisConfig(kind="texture")
    synth = AnomalySynthesizer(cfg, p_anomaly=0.25)
    assert synth.config.kind == "texture" and synth.config.p_anomaly == 0.25
    assert "p_anomaly=0.25" in repr(synth)


@pytest.mark.skipif(not CUDA, reason="CUDA not available")
def test_cuda_with_cpu_generator():
    x, fg = disc_images(8, 32)
    synth = AnomalySynthesizer(bank_size=10)
    cpu = synth(x, fg, generator=seeded(2))
    gpu = synth(x.cuda(), fg.cuda(), generator=seeded(2))
    assert gpu.image.is_cuda and gpu.mask.is_cuda and gpu.label.is_cuda
    check_invariants(x, SynthesisOutput(*(t.cpu() for t in gpu)), fg)
    assert torch.equal(gpu.label.cpu(), cpu.label)  # same draws from the CPU generator
    cuda_gen = torch.Generator(device="cuda").manual_seed(2)
    again = synth(x.cuda(), fg.cuda(), generator=cuda_gen)
    check_invariants(x, SynthesisOutput(*(t.cpu() for t in again)), fg)
