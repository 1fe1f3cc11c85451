"""tools/tune_demo.py: its --set parser and its refusal to validate on the demo's own test seed."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from _tools import load_tool

tune = load_tool("tune_demo")


def test_settings_parse_as_json_or_text():
    assert tune.parse_setting("lr_seg=3e-3") == ("lr_seg", 0.003)
    assert tune.parse_setting("batch_size=8") == ("batch_size", 8)
    assert tune.parse_setting("anomaly_source=/data/dtd") == ("anomaly_source", "/data/dtd")


@pytest.mark.parametrize("text", ["lr_sge=3e-3", "lr_seg", "=1"])
def test_unknown_or_malformed_settings_are_refused(text):
    with pytest.raises(SystemExit, match="expected name=value"):
        tune.parse_setting(text)


def test_seed_zero_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["tune_demo.py", "--out", str(tmp_path / "run"), "--val-seeds", "0", "1"])
    with pytest.raises(SystemExit, match="seed 0's test set is the demo's own"):
        tune.main()
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- tools/score_variants.py

variants = load_tool("score_variants")


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_blur_equals_scipy_gaussian_filter(sigma):
    from scipy.ndimage import gaussian_filter

    maps = np.random.default_rng(0).random((3, 24, 20)).astype(np.float32)
    ours = variants.gaussian_blur(maps, sigma)
    ref = np.stack([gaussian_filter(m.astype(np.float64), sigma, mode="mirror", truncate=4.0) for m in maps])
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_blur_zero_is_identity_and_negative_is_refused():
    maps = np.random.default_rng(1).random((2, 8, 8)).astype(np.float32)
    assert variants.gaussian_blur(maps, 0.0) is maps
    np.testing.assert_allclose(variants.gaussian_blur(np.full((1, 9, 9), 0.25, np.float32), 1.5), 0.25, atol=1e-7)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        variants.gaussian_blur(maps, -1.0)


def test_top_k_changes_only_the_image_score():
    rng = np.random.default_rng(2)
    maps = rng.random((6, 16, 16)).astype(np.float32) * 0.1
    masks = np.zeros((6, 16, 16), bool)
    masks[3:, 4:6, 4:6] = True
    maps[3:, 4:6, 4:6] += 0.5  # four hot pixels per defect image
    labels = np.r_[0, 0, 0, 1, 1, 1]
    top4 = variants.score_maps(maps, labels, masks, top_k=4)
    whole = variants.score_maps(maps, labels, masks, top_k=256)
    assert top4[0] == 1.0 and top4[1:] == whole[1:]


def test_paired_gains_by_hand():
    table = {"a": {"ref": [0.80, 0.90, 0.70], "v": [0.82, 0.90, 0.72]},
             "b": {"ref": [0.70, 0.80, 0.60], "v": [0.70, 0.78, 0.60]}}
    g = variants.paired_gains(table, "ref")
    assert g["ref"] == {"gain": 0.0, "positive": 0, "rows": 2, "aupro_change": 0.0}
    assert g["v"]["gain"] == pytest.approx((0.01 - 0.01) / 2) and g["v"]["positive"] == 1
    assert g["v"]["aupro_change"] == pytest.approx(0.01)


def test_score_variants_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["score_variants.py", str(tmp_path), "--blur", "0", "1"])
    with pytest.raises(SystemExit, match="no tune_demo rows"):
        variants.main()
    for category in variants.CATEGORIES:  # a row whose models exist (their contents are never read here)
        (tmp_path / "row" / category / "train").mkdir(parents=True)
        (tmp_path / "row" / category / "train" / "model.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit, match="data-seed1 is missing: run tools/tune_demo.py once"):
        variants.main()


def test_draw_maps_stacks_the_maps_of_noise_seeds_zero_up():
    from types import SimpleNamespace

    import torch

    from diffad_core import DiffusionAD, EvalConfig
    from diffad_core.inference import predict_split

    torch.manual_seed(0)
    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    g = torch.Generator().manual_seed(1)
    test = SimpleNamespace(images=(torch.rand(3, 3, 32, 32, generator=g) * 255).to(torch.uint8),
                           masks=torch.zeros(3, 32, 32, dtype=torch.uint8), labels=torch.tensor([0, 1, 0]))
    every, first = variants.draw_maps(model, test, 3)
    assert every.shape == (3, 3, 32, 32)
    for seed in range(3):
        ref = predict_split(model, test, EvalConfig(num_figures=0, device="cpu", seed=seed)).maps
        np.testing.assert_array_equal(every[seed], ref)
    np.testing.assert_array_equal(first.maps, every[0])
    assert not np.array_equal(every[0], every[1])  # another draw, another map


@pytest.mark.parametrize("argv, message", [
    (["--draws", "0", "2"], "--draws must be >= 1"),
    (["--draws", "1", "2", "--val-seeds", "0"], "must not contain 0"),
])
def test_score_variants_refuses_bad_draws_and_seed_zero(tmp_path, monkeypatch, argv, message):
    monkeypatch.setattr(sys, "argv", ["score_variants.py", str(tmp_path), *argv])
    with pytest.raises(SystemExit, match=message):
        variants.main()


def test_recording_segnet_keeps_every_symmetry_and_returns_the_plain_map():
    import torch
    from torch import nn

    from diffad_core.tta import FlipAveragedSegNet

    torch.manual_seed(0)
    segnet = nn.Sequential(nn.Conv2d(6, 1, 3, padding=1), nn.Sigmoid())
    recorder = variants._RecordingSegNet(segnet)
    pair = torch.rand(2, 6, 8, 8)
    assert torch.equal(recorder(pair), segnet(pair))
    assert recorder.batches[0].shape == (8, 2, 8, 8)
    torch.testing.assert_close(recorder.batches[0].mean(0), FlipAveragedSegNet(segnet, 8)(pair)[:, 0])


def test_recompute_on_normal_changes_only_the_segnet_statistics():
    import torch

    from diffad_core import DiffusionAD

    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = (torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    variants.recompute_on_normal(model, images, batch_size=2)  # batches of 2, 2 and a skipped single image
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("segnet.") and ("running" in k or "num_batches" in k) for k in changed)
    assert not model.training
