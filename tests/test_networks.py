"""Tests of diffad_core.networks: sizes, shapes, init, precision/memory options, presets, configs.

References used: parameter counts from closed-form layer formulas written here from the
architecture description (independent of the modules), the released sizes (131.7 M / 28.4 M),
an explicit einsum-softmax attention, and hand-computed timestep embeddings.
"""

from __future__ import annotations

import dataclasses
import doctest
import json
import math

import pytest
import torch
from torch import nn

from diffad_core.networks import blocks, recon, seg
from diffad_core.networks import (
    RECON_PRESETS,
    SEG_PRESETS,
    ReconUNet,
    ReconUNetConfig,
    SegUNet,
    SegUNetConfig,
    config_from_dict,
    config_to_dict,
    count_parameters,
    timestep_embedding,
)

# ---------------------------------------------------------------------------- helpers


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _norm(c: int) -> int:  # GroupNorm / BatchNorm affine parameters
    return 2 * c


def reference_recon_params(cfg: ReconUNetConfig) -> int:
    """Parameter count of the guided-diffusion UNet, from layer formulas only."""
    emb = 4 * cfg.base_channels
    attn_levels = {int(math.log2(cfg.image_size // r)) for r in cfg.attention_resolutions}

    def res(c_in: int, c_out: int) -> int:
        return (_norm(c_in) + _conv(c_in, c_out, 3)
                + _linear(emb, c_out * (2 if cfg.use_scale_shift_norm else 1))
                + _norm(c_out) + _conv(c_out, c_out, 3)
                + (0 if c_in == c_out else _conv(c_in, c_out, 1)))

    def attn(c: int) -> int:
        return _norm(c) + _conv(c, 3 * c, 1) + _conv(c, c, 1)

    def resample(c: int) -> int:
        return res(c, c) if cfg.resblock_updown else _conv(c, c, 3)

    widths = [cfg.base_channels * m for m in cfg.channel_mult]
    total = _linear(cfg.base_channels, emb) + _linear(emb, emb)
    total += _conv(cfg.in_channels, widths[0], 3)
    skips, ch = [widths[0]], widths[0]
    for level, w in enumerate(widths):
        for _ in range(cfg.num_res_blocks):
            total += res(ch, w) + (attn(w) if level in attn_levels else 0)
            ch = w
            skips.append(ch)
        if level < len(widths) - 1:
            total += resample(ch)
            skips.append(ch)
    total += 2 * res(ch, ch) + attn(ch)
    for level in reversed(range(len(widths))):
        w = widths[level]
        for i in range(cfg.num_res_blocks + 1):
            total += res(ch + skips.pop(), w) + (attn(w) if level in attn_levels else 0)
            ch = w
            if level > 0 and i == cfg.num_res_blocks:
                total += resample(ch)
    assert not skips
    return total + _norm(ch) + _conv(ch, cfg.in_channels, 3)


def reference_seg_params(cfg: SegUNetConfig) -> int:
    """Parameter count of the DRAEM discriminative UNet, from layer formulas only."""
    def cbr(c_in: int, c_out: int) -> int:
        return _conv(c_in, c_out, 3) + _norm(c_out)

    widths = [cfg.base_channels * m for m in cfg.channel_mult]
    total, c_in = 0, cfg.in_channels
    for w in widths:
        total += cbr(c_in, w) + cbr(w, w)
        c_in = w
    ch = widths[-1]
    for k in reversed(range(len(widths) - 1)):
        out = widths[max(k - 1, 0)]
        total += cbr(ch, out) + cbr(out + widths[k], out) + cbr(out, out)
        ch = out
    return total + _conv(ch, cfg.out_channels, 3)


def _perturb_zero_init(model: nn.Module, seed: int = 0) -> None:
    """Give every parameter a small random value (the zero-init branches become active)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def _tiny_recon(size: int = 32, **overrides) -> ReconUNet:
    torch.manual_seed(0)
    model = ReconUNet.from_preset("tiny", image_size=size, **overrides)
    _perturb_zero_init(model)
    return model


def _inputs(batch: int = 2, size: int = 32, channels: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    return x, t


# ---------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("net, target", [(ReconUNet, 131.7e6), (SegUNet, 28.4e6)])
def test_paper_presets_match_released_parameter_counts(net, target):
    with torch.device("meta"):  # count only: no memory, no init time
        model = net.from_preset("paper", image_size=256)
    n = count_parameters(model)
    assert abs(n - target) / target < 0.01, f"{net.__name__}: {n:,} vs released {target:,.0f}"


def test_paper_recon_exact_count_and_released_attention_layout():
    cfg = ReconUNetConfig.from_preset("paper", image_size=256)
    assert cfg == ReconUNetConfig()  # the defaults are the paper network
    assert cfg.attention_resolutions == (32, 16, 8)
    assert cfg.attention_downsample_factors == (8, 16, 32)
    with torch.device("meta"):
        assert count_parameters(ReconUNet(cfg)) == 131_654_403
        assert count_parameters(SegUNet(SegUNetConfig())) == 28_373_569


@pytest.mark.parametrize("name", list(RECON_PRESETS))
@pytest.mark.parametrize("size", [64, 256])
def test_recon_parameter_count_matches_layer_formulas(name, size):
    cfg = ReconUNetConfig.from_preset(name, image_size=size)
    with torch.device("meta"):
        assert count_parameters(ReconUNet(cfg)) == reference_recon_params(cfg)


@pytest.mark.parametrize("overrides", [
    dict(use_scale_shift_norm=True),
    dict(resblock_updown=False),
    dict(num_head_channels=32, channel_mult=(1, 2, 3)),
    dict(in_channels=1, num_res_blocks=2),
])
def test_recon_variants_match_layer_formulas_and_run(overrides):
    model = _tiny_recon(**overrides)
    assert count_parameters(model) == reference_recon_params(model.config)
    x, t = _inputs(channels=model.config.in_channels)
    assert model(x, t).shape == x.shape


@pytest.mark.parametrize("name", list(SEG_PRESETS))
def test_seg_parameter_count_matches_layer_formulas(name):
    cfg = SegUNetConfig.from_preset(name)
    with torch.device("meta"):
        assert count_parameters(SegUNet(cfg)) == reference_seg_params(cfg)


def test_hand_count_of_smallest_segunet():
    # in 2, out 1, widths (32, 32): encoder 2x(conv+BN) per block, decoder up + fuse, head
    cfg = SegUNetConfig(image_size=32, in_channels=2, base_channels=32, channel_mult=(1, 1))
    enc = (2 * 32 * 9 + 32 + 64) + (32 * 32 * 9 + 32 + 64) * 3
    dec = (32 * 32 * 9 + 32 + 64) + (64 * 32 * 9 + 32 + 64) + (32 * 32 * 9 + 32 + 64)
    head = 32 * 1 * 9 + 1
    assert count_parameters(SegUNet(cfg)) == enc + dec + head == 66_049


# ---------------------------------------------------------------------------- building blocks


def test_timestep_embedding_by_hand():
    emb = timestep_embedding(torch.tensor([0, 1, 2]), 4)
    # w = (10000 ** 0, 10000 ** -0.5) = (1, 0.01); sines first, then cosines
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0],
                             [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)],
                             [math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)]])
    torch.testing.assert_close(emb, expected)
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(torch.tensor([1]), 3)


def test_attention_matches_explicit_softmax_reference():
    torch.manual_seed(0)
    block = blocks._AttentionBlock(64, num_heads=2)
    _perturb_zero_init(block)
    x = torch.randn(2, 64, 4, 6)
    b, c, h, w = x.shape
    # slow reference: guided-diffusion's legacy QKV layout, per-head [q | k | v], einsum softmax
    qkv = block.qkv(block.norm(x)).reshape(b * 2, 3 * 32, h * w)
    q, k, v = qkv.split(32, dim=1)
    weights = torch.softmax(torch.einsum("nct,ncs->nts", q, k) / math.sqrt(32), dim=-1)
    a = torch.einsum("nts,ncs->nct", weights, v).reshape(b, c, h, w)
    expected = x + block.proj_out(a)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- ReconUNet


def test_recon_output_is_exactly_zero_at_init():
    torch.manual_seed(0)
    model = ReconUNet.from_preset("tiny", image_size=32)
    x, t = _inputs()
    out = model(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, torch.zeros_like(x))


def test_recon_gradients_reach_every_parameter():
    model = _tiny_recon()
    x, t = _inputs(batch=3)
    model(x, t).square().mean().backward()
    missing = [name for name, p in model.named_parameters()
               if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert not missing, f"no gradient for {missing}"


def test_recon_shapes_for_non_square_and_other_sizes():
    model = _tiny_recon(size=32).eval()  # attention sits at a level, any multiple of 4 runs
    x = torch.randn(2, 3, 48, 32)
    out = model(x, torch.tensor([3, 7]))
    assert out.shape == (2, 3, 48, 32) and torch.isfinite(out).all()


def test_recon_t_is_per_sample():
    model = _tiny_recon().eval()
    x1, _ = _inputs(batch=1)
    x = x1.expand(2, -1, -1, -1)
    with torch.no_grad():
        same = model(x, torch.tensor([5, 5]))
        diff = model(x, torch.tensor([5, 900]))
        alone = model(x1, torch.tensor([900]))
    torch.testing.assert_close(same[0], same[1])
    assert (diff[0] - diff[1]).abs().max() > 1e-3
    torch.testing.assert_close(diff[0], same[0])  # sample 0 unaffected by sample 1's t
    torch.testing.assert_close(diff[1:], alone, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # int32 steps are accepted and mean the same
        torch.testing.assert_close(model(x, torch.tensor([5, 900], dtype=torch.int32)), diff)


def test_recon_channels_last_matches_contiguous():
    model = _tiny_recon().eval()
    x, t = _inputs()
    with torch.no_grad():
        expected = model(x, t)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last), t)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_recon_bf16_autocast_on_cpu():
    model = _tiny_recon()
    x, t = _inputs()
    with torch.no_grad():
        expected = model.eval()(x, t)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t)
    assert out.dtype == torch.float32  # returned in the dtype of x_t
    rel = (out.detach() - expected).norm() / expected.norm()
    assert rel < 0.05, f"bf16 relative error {rel:.3f}"
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_recon_checkpointing_gives_identical_outputs_and_gradients(monkeypatch):
    plain = _tiny_recon(dropout=0.1).train()
    ckpt = ReconUNet(dataclasses.replace(plain.config, use_checkpoint=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    x, t = _inputs()

    calls = {"n": 0}
    original = blocks._ResBlock._forward

    def counting(self, *args):
        calls["n"] += 1
        return original(self, *args)

    monkeypatch.setattr(blocks._ResBlock, "_forward", counting)
    results = []
    for model in (plain, ckpt):
        calls["n"] = 0
        torch.manual_seed(123)  # same dropout masks in both runs
        out = model(x, t)
        out.square().mean().backward()
        results.append((out.detach(), {n: p.grad for n, p in model.named_parameters()},
                        calls["n"]))
    (out_a, grads_a, calls_a), (out_b, grads_b, calls_b) = results
    assert calls_b > calls_a  # the checkpointed blocks were recomputed in backward
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=0)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-6, atol=1e-7, msg=name)


def test_recon_rejects_bad_inputs():
    model = _tiny_recon()
    x, t = _inputs()
    with pytest.raises(ValueError, match=r"in_channels=3.*1 channels"):
        model(x[:, :1], t)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(x[0], t)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.randn(2, 3, 30, 32), t)
    with pytest.raises(ValueError, match=r"torch\.long"):
        model(x, t.float())
    with pytest.raises(ValueError, match=r"\(B,\) = \(2,\)"):
        model(x, t[:1])
    with pytest.raises(ValueError, match=r"\(B,\)"):
        model(x, torch.tensor(5))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        model(x, t[:, None])


# ---------------------------------------------------------------------------- SegUNet


def test_seg_output_in_unit_interval_and_matches_logits():
    torch.manual_seed(0)
    model = SegUNet.from_preset("tiny", image_size=32).eval()
    x = 50 * torch.randn(3, 6, 32, 64)  # extreme inputs saturate but stay in [0, 1]
    with torch.no_grad():
        m = model(x)
        logits = model.forward_logits(x)
    assert m.shape == (3, 1, 32, 64) and m.dtype == torch.float32
    assert m.min() >= 0 and m.max() <= 1
    torch.testing.assert_close(m, torch.sigmoid(logits))


def test_seg_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = SegUNet.from_preset("tiny", image_size=32).train()
    model.forward_logits(torch.randn(2, 6, 32, 32)).square().mean().backward()
    missing = [name for name, p in model.named_parameters()
               if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert not missing, f"no gradient for {missing}"


def test_seg_channels_last_and_bf16_autocast():
    torch.manual_seed(0)
    model = SegUNet.from_preset("tiny", image_size=32).eval()
    x = torch.rand(2, 6, 32, 32)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
        model = model.to(memory_format=torch.channels_last)
        cl = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, expected, rtol=1e-4, atol=1e-5)
    assert low.min() >= 0 and low.max() <= 1
    assert (low.float() - expected).abs().max() < 0.05


def test_seg_rejects_bad_inputs():
    model = SegUNet.from_preset("tiny", image_size=32)
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 6, 48, 32))


# ---------------------------------------------------------------------------- presets and configs


def test_presets_have_the_documented_names():
    assert list(RECON_PRESETS) == list(SEG_PRESETS) == ["paper", "small", "tiny"]


@pytest.mark.parametrize("size", [32, 64, 128, 256, 512])
def test_presets_keep_attention_levels_at_any_size(size):
    assert ReconUNetConfig.from_preset("paper", size).attention_downsample_factors == (8, 16, 32)
    assert ReconUNetConfig.from_preset("small", size).attention_downsample_factors == (4, 8)
    assert ReconUNetConfig.from_preset("tiny", size).attention_downsample_factors == (4,)


def test_preset_overrides_and_errors():
    model = ReconUNet.from_preset("tiny", image_size=32, use_checkpoint=True, dropout=0.2)
    assert model.config.use_checkpoint and model.config.dropout == 0.2
    assert SegUNet.from_preset("small", 64, base_channels=8).config.base_channels == 8
    with pytest.raises(ValueError, match="paper, small, tiny"):
        ReconUNet.from_preset("huge")
    with pytest.raises(ValueError, match="paper, small, tiny"):
        SegUNet.from_preset("Paper")
    with pytest.raises(ValueError, match=r"base_chanels.*valid keys.*base_channels"):
        ReconUNet.from_preset("tiny", base_chanels=64)
    with pytest.raises(ValueError, match=r"num_heads.*valid keys"):
        SegUNetConfig.from_preset("tiny", num_heads=4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=250), "divisible by 2 \\*\\* \\(len\\(channel_mult\\) - 1\\) = 32"),
    (dict(attention_resolutions=(24,)), r"valid sizes are \[256, 128, 64, 32, 16, 8\]"),
    (dict(base_channels=48), "multiple of 32"),
    (dict(num_heads=3), "heads"),
    (dict(num_head_channels=0), "num_head_channels"),
    (dict(dropout=1.0), "dropout"),
    (dict(channel_mult=()), "channel_mult"),
    (dict(num_res_blocks=0), "num_res_blocks"),
    (dict(resblock_updown=1), "resblock_updown"),
])
def test_recon_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReconUNetConfig(**kwargs)


def test_seg_config_validation():
    with pytest.raises(ValueError, match="= 32"):
        SegUNet.from_preset("tiny", image_size=48)
    with pytest.raises(ValueError, match="base_channels"):
        SegUNetConfig(base_channels=0)
    assert SegUNetConfig(image_size=48, channel_mult=(1, 2, 4, 8, 8)).size_factor == 16


@pytest.mark.parametrize("cls, presets", [(ReconUNetConfig, RECON_PRESETS),
                                          (SegUNetConfig, SEG_PRESETS)])
@pytest.mark.parametrize("name", ["paper", "small", "tiny"])
def test_config_json_round_trip(cls, presets, name):
    cfg = cls.from_preset(name, image_size=128)
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert isinstance(data["channel_mult"], list)
    back = config_from_dict(cls, data)
    assert back == cfg and isinstance(back.channel_mult, tuple)


def test_checkpoint_carries_its_config():
    model = _tiny_recon()
    saved = {"config": json.dumps(config_to_dict(model.config)), "state": model.state_dict()}
    rebuilt = ReconUNet(config_from_dict(ReconUNetConfig, json.loads(saved["config"])))
    rebuilt.load_state_dict(saved["state"])  # strict: same architecture
    x, t = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x, t), model.eval()(x, t))


def test_config_from_dict_rejects_unknown_keys_and_non_mappings():
    data = config_to_dict(SegUNetConfig())
    with pytest.raises(ValueError, match=r"Unknown SegUNetConfig key.*num_heads"):
        config_from_dict(SegUNetConfig, {**data, "num_heads": 4})
    with pytest.raises(ValueError, match=r"Unknown ReconUNetConfig key.*out_channels"):
        config_from_dict(ReconUNetConfig, data)  # a SegUNet config given to the UNet
    with pytest.raises(ValueError, match="mapping"):
        config_from_dict(SegUNetConfig, [("base_channels", 8)])
    assert config_from_dict(SegUNetConfig, {"base_channels": 8}).channel_mult == (1, 2, 4, 8, 8, 8)
    with pytest.raises(ValueError, match="config instance"):
        config_to_dict(SegUNetConfig)
    with pytest.raises(ValueError, match="ReconUNetConfig"):
        ReconUNet(SegUNetConfig())


def test_configs_are_frozen():
    cfg = ReconUNetConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.base_channels = 64  # type: ignore[misc]


def test_docstring_examples_run():
    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS) for module in (blocks, recon, seg)]
    assert sum(r.attempted for r in results) >= 2 and sum(r.failed for r in results) == 0
