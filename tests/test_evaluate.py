"""Tests of diffad_core.evaluate: predictions, metrics, report files, determinism, summaries."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from diffad_core.evaluate import METRIC_KEYS, PAPER_RESULTS, EvalResult, evaluate, summarize, write_summary
from diffad_core.inference import EvalConfig, Predictions, predict_split

SIZE = 16
REPORT_FILES = [
    "metrics.json",
    "metrics.md",
    "scores.csv",
    "figures/samples.png",
    "figures/roc.png",
    "figures/pro.png",
    "figures/histogram.png",
]


class FakePrediction(NamedTuple):
    anomaly_map: Tensor
    score: Tensor
    reconstruction: Tensor
    x0_small: Tensor
    x0_big: Tensor


class FakeModel(nn.Module):
    """Stand-in for DiffusionAD: M = brightness of the image + a little generator noise.

    Defects in the toy split are bright squares, so a good map finds them; the noise makes the
    result depend on the generator, as the real norm-guided pass does.
    """

    image_size = SIZE

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))
        self.calls: list[dict] = []

    def predict(self, images: Tensor, *, t_s: int = 200, t_b: int = 400, w: float = 1.0,
                top_k: int = 50, generator: Optional[torch.Generator] = None) -> FakePrediction:
        self.calls.append(dict(t_s=t_s, t_b=t_b, w=w, top_k=top_k, n=images.shape[0]))
        noise = torch.randn(images.shape[0], 1, *images.shape[-2:], generator=generator)
        amap = (images.mean(1, keepdim=True) * self.gain + 0.02 * noise).clamp(0, 1)
        score = amap.flatten(1).topk(min(top_k, amap[0].numel()), dim=1).values.mean(1)
        rec = (images * 0.5).clamp(0, 1)
        return FakePrediction(amap, score, rec, rec, rec)


class ToySplit(NamedTuple):
    """Same fields as diffad_core.data.SplitTensors."""

    images: Tensor
    masks: Tensor
    labels: Tensor
    foreground: Tensor
    paths: list[str]
    defects: list[str]


def toy_split(labels: list[int], seed: int = 0) -> ToySplit:
    """Dark noisy images; each defect (label 1) has a bright 4 x 4 square, which is its mask."""
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    images = (torch.rand(n, 3, SIZE, SIZE, generator=g) * 80).to(torch.uint8)
    masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.uint8)
    defects = []
    for i, y in enumerate(labels):
        if y:
            r, c = 2 + 3 * (i % 3), 3 + 2 * (i % 4)
            images[i, :, r : r + 4, c : c + 4] = 230
            masks[i, :, r : r + 4, c : c + 4] = 1
        defects.append("scratch" if y else "good")
    paths = [f"/data/toy/test/{d}/{i:03d}.png" for i, d in enumerate(defects)]
    return ToySplit(images, masks, torch.tensor(labels), torch.ones_like(masks), paths, defects)


LABELS = [0, 0, 0, 0, 1, 1, 1, 0, 1, 0]
CFG = EvalConfig(batch_size=4, num_figures=4, top_k=8)


def test_evaluate_metrics_and_report_files(tmp_path: Path) -> None:
    split = toy_split(LABELS)
    with torch.random.fork_rng():  # the report must not need the global RNG
        result = evaluate(FakeModel(), split, CFG, out_dir=tmp_path, category="toy")
    assert isinstance(result, EvalResult) and result.category == "toy"
    m = result.metrics
    assert set(METRIC_KEYS) | {"n_images", "n_anomalous", "images_per_second"} <= set(m)
    assert m["n_images"] == 10 and m["n_anomalous"] == 4
    # Hand-checkable: every defect holds a square of brightness 0.9 and the good images stay
    # below 80 / 255 < 0.32, so both scores and maps separate the classes perfectly.
    for key in METRIC_KEYS:
        assert m[key] == pytest.approx(1.0), key
    assert result.warnings == []
    assert m["images_per_second"] > 0

    for name in REPORT_FILES:
        assert (tmp_path / name).is_file(), name
        assert (tmp_path / name).stat().st_size > 0, name
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name], "temporary files left behind"
    assert (tmp_path / "figures" / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["category"] == "toy" and saved["warnings"] == []
    assert saved["metrics"]["image_auroc"] == pytest.approx(1.0)
    assert saved["config"]["batch_size"] == 4

    with open(tmp_path / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(LABELS)
    assert [r["path"] for r in rows] == split.paths
    assert [int(r["label"]) for r in rows] == LABELS
    np.testing.assert_allclose([float(r["score"]) for r in rows], result.predictions.scores, rtol=1e-5)

    md = (tmp_path / "metrics.md").read_text()
    assert "| image AUROC | 100.0 |" in md and "AUPRO" in md


def test_predictions_shapes_and_settings_reach_the_model() -> None:
    split = toy_split(LABELS)
    model = FakeModel()
    cfg = EvalConfig(t_s=150, t_b=450, w=2.0, top_k=5, batch_size=3, num_figures=4, map_dtype="float16")
    pred = predict_split(model, split, cfg)
    assert isinstance(pred, Predictions) and len(pred) == 10
    assert pred.scores.shape == (10,) and pred.scores.dtype == np.float32
    assert pred.maps.shape == (10, SIZE, SIZE) and pred.maps.dtype == np.float16
    assert pred.masks.shape == (10, SIZE, SIZE) and pred.masks.dtype == np.uint8
    np.testing.assert_array_equal(pred.labels, LABELS)
    assert pred.paths == split.paths and pred.defects == split.defects
    # batches of 3 (the last one short), settings passed through
    assert [c["n"] for c in model.calls] == [3, 3, 3, 1]
    assert model.calls[0] == dict(t_s=150, t_b=450, w=2.0, top_k=5, n=3)
    assert not model.training
    # figure samples: both classes, reconstructions and inputs of exactly those images
    idx = pred.figure_indices
    assert len(idx) == 4 and {LABELS[i] for i in idx} == {0, 1}
    assert pred.reconstructions.shape == (4, 3, SIZE, SIZE)
    np.testing.assert_allclose(pred.figure_images, split.images[idx].float().numpy() / 255, atol=1e-6)
    np.testing.assert_allclose(pred.reconstructions, pred.figure_images * 0.5, atol=1e-6)


def test_evaluate_is_deterministic_for_a_seed() -> None:
    split = toy_split(LABELS)
    a = predict_split(FakeModel(), split, CFG)
    torch.manual_seed(123)  # the global RNG must not matter
    b = predict_split(FakeModel(), split, CFG)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.maps, b.maps)
    c = predict_split(FakeModel(), split, EvalConfig(batch_size=4, num_figures=4, top_k=8, seed=1))
    assert not np.array_equal(a.maps, c.maps)


def test_single_class_split_gives_nan_image_metrics_and_warnings(tmp_path: Path) -> None:
    split = toy_split([0, 0, 0, 0, 0])
    with pytest.warns(UserWarning) as caught:
        result = evaluate(FakeModel(), split, CFG, out_dir=tmp_path, category="all_good")
    messages = [str(w.message) for w in caught]
    assert any("image AUROC" in m for m in messages) and any("AUPRO" in m for m in messages)
    for key in METRIC_KEYS:  # no defect image: no anomalous pixel either
        assert math.isnan(result.metrics[key]), key
    assert len(result.warnings) == 2
    for name in REPORT_FILES:
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["image_auroc"] is None  # NaN is written as null
    assert any("image AUROC" in w for w in saved["warnings"])
    assert any("AUPRO" in w for w in saved["warnings"])
    assert saved["metrics"]["n_images"] == 5


def test_all_anomalous_split_keeps_pixel_metrics() -> None:
    with pytest.warns(UserWarning, match="anomalous"):
        result = evaluate(FakeModel(), toy_split([1, 1, 1]), CFG)
    assert math.isnan(result.metrics["image_auroc"])
    assert result.metrics["pixel_auroc"] == pytest.approx(1.0)
    assert result.metrics["aupro"] == pytest.approx(1.0)
    assert len(result.warnings) == 1


def test_evaluate_accepts_a_dataset_of_sample_dicts() -> None:
    split = toy_split([0, 1, 0, 1])

    class DictDataset(torch.utils.data.Dataset):
        image_size = (SIZE, SIZE)
        category = "dicts"

        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict:
            return {
                "image": split.images[i].float() / 255, "mask": split.masks[i].float(),
                "label": int(split.labels[i]), "defect": split.defects[i], "path": split.paths[i],
                "foreground": torch.ones(1, SIZE, SIZE),
            }

    from_dataset = evaluate(FakeModel(), DictDataset(), CFG)
    from_tensors = evaluate(FakeModel(), split, CFG)
    assert from_dataset.category == "dicts"
    np.testing.assert_allclose(from_dataset.predictions.scores, from_tensors.predictions.scores, atol=1e-6)
    assert from_dataset.predictions.paths == split.paths


def test_wrong_image_size_and_bad_config_are_explained() -> None:
    split = toy_split([0, 1])
    model = FakeModel()
    model.image_size = 32
    with pytest.raises(ValueError, match="image_size=32"):
        predict_split(model, split, CFG)
    with pytest.raises(ValueError, match="amp"):
        EvalConfig(amp="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown EvalConfig keys"):
        EvalConfig.from_dict({"batch_sise": 4})
    assert EvalConfig.from_dict(EvalConfig(seed=3).to_dict()) == EvalConfig(seed=3)


def test_real_model_end_to_end(tmp_path: Path) -> None:
    from diffad_core.model import DiffusionAD

    torch.manual_seed(0)
    model = DiffusionAD.from_preset("tiny", image_size=32)
    labels = [0, 1, 0, 1]
    split = toy_split(labels)
    big = ToySplit(
        torch.nn.functional.interpolate(split.images.float(), size=32).to(torch.uint8),
        torch.nn.functional.interpolate(split.masks.float(), size=32).to(torch.uint8),
        split.labels, split.foreground, split.paths, split.defects,
    )
    cfg = EvalConfig(batch_size=4, num_figures=2, device="cpu")
    result = evaluate(model, big, cfg, out_dir=tmp_path, category="tiny")
    pred = result.predictions
    assert pred.maps.shape == (4, 32, 32) and np.isfinite(pred.maps).all()
    assert ((pred.maps >= 0) & (pred.maps <= 1)).all()
    assert all(math.isfinite(result.metrics[k]) for k in METRIC_KEYS)
    assert (tmp_path / "figures" / "samples.png").is_file()


def _result(category: str, **metrics: float) -> EvalResult:
    full = {k: metrics.get(k, 0.5) for k in METRIC_KEYS}
    full.update(n_images=10, n_anomalous=5, images_per_second=20.0)
    pred = Predictions(
        np.zeros(1, np.float32), np.zeros(1, np.int64), np.zeros((1, 2, 2), np.float32),
        np.zeros((1, 2, 2), np.uint8), ["x"], ["good"], 1.0, 1.0, np.zeros(0, np.int64),
    )
    return EvalResult(category, full, pred)


def test_summarize_table_mean_and_paper_rows() -> None:
    results = [_result("bottle", image_auroc=0.90, aupro=0.80), _result("cable", image_auroc=1.0, aupro=float("nan"))]
    table = summarize(results, PAPER_RESULTS["mvtec"])
    lines = table.strip().splitlines()
    assert lines[0].startswith("| category | image AUROC |")
    assert lines[2].startswith("| bottle | 90.0 |") and lines[3].startswith("| cable | 100.0 |")
    mean = lines[4]
    assert mean.startswith("| **mean** | **95.0** |")
    assert "**80.0**" in mean  # NaN AUPRO of cable is left out of the mean
    assert lines[5].startswith("| paper | 99.7 |") and "| 98.7 |" in lines[5]
    assert lines[6].startswith("| mean - paper | -4.7 |")
    assert "paper" not in summarize(results)
    with pytest.raises(ValueError, match="unknown metric keys"):
        summarize(results, {"image_aucroc": 0.9})


def test_paper_results_are_the_design_figures() -> None:
    assert PAPER_RESULTS == {
        "mvtec": {"image_auroc": 0.997, "pixel_auroc": 0.987, "aupro": 0.957, "pixel_ap": 0.761},
        "visa": {"image_auroc": 0.988, "pixel_auroc": 0.989},
        "mpdd": {"image_auroc": 0.962},
    }


def test_write_summary_files(tmp_path: Path) -> None:
    results = [_result("bottle", image_auroc=0.9), _result("cable", aupro=float("nan"))]
    results[1].warnings.append("masks have no anomalous pixel")
    path = write_summary(tmp_path, results, name="demo")
    assert path == tmp_path / "demo.md"
    text = path.read_text()
    assert "| bottle | 90.0 |" in text and "cable: masks have no anomalous pixel" in text
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert [r["category"] for r in saved] == ["bottle", "cable"]
    assert saved[1]["metrics"]["aupro"] is None


def test_reconstruction_psnr_is_the_mean_over_the_normal_images_only():
    from types import SimpleNamespace

    from diffad_core import DiffusionAD
    from diffad_core.inference import EvalConfig, reconstruction_psnr
    from diffad_core.metrics import psnr

    torch.manual_seed(0)
    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    images = torch.rand(5, 3, 32, 32)
    labels = torch.tensor([0, 1, 0, 1, 0])
    split = SimpleNamespace(images=images, masks=torch.zeros(5, 32, 32, dtype=torch.uint8), labels=labels)
    value = reconstruction_psnr(model, split, EvalConfig(device="cpu"))
    normal = images[labels == 0]
    out = model.predict(normal, generator=torch.Generator().manual_seed(0))
    assert value == pytest.approx(float(psnr(out.reconstruction.numpy(), normal.numpy()).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="normal image"):
        reconstruction_psnr(model, SimpleNamespace(images=images[:2], masks=split.masks[:2], labels=torch.ones(2)), EvalConfig(device="cpu"))


def test_per_defect_metrics_compare_each_type_with_all_normal_images():
    from sklearn.metrics import roc_auc_score

    from diffad_core.evaluate import per_defect_metrics
    from diffad_core.inference import Predictions

    rng = np.random.default_rng(0)
    defects = ["good"] * 4 + ["crack"] * 3 + ["hole"] * 3
    labels = np.array([0 if d == "good" else 1 for d in defects])
    scores = rng.random(10).astype(np.float32)
    masks = np.zeros((10, 8, 8), np.uint8)
    masks[4:, 2:5, 2:5] = 1
    maps = (rng.random((10, 8, 8)) + masks * 0.5).astype(np.float32)
    pred = Predictions(scores, labels, maps, masks, [f"{i}.png" for i in range(10)], defects, 1.0, 10.0, np.arange(0))
    rows = per_defect_metrics(pred)
    assert set(rows) == {"crack", "hole"} and rows["crack"]["n_images"] == 3
    for name, keep in (("crack", [0, 1, 2, 3, 4, 5, 6]), ("hole", [0, 1, 2, 3, 7, 8, 9])):
        assert rows[name]["image_auroc"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]))
        assert rows[name]["pixel_auroc"] == pytest.approx(roc_auc_score(masks[keep].ravel(), maps[keep].ravel()))
