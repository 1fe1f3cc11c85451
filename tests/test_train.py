"""Training: a few real steps, exact resume equivalence, NaN detection, distributed training with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffad_core.checkpoint import load_checkpoint, load_model
from diffad_core.train import TrainConfig, TrainingError, fit

ROOT = Path(__file__).resolve().parents[1]


def _config(**kw) -> TrainConfig:
    base = dict(image_size=32, batch_size=4, steps=4, checkpoint_every=2, log_every=1, device="cpu", seed=3)
    base.update(kw)
    return TrainConfig.from_preset("tiny", **base)


def _images(n=6, size=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fit_writes_run_folder_and_learns_something(tmp_path):
    result = fit(_config(steps=3), _images(), out_dir=tmp_path / "run", progress=False)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["checkpoint.pt", "log.jsonl", "model.safetensors", "train_config.json"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert {"loss", "noise", "focal", "smooth_l1", "lr_unet", "lr_seg"} <= set(log[0])
    assert result.steps == 3 and not result.model.training
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["step"] == 3 and ckpt["train_config"]["image_size"] == 32
    reloaded = load_model(tmp_path / "run" / "model.safetensors")
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), k


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, ema_decay):
    full = fit(_config(steps=4, ema_decay=ema_decay), _images(), out_dir=tmp_path / "full", progress=False)
    fit(_config(steps=2, ema_decay=ema_decay), _images(), out_dir=tmp_path / "part", progress=False)
    resumed = fit(_config(steps=4, ema_decay=ema_decay), _images(), out_dir=tmp_path / "part", resume=True,
                  progress=False)
    assert resumed.steps == 4
    for which in ("model", "average"):  # the live weights and (with ema_decay) their average
        if which == "average" and not ema_decay:
            assert "average" not in load_checkpoint(tmp_path / "part" / "checkpoint.pt")
            continue
        a, b = (load_checkpoint(tmp_path / run / "checkpoint.pt")[which] for run in ("full", "part"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{which} {k} differs after resume"
    a, b = _state(full.model), _state(resumed.model)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} of the returned model differs after resume"
    log = [json.loads(line)["step"] for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


def test_resume_refuses_a_different_run(tmp_path):
    fit(_config(steps=1), _images(), out_dir=tmp_path / "r", progress=False)
    with pytest.raises(TrainingError, match="seed saved 3 vs now 4"):
        fit(_config(steps=2, seed=4), _images(), out_dir=tmp_path / "r", resume=True, progress=False)


def test_weight_average_is_the_bias_corrected_exponential_average_of_every_step():
    from diffad_core.model import DiffusionAD
    from diffad_core.train import _WeightAverage

    model = DiffusionAD.from_preset("tiny", image_size=32)
    snapshots, d = [], 0.8
    average = _WeightAverage(model, d)
    for n in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append(_state(model))
        average.update(model, n)
    weights = [d ** 2, d, 1.0]
    for k, v in average.model.state_dict().items():
        if v.is_floating_point():
            expected = sum(w * s[k] for w, s in zip(weights, snapshots)) / sum(weights)
            torch.testing.assert_close(v, expected, rtol=1e-5, atol=1e-5)
    assert not any(p.requires_grad for p in average.model.parameters())


def test_ema_run_saves_and_returns_the_average_and_resumes_from_the_live_weights(tmp_path):
    result = fit(_config(steps=3, ema_decay=0.5), _images(), out_dir=tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    returned = _state(result.model)
    differs = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.equal(v, returned[k])]
    assert differs, "the returned model should be the average, not the last step's weights"
    for source in (tmp_path / "run" / "model.safetensors", tmp_path / "run" / "checkpoint.pt"):
        loaded = load_model(source).state_dict()
        for k, v in returned.items():
            assert torch.equal(v, loaded[k]), f"{source.name}: {k}"
    assert load_model(tmp_path / "run" / "model.safetensors").calibration == result.calibration
    with pytest.raises(TrainingError, match="ema_decay saved 0.5 vs now 0.0"):
        fit(_config(steps=4, ema_decay=0.0), _images(), out_dir=tmp_path / "run", resume=True, progress=False)


def test_seeds_make_training_deterministic():
    a = fit(_config(steps=2), _images(), progress=False)
    b = fit(_config(steps=2), _images(), progress=False)
    c = fit(_config(steps=2, seed=9), _images(), progress=False)
    sa, sb, sc = _state(a.model), _state(b.model), _state(c.model)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_exposure_jitter_scales_each_image_by_one_gain_within_its_range():
    from diffad_core.train import jitter_exposure

    images = torch.full((400, 3, 4, 4), 0.25)
    images[:, :, 0, 0] = 0.9  # clipped when the gain exceeds 1 / 0.9
    out = jitter_exposure(images, 1.0, torch.Generator().manual_seed(0))
    gain = out[:, :, 1:, 1:].flatten(1) / 0.25
    assert torch.allclose(gain, gain[:, :1].expand_as(gain))  # one gain per image
    g = gain[:, 0]
    assert g.min() >= 0.5 - 1e-6 and g.max() <= 2.0 + 1e-6
    assert (g < 0.6).any() and (g > 1.7).any()  # the whole range is used
    assert abs(g.log().mean().item()) < 0.1  # log-uniform: as many darker as brighter images
    assert out.max() <= 1.0 and torch.equal(out[g > 1 / 0.9][:, :, 0, 0], torch.ones_like(out[g > 1 / 0.9][:, :, 0, 0]))
    again = jitter_exposure(images, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_exposure_jitter_changes_training_and_off_keeps_the_released_draws():
    plain = _state(fit(_config(steps=2), _images(), progress=False).model)
    off = _state(fit(_config(steps=2, exposure_jitter=0.0), _images(), progress=False).model)
    on = _state(fit(_config(steps=2, exposure_jitter=0.5), _images(), progress=False).model)
    assert all(torch.equal(plain[k], off[k]) for k in plain)
    assert not all(torch.equal(plain[k], on[k]) for k in plain)
    with pytest.raises(ValueError, match="exposure_jitter"):
        TrainConfig(exposure_jitter=-0.1)


def test_shade_prob_changes_training_and_reaches_the_batchnorm_recompute(monkeypatch):
    plain = _state(fit(_config(steps=2, p_anomaly=1.0), _images(), progress=False).model)
    shaded = _state(fit(_config(steps=2, p_anomaly=1.0, shade_prob=1.0), _images(), progress=False).model)
    assert not all(torch.equal(plain[k], shaded[k]) for k in plain)
    seen = []
    import diffad_core.synthesis as synthesis  # train.py imports the class from here when it runs

    class Spy(synthesis.AnomalySynthesizer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.config.shade_prob)

    monkeypatch.setattr(synthesis, "AnomalySynthesizer", Spy)
    fit(_config(steps=1, shade_prob=0.4, bn_batches=1), _images(), progress=False)
    assert seen == [0.4, 0.4]  # training's synthesizer and the BatchNorm recompute's


def test_t_b_max_bounds_the_big_step_draws_and_none_keeps_the_released_ones(monkeypatch):
    import diffad_core.train as train_module

    drawn = []
    real = train_module.sample_timesteps

    def recording(n, low, high, generator=None):
        t = real(n, low, high, generator=generator)
        drawn.append((low, high, t.clone()))
        return t

    monkeypatch.setattr(train_module, "sample_timesteps", recording)
    released = _state(fit(_config(steps=2), _images(), progress=False).model)
    full = _state(fit(_config(steps=2, t_b_max=1000), _images(), progress=False).model)
    drawn.clear()
    narrow = _state(fit(_config(steps=2, t_b_max=320, bn_batches=1), _images(), progress=False).model)
    assert all(torch.equal(released[k], full[k]) for k in released)  # t_b_max = T is the released draw
    assert not all(torch.equal(released[k], narrow[k]) for k in released)
    big = [t for low, high, t in drawn if low == 300]
    assert len(big) == 3  # two training steps and the one BatchNorm batch
    assert all(high == 320 and int(t.min()) >= 300 and int(t.max()) < 320 for (low, high, t) in drawn if low == 300)
    for bad in (300, 1001):
        with pytest.raises(ValueError, match="t_b_max"):
            TrainConfig(t_b_max=bad)


def test_zero_unet_rate_freezes_the_reconstruction_unet_and_still_trains_the_segnet():
    start = fit(_config(steps=0), _images(), progress=False).model
    frozen = fit(_config(steps=2, lr_unet=0.0), _images(), progress=False).model
    joint = fit(_config(steps=2), _images(), progress=False).model
    for name, value in start.unet.state_dict().items():
        assert torch.equal(value, frozen.unet.state_dict()[name]), name
    assert not all(torch.equal(v, joint.unet.state_dict()[k]) for k, v in start.unet.state_dict().items())
    assert not all(torch.equal(v, frozen.segnet.state_dict()[k]) for k, v in start.segnet.state_dict().items())
    with pytest.raises(ValueError, match="lr_unet"):
        TrainConfig(lr_unet=-1e-4)
    passed_in = fit(_config(steps=0), _images(), progress=False).model  # a weight average: no gradients
    assert not any(p.requires_grad for p in passed_in.parameters())
    fit(_config(steps=1, lr_unet=0.0), _images(), model=passed_in, progress=False)
    assert all(p.requires_grad for p in passed_in.parameters())  # trained in place, not left frozen


def test_flip_turns_each_sample_as_drawn():
    from diffad_core.train import _flip

    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    flips = torch.tensor([[True, False], [True, True]])
    out = _flip(images, flips)
    assert torch.equal(out[0], images[0].flip(-1))
    assert torch.equal(out[1], images[1].flip(-1).flip(-2))
    assert torch.equal(_flip(images, torch.zeros(2, 2, dtype=torch.bool)), images)


def test_seg_repeats_add_segnet_updates_on_each_batch_and_resume_exactly(tmp_path):
    start = fit(_config(steps=0), _images(), progress=False).model
    once = fit(_config(steps=3, lr_unet=0.0), _images(), progress=False).model
    full = fit(_config(steps=3, lr_unet=0.0, seg_repeats=3), _images(), out_dir=tmp_path / "full", progress=False)
    ckpt = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    seg_steps = {int(s["step"]) for s in ckpt["optimizers"]["seg"]["state"].values()}
    assert seg_steps == {9}  # three SegNet updates per batch
    for name, value in start.unet.state_dict().items():
        assert torch.equal(value, full.model.unet.state_dict()[name]), name
    assert not all(torch.equal(v, full.model.segnet.state_dict()[k]) for k, v in once.segnet.state_dict().items())
    fit(_config(steps=2, lr_unet=0.0, seg_repeats=3), _images(), out_dir=tmp_path / "part", progress=False)
    resumed = fit(_config(steps=3, lr_unet=0.0, seg_repeats=3), _images(), out_dir=tmp_path / "part", resume=True,
                  progress=False)
    a, b = _state(full.model), _state(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    joint = fit(_config(steps=2, seg_repeats=2), _images(), progress=False).model  # the UNet still trains once a batch
    assert not all(torch.equal(v, joint.unet.state_dict()[k]) for k, v in start.unet.state_dict().items())
    for bad in (0, 65, 1.5):
        with pytest.raises(ValueError, match="seg_repeats"):
            TrainConfig(seg_repeats=bad)


def test_nan_loss_is_reported_with_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    import diffad_core.train as train_module

    fit(_config(steps=2), _images(), out_dir=tmp_path / "r", progress=False)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    real = train_module.diffusionad_loss

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        return out._replace(total=out.total * float("nan"))

    monkeypatch.setattr(train_module, "diffusionad_loss", poisoned)
    with pytest.raises(TrainingError, match=r"at step 3"):
        fit(_config(steps=4), _images(), out_dir=tmp_path / "r", resume=True, progress=False)
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before


def test_budget_in_epochs_and_minutes():
    r = fit(_config(steps=None, epochs=1.0), _images(n=6), progress=False)  # ceil(6 / 4) steps
    assert r.steps == 2
    r = fit(_config(steps=None, minutes=0.001), _images(), progress=False)
    assert r.steps >= 1


def test_config_errors():
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_preset("tiny", learning_rate=1.0)
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainConfig.from_preset("huge")
    with pytest.raises(ValueError, match="p_anomaly"):
        TrainConfig(p_anomaly=2.0)
    with pytest.raises(ValueError, match="image_size"):
        fit(_config(image_size=64), _images(size=32), progress=False)


def test_released_seg_schedule_oscillates():
    config = _config(steps=12, seg_lr_schedule="released")
    r = fit(config, _images(), progress=False)
    lrs = [rec["lr_seg"] for rec in r.history]  # cosine with T_max = 10 steps: down to 0 at step 10, then up
    assert lrs[9] < 1e-9 < lrs[8] < lrs[0] < config.lr_seg and lrs[11] > lrs[10]


DDP_SCRIPT = r"""
import sys, torch
from diffad_core.train import TrainConfig, fit
import torch.distributed as dist
cfg = TrainConfig.from_preset("tiny", image_size=32, batch_size=4, steps=2, log_every=1, device="cpu", seed=1,
                              seg_repeats=2)  # the extra SegNet updates average their gradients by hand
