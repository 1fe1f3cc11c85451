"""diffad predict: new, unlabelled images of any size and format, bad files skipped."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffad_core.cli import main
from diffad_core.inference import EvalConfig
from diffad_core.model import DiffusionAD
from diffad_core.predict import collect_images, predict_folder


def _model() -> DiffusionAD:
    torch.manual_seed(0)
    model = DiffusionAD.from_preset("tiny", image_size=32).eval()
    model.calibration = {"image_threshold": 0.5, "pixel_threshold": 0.5}
    return model


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "sub" / "b.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 20), dtype=np.uint8)).save(root / "sub" / "c.bmp")  # greyscale
    (root / "sub" / "broken.png").write_bytes(b"not an image")
    (root / "notes.txt").write_text("ignored")
    return root


def test_folder_with_mixed_sizes_formats_and_a_corrupt_file(tmp_path: Path) -> None:
    src = _folder(tmp_path / "in")
    lines: list[str] = []
    summary = predict_folder(_model(), src, tmp_path / "out", EvalConfig(device="cpu", batch_size=2),
                             top_k=2, progress=False, warn=lines.append)
    assert [Path(r.path).name for r in summary.rows] == ["a.png", "b.jpg", "c.bmp"]
    assert len(summary.skipped) == 1 and "broken.png" in lines[0] and len(lines) == 1
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert [r["decision"] for r in rows] == ["defect" if float(r["score"]) >= 0.5 else "good" for r in rows]
    assert float(rows[0]["normalized_score"]) == pytest.approx(float(rows[0]["score"]) / 0.5, rel=1e-4)
    for r in rows:  # every map at the image's original resolution
        amap = np.asarray(Image.open(tmp_path / "out" / "maps" / f"{Path(r['path']).parent.name}_{Path(r['path']).stem}.png"))
        assert amap.shape == (int(r["height"]), int(r["width"])) and amap.dtype == np.uint8
    assert len(list((tmp_path / "out" / "overlays").glob("*.png"))) == 2
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["images"] == 3 and saved["threshold_source"] == "calibrated" and len(saved["skipped"]) == 1
    assert not list((tmp_path / "out").rglob(".*.tmp"))


def test_scores_match_the_shared_inference_loop(tmp_path: Path) -> None:
    from diffad_core.inference import predict_images

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        Image.fromarray(im).save(src / f"{i}.png")
    cfg = EvalConfig(device="cpu", batch_size=4)
    summary = predict_folder(_model(), src, tmp_path / "out", cfg, progress=False)
    ref = predict_images(_model(), torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), cfg)
    np.testing.assert_allclose([r.score for r in summary.rows], ref.scores, rtol=1e-6)


def test_glob_single_file_and_errors(tmp_path: Path) -> None:
    src = _folder(tmp_path / "in")
    assert [p.name for p in collect_images(str(src / "**" / "*.jpg"))] == ["b.jpg"]
    assert collect_images(src / "a.png") == [src / "a.png"]
    with pytest.raises(FileNotFoundError, match="matches no image"):
        collect_images(str(src / "*.tif"))
    with pytest.raises(FileNotFoundError, match="neither an image file"):
        collect_images(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        collect_images(empty)


def test_cli_predict_with_a_given_threshold(tmp_path: Path, capsys) -> None:
    from diffad_core.checkpoint import save_weights

    save_weights(tmp_path / "m.safetensors", _model())
    src = _folder(tmp_path / "in")
    code = main(["predict", "--checkpoint", str(tmp_path / "m.safetensors"), "--images", str(src), "--out",
                 str(tmp_path / "out"), "--threshold", "0.0", "--quiet", "--device", "cpu", "--threads", "1"])
    out = capsys.readouterr()
    assert code == 0 and "3 images scored, 1 skipped; 3 at or above the threshold 0 (given)" in out.out
    assert "skipped" in out.err and "broken.png" in out.err
    assert main(["predict", "--checkpoint", str(tmp_path / "m.safetensors"), "--images", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "neither an image file" in capsys.readouterr().err
