"""The speed options give the same results as the plain float32 path (CPU, tiny preset, 32 px).

Each fast path (channels-last memory format, bf16 autocast, activation checkpointing, fused Adam,
torch.compile, batched inference) must change *how* the arithmetic runs, never *what* it
computes: exact or tight equality where the arithmetic is the same, a loose bound for bf16.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from diffad_core import DiffusionAD, EvalConfig, SplitTensors, TrainConfig, fit, predict_split
from diffad_core.losses import diffusionad_loss
from diffad_core.schedule import NoiseSchedule

SIZE = 32
BATCH = 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these models are tiny, and on a loaded 2-core machine two OpenMP
    threads waiting on each other made each forward pass ~50x slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int = 0, **recon_overrides: object) -> DiffusionAD:
    """A tiny model whose zero-initialised weights are made random, so no output is trivially zero.

    The UNet's last convs are zero-initialised (eps_theta = 0 at init), which would make every
    reconstruction identical whatever the arithmetic; small random values make the test meaningful.
    """
    torch.manual_seed(seed)
    model = DiffusionAD.from_preset("tiny", image_size=SIZE, recon_overrides=dict(recon_overrides) or None)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model


def _images(n: int = BATCH, seed: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _predict(model: DiffusionAD, images: torch.Tensor, seed: int = 7):
    return model.predict(images, generator=torch.Generator().manual_seed(seed), top_k=8)


# --------------------------------------------------------------------------- inference


def test_channels_last_inference_equals_default() -> None:
    model, images = _model().eval(), _images()
    ref = _predict(model, images)
    fast_model = _model().eval().to(memory_format=torch.channels_last)
    out = _predict(fast_model, images.contiguous(memory_format=torch.channels_last))
    assert ref.anomaly_map.std() > 5e-4  # a non-trivial map, else the comparison proves nothing
    torch.testing.assert_close(out.anomaly_map, ref.anomaly_map, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.reconstruction, ref.reconstruction, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.score, ref.score, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_inference_is_close_to_float32() -> None:
    model, images = _model().eval(), _images()
    ref = _predict(model, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _predict(model, images)
    assert out.anomaly_map.dtype == torch.float32  # predict hands back float32 maps
    assert not torch.equal(out.anomaly_map, ref.anomaly_map)  # bf16 really ran
    # bf16 keeps ~3 significant digits; maps are in [0, 1].
    assert (out.anomaly_map - ref.anomaly_map).abs().max() < 0.05
    assert (out.reconstruction - ref.reconstruction).abs().mean() < 0.02
    assert (out.score - ref.score).abs().max() < 0.05


def test_batched_inference_equals_one_image_at_a_time() -> None:
    """Batching changes nothing but the speed (given the same noises; BatchNorm is in eval mode)."""
    model, images = _model().eval(), _images()
    gen = torch.Generator().manual_seed(11)
    noise_s, noise_b = torch.randn(2, *images.shape, generator=gen)
    with torch.no_grad():
        batched = model.reconstruct(images, noise_s=noise_s, noise_b=noise_b)
        maps = model.segment(images, batched.x0_guided)
        for i in range(images.shape[0]):
            one = model.reconstruct(images[i : i + 1], noise_s=noise_s[i : i + 1], noise_b=noise_b[i : i + 1])
            torch.testing.assert_close(one.x0_guided, batched.x0_guided[i : i + 1], atol=1e-5, rtol=1e-4)
            one_map = model.segment(images[i : i + 1], one.x0_guided)
            torch.testing.assert_close(one_map, maps[i : i + 1], atol=1e-5, rtol=1e-4)


def test_inference_never_reads_step_values_back_from_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule only validates tensor steps by reading them (``int(t.min())``), a host sync on
    a GPU; inference passes the int steps t_s, t_b so nothing in the loop waits for the device."""
    seen: list[type] = []
    original = NoiseSchedule._timesteps

    def spy(self, t, batch, device):  # type: ignore[no-untyped-def]
        seen.append(type(t))
        return original(self, t, batch, device)

    monkeypatch.setattr(NoiseSchedule, "_timesteps", spy)
    model = _model().eval()
    _predict(model, _images())
    assert seen, "the schedule was not consulted at all"
    assert all(kind is int for kind in seen), seen