imgs = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
out = sys.argv[1]
r = fit(cfg, imgs, out_dir=out, progress=False)
flat = torch.cat([p.detach().flatten() for p in r.model.parameters()])
torch.save(flat, f"{out}/params_rank{dist.get_rank()}.pt")
dist.destroy_process_group()
"""


def test_distributed_training_with_gloo_keeps_ranks_equal(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(script), str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0 = torch.load(tmp_path / "run" / "params_rank0.pt", weights_only=True)
    p1 = torch.load(tmp_path / "run" / "params_rank1.pt", weights_only=True)
    assert torch.equal(p0, p1)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_explicit_budget_replaces_the_presets():
    assert TrainConfig.from_preset("paper").epochs == 3000
    cfg = TrainConfig.from_preset("paper", minutes=5.0)
    assert cfg.epochs is None and cfg.minutes == 5.0


def test_gain_input_norm_trains_resumes_and_refuses_a_mismatch(tmp_path):
    result = fit(_config(steps=2, input_norm="gain", lr_unet=0.0), _images(), out_dir=tmp_path / "g", progress=False)
    assert result.model.config.input_norm == "gain"
    with pytest.raises(TrainingError, match="input_norm saved 'gain' vs now 'none'"):
        fit(_config(steps=3, lr_unet=0.0), _images(), out_dir=tmp_path / "g", resume=True, progress=False)
    with pytest.raises(ValueError, match="input_norm 'gain' vs 'none'"):
        fit(_config(steps=1), _images(), model=result.model, progress=False)


def test_channels_last_frozen_run_saves_a_model_that_loads_and_predicts_alike(tmp_path):
    # the demo's CPU settings: the UNet frozen, channels-last tensors (the file must still be plain)
    result = fit(_config(steps=2, lr_unet=0.0, channels_last=True), _images(), out_dir=tmp_path / "cl", progress=False)
    loaded = load_model(tmp_path / "cl" / "model.safetensors").eval()
    x = _images(2)
    a = result.model.eval().predict(x, generator=torch.Generator().manual_seed(0), top_k=8)
    b = loaded.predict(x, generator=torch.Generator().manual_seed(0), top_k=8)
    assert torch.allclose(a.anomaly_map, b.anomaly_map, atol=1e-5)


def _norm_buffers(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.segnet.state_dict().items() if "running" in k}


def test_recompute_batchnorm_replaces_only_the_segnet_statistics_deterministically():
    from diffad_core import DiffusionAD
    from diffad_core.train import recompute_batchnorm

    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    before = _norm_buffers(model)
    images = (_images(6) * 255).to(torch.uint8)
    n = recompute_batchnorm(model, images, kind="texture", batches=2, batch_size=4, p_anomaly=0.75, seed=1)
    assert n == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.segnet.modules()) > 0
    after = _norm_buffers(model)
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # weights unchanged
    assert not model.training and all(m.momentum == 0.1 for m in model.segnet.modules()
                                      if isinstance(m, torch.nn.BatchNorm2d))
    recompute_batchnorm(model, images, kind="texture", batches=2, batch_size=4, p_anomaly=0.75, seed=1)
    assert all(torch.equal(after[k], v) for k, v in _norm_buffers(model).items())  # same seed, same statistics
    recompute_batchnorm(model, images, kind="texture", batches=2, batch_size=4, p_anomaly=0.75, seed=2)
    assert any(not torch.equal(after[k], v) for k, v in _norm_buffers(model).items())
    with pytest.raises(ValueError, match="batch_size >= 2"):
        recompute_batchnorm(model, images, batch_size=1)
    model.segnet = torch.nn.Conv2d(6, 1, 1)
    assert recompute_batchnorm(model, images) == 0  # nothing to recompute


def test_recompute_batchnorm_at_fixed_timesteps_passes_that_pair_for_every_sample(monkeypatch):
    import diffad_core.train as train_module
    from diffad_core import DiffusionAD

    seen = []
    real = train_module.norm_guided_forward

    def recording(unet, schedule, x, t_s, t_b, w, **kw):
        seen.append((t_s.clone(), t_b.clone()))
        return real(unet, schedule, x, t_s, t_b, w, **kw)

    monkeypatch.setattr(train_module, "norm_guided_forward", recording)
    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    images = (_images(6) * 255).to(torch.uint8)
    train_module.recompute_batchnorm(model, images, batches=2, batch_size=4, seed=1)
    drawn = _norm_buffers(model)
    assert len(seen) == 2 and any(int(t_s.unique().numel()) > 1 for t_s, _ in seen)  # the training draws
    seen.clear()
    train_module.recompute_batchnorm(model, images, batches=2, batch_size=4, seed=1, timesteps=(200, 400))
    assert len(seen) == 2 and all(t_s.tolist() == [200] * 4 and t_b.tolist() == [400] * 4 for t_s, t_b in seen)
    assert any(not torch.equal(drawn[k], v) for k, v in _norm_buffers(model).items())


def test_bn_batches_run_returns_recomputed_statistics_and_resumes_exactly(tmp_path):
    full = fit(_config(steps=4, bn_batches=2), _images(), out_dir=tmp_path / "full", progress=False)
    plain = fit(_config(steps=4, bn_batches=0), _images(), out_dir=tmp_path / "plain", progress=False)
    ckpt = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    returned = _state(full.model)
    for k, v in ckpt["average"].items():  # the training state is untouched: same weights and statistics as bn 0
        assert torch.equal(v, _state(plain.model)[k]), k
        if "running" not in k and "num_batches" not in k:  # the statistics and their batch count differ
            assert torch.equal(v, returned[k]), k
    assert any(not torch.equal(ckpt["average"][k], returned[k]) for k in returned if "running" in k)
    for source in (tmp_path / "full" / "model.safetensors", tmp_path / "full" / "checkpoint.pt"):
        loaded = load_model(source).state_dict()
        assert all(torch.equal(v, loaded[k]) for k, v in returned.items()), source.name
    fit(_config(steps=2, bn_batches=2), _images(), out_dir=tmp_path / "part", progress=False)
    resumed = fit(_config(steps=4, bn_batches=2), _images(), out_dir=tmp_path / "part", resume=True, progress=False)
    assert all(torch.equal(v, _state(resumed.model)[k]) for k, v in returned.items())