def _split(n: int = 6) -> SplitTensors:
    images = (_images(n, seed=5) * 255).round().to(torch.uint8)
    masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.uint8)
    masks[n // 2 :, :, 8:16, 8:16] = 1
    labels = torch.tensor([0] * (n // 2) + [1] * (n - n // 2))
    paths = [f"img{i}.png" for i in range(n)]
    defects = ["good" if int(y) == 0 else "blob" for y in labels]
    foreground = torch.ones(n, 1, SIZE, SIZE, dtype=torch.uint8)
    return SplitTensors(images=images, masks=masks, labels=labels, foreground=foreground, paths=paths, defects=defects)


def _eval_config(**kw: object) -> EvalConfig:
    return EvalConfig(batch_size=4, num_figures=0, top_k=8, device="cpu", **kw)  # type: ignore[arg-type]


def test_predict_split_channels_last_equals_default() -> None:
    split = _split()
    ref = predict_split(_model(), split, _eval_config())
    out = predict_split(_model(), split, _eval_config(channels_last=True))
    assert ref.maps.std() > 5e-4
    torch.testing.assert_close(torch.from_numpy(out.maps), torch.from_numpy(ref.maps), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(out.scores), torch.from_numpy(ref.scores), atol=1e-5, rtol=1e-4)


def test_eval_compile_option_compiles_both_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``EvalConfig(compile=True)`` compiles the UNet and the SegNet (recorded, not run: see below)."""
    compiled: list[str] = []

    def record(fn, *args, **kwargs):
        compiled.append(type(fn).__name__ if isinstance(fn, torch.nn.Module) else fn.__qualname__)
        return fn

    monkeypatch.setattr(torch, "compile", record)
    predict_split(_model(), _split(), _eval_config(compile=True))
    assert sorted(compiled) == ["ReconUNet", "SegUNet.forward_logits"]
    compiled.clear()
    predict_split(_model(), _split(), _eval_config())
    assert compiled == []


def _have_compiler() -> bool:
    return any(shutil.which(cc) for cc in ("cc", "gcc", "g++", "clang"))


@pytest.mark.skipif(
    os.environ.get("DIFFAD_TEST_COMPILE") != "1",
    reason="torch.compile (inductor) needs minutes of C++ compilation on a CPU (over 500 s on the "
    "shared 2-core development machine); set DIFFAD_TEST_COMPILE=1 to run it "
    "(benchmarks/gpu_suite.sh runs the compiled path on a GPU)",
)
def test_compiled_inference_equals_eager() -> None:  # pragma: no cover - opt-in
    if not _have_compiler():
        pytest.skip("no C compiler for the inductor backend")
    split = _split()
    ref = predict_split(_model(), split, _eval_config())
    out = predict_split(_model(), split, _eval_config(compile=True))
    torch.testing.assert_close(torch.from_numpy(out.maps), torch.from_numpy(ref.maps), atol=1e-4, rtol=1e-3)


# --------------------------------------------------------------------------- training


def _loss_and_grads(model: DiffusionAD, *, channels_last: bool = False, bf16: bool = False):
    model.train()
    gen = torch.Generator().manual_seed(21)
    x = _images(seed=9)
    mask = torch.zeros(BATCH, 1, SIZE, SIZE)
    mask[2:, :, 4:20, 6:18] = 1.0
    label = torch.tensor([0, 0, 1, 1])
    draws = dict(
        t_s=torch.tensor([3, 50, 120, 299]),
        t_b=torch.tensor([300, 420, 510, 600]),
        noise_s=torch.randn(x.shape, generator=gen),
        noise_b=torch.randn(x.shape, generator=gen),
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = diffusionad_loss(model.unet, model.segnet, model.schedule, x, mask, label, **draws)
    out.total.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def test_grad_checkpointing_gives_identical_loss_and_gradients() -> None:
    ref, ref_grads = _loss_and_grads(_model())
    ckpt_model = _model(use_checkpoint=True)
    assert ckpt_model.config.recon.use_checkpoint
    out, grads = _loss_and_grads(ckpt_model)
    assert grads.keys() == ref_grads.keys()
    torch.testing.assert_close(out.total, ref.total, atol=0, rtol=0)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-7, rtol=1e-5, msg=name)


def test_channels_last_training_gives_the_same_loss_and_gradients() -> None:
    ref, ref_grads = _loss_and_grads(_model())
    out, grads = _loss_and_grads(_model(), channels_last=True)
    torch.testing.assert_close(out.total, ref.total, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    # Per element, a reordered float32 sum differs most where gradients nearly cancel (biases
    # before BatchNorm have gradient ~0); compare the whole gradient instead (measured: 1.5e-3).
    assert _rel_err(grads, ref_grads) < 1e-2


def test_bf16_training_loss_is_close_to_float32() -> None:
    ref, ref_grads = _loss_and_grads(_model())
    out, grads = _loss_and_grads(_model(), bf16=True)
    assert out.total.dtype == torch.float32
    assert out.total.item() != ref.total.item()  # bf16 really ran
    assert abs(out.total.item() - ref.total.item()) < 0.02 * abs(ref.total.item()) + 1e-3
    # Gradients agree in direction only roughly: at 32 px with batch 4, BatchNorm over a few
    # values and x0_hat's 1 / sqrt(abar_t) amplify bf16's rounding (measured cosine 0.83).
    flat = torch.cat([grads[n].flatten() for n in ref_grads])
    flat_ref = torch.cat([ref_grads[n].flatten() for n in ref_grads])
    assert torch.nn.functional.cosine_similarity(flat, flat_ref, dim=0) > 0.6


def _rel_err(a: dict, b: dict) -> float:
    """||a - b|| / ||b|| over all tensors of two dicts with the same keys."""
    diff = torch.cat([(a[n].float() - b[n].float()).flatten() for n in b])
    ref = torch.cat([b[n].float().flatten() for n in b])
    return float(diff.norm() / ref.norm())


def _model_at_init() -> dict:
    """The initial weights fit() builds for seed 0 (it seeds torch with TrainConfig.seed)."""
    torch.manual_seed(0)
    return DiffusionAD.from_preset("tiny", image_size=SIZE).state_dict()


def _fit(**overrides: object):
    cfg = TrainConfig(
        preset="tiny", image_size=SIZE, batch_size=2, steps=2, log_every=1, checkpoint_every=100,
        device="cpu", lr_unet=1e-3, lr_seg=1e-3, **overrides,  # type: ignore[arg-type]
    )
    return fit(cfg, _images(4, seed=13), progress=False)


@pytest.fixture(scope="module")
def reference_fit(_one_thread):
    return _fit(amp="off")


def _deltas(result) -> dict:
    start = _model_at_init()
    return {n: p - start[n] for n, p in result.model.state_dict().items() if p.is_floating_point()}


def test_fit_grad_checkpointing_and_fused_adam_follow_the_default_run(reference_fit) -> None:
    """Checkpointing recomputes the same float32 arithmetic (measured: identical weights); fused
    Adam is the same update in one kernel (measured: 3e-3 relative difference of the updates)."""
    ckpt = _fit(amp="off", grad_checkpointing=True)
    assert ckpt.model.config.recon.use_checkpoint
    assert [r["loss"] for r in ckpt.history] == [r["loss"] for r in reference_fit.history]
    assert _rel_err(_deltas(ckpt), _deltas(reference_fit)) < 1e-6
    fused = _fit(amp="off", fused_adam="on")
    assert _rel_err(_deltas(fused), _deltas(reference_fit)) < 0.02


def test_fit_channels_last_follows_the_default_run(reference_fit) -> None:
    fast = _fit(amp="off", channels_last=True)
    assert len(fast.history) == len(reference_fit.history) == 2
    for a, b in zip(reference_fit.history, fast.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    # Adam's update is ~lr * sign(g) where g ~ 0, so reordered float32 sums move such weights by
    # up to 2 lr: compare all weight changes together (measured: 0.12 relative; a wrong update,
    # e.g. no step or another learning rate, gives ~1).
    assert _rel_err(_deltas(fast), _deltas(reference_fit)) < 0.3


def test_fit_bf16_on_cpu_runs_close_to_float32(reference_fit) -> None:
    ref = reference_fit
    fast = _fit(amp="bf16")
    assert ref.history[0]["loss"] != fast.history[0]["loss"]  # autocast really ran
    for a, b in zip(ref.history, fast.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=0.05)


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("levels", [None, 3, 50])
def test_sort_based_pixel_metrics_equal_sklearn(levels) -> None:
    """compute_all's exact pixel AUROC / AP / F1-max (one shared sort) equal scikit-learn's."""
    import numpy as np
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    from diffad_core.metrics import aupro, compute_all

    rng = np.random.default_rng(0 if levels is None else levels)
    masks = np.zeros((12, 24, 24), dtype=np.uint8)
    masks[6:, 5:12, 4:15] = 1
    masks[9:, 18:22, 18:23] = 1
    maps = rng.random(masks.shape).astype(np.float32) + 0.3 * masks
    if levels is not None:  # many ties, also between normal and anomalous pixels
        maps = np.round(maps * levels) / levels
    labels = (masks.reshape(12, -1).max(1) > 0).astype(int)
    scores = maps.reshape(12, -1).max(1)
    out = compute_all(scores, labels, maps, masks)
    s, y = maps.ravel().astype(np.float64), masks.ravel()
    assert out["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert out["pixel_ap"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
    precision, recall, _ = precision_recall_curve(y, s)
    f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    assert out["pixel_f1_max"] == pytest.approx(f1.max(), abs=1e-9)
    # the AUPRO that reuses the sorted normal pixels is the AUPRO computed alone, exactly
    assert out["aupro"] == aupro(maps, masks)
