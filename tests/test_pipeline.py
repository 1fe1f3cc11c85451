"""Whole-category flows (what every diffad verb and notebook 05 call)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffad_core.inference import EvalConfig
from diffad_core.checkpoint import CheckpointError, find_model_file
from diffad_core.pipeline import evaluate_category, parse_shard, run_categories, train_category
from diffad_core.train import TrainConfig

from conftest import write_tiny_mvtec


def _config(**kw) -> TrainConfig:
    settings = dict(image_size=32, steps=2, batch_size=2, init="scratch", device="cpu", checkpoint_every=1, log_every=1)
    return TrainConfig.from_preset("tiny", **{**settings, **kw})


def test_train_then_evaluate_a_category(tmp_path: Path) -> None:
    root = write_tiny_mvtec(tmp_path / "data", "widget", size=32)
    lines: list[str] = []
    fitted = train_category(root, "widget", _config(), tmp_path / "run", progress=False, threads=1, log=lines.append)
    assert fitted.steps == 2 and fitted.weights.is_file()
    assert lines and "training widget (texture" in lines[0] and "1 CPU thread(s)" in lines[0]
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["steps"] == 2
    result = evaluate_category(fitted.weights, root, "widget", tmp_path / "eval", EvalConfig(device="cpu", num_figures=0))
    assert result.category == "widget" and (tmp_path / "eval" / "metrics.json").is_file()
    assert 0.0 <= result.metrics["image_auroc"] <= 1.0


def test_kind_flows_from_the_dataset_to_fit(tmp_path: Path) -> None:
    root = write_tiny_mvtec(tmp_path / "data", "widget", size=32)
    lines: list[str] = []
    fitted = train_category(root, "widget", _config(steps=1), tmp_path / "run", kind="object", progress=False, log=lines.append)
    assert "(object," in lines[0]
    from diffad_core.checkpoint import load_checkpoint

    assert load_checkpoint(fitted.checkpoint)["extra"]["kind"] == "object"


def test_run_categories_trains_resumes_and_evaluates(tmp_path: Path) -> None:
    from diffad_core.data import make_mini_benchmark

    root = make_mini_benchmark(tmp_path / "mini", categories=["brick"], image_size=32, num_train=2,
                               num_test_good=2, num_per_defect=1)
    out = tmp_path / "bench"
    first = run_categories(root, "mini", _config(), out, categories=["brick"], progress=False, log=None)
    assert [r.category for r in first.results] == ["brick"] and first.summary.is_file()
    assert "| brick |" in first.table
    again = run_categories(root, "mini", None, tmp_path / "eval-only", categories=["brick"], checkpoints=out, log=None)
    assert again.results[0].metrics["image_auroc"] == first.results[0].metrics["image_auroc"]
    with pytest.raises(ValueError, match="unknown mini categories"):
        run_categories(root, "mini", _config(), out, categories=["bottle"], log=None)
    with pytest.raises(ValueError, match="needs a TrainConfig"):
        run_categories(root, "mini", None, out, log=None)


def test_shard_and_model_file_errors(tmp_path: Path) -> None:
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        find_model_file(tmp_path)
    from diffad_core.checkpoint import load_model

    with pytest.raises(CheckpointError, match="no model.safetensors or checkpoint.pt in"):
        load_model(tmp_path)  # a folder without a model: says what it looked for


def test_provenance_is_recorded_and_a_category_mismatch_warns(tmp_path: Path) -> None:
    from diffad_core.checkpoint import load_model

    root = write_tiny_mvtec(tmp_path / "data", "widget", size=32)
    write_tiny_mvtec(tmp_path / "data", "gadget", size=32, seed=1)
    fitted = train_category(root, "widget", _config(steps=1), tmp_path / "run", progress=False, log=None)
    model = load_model(fitted.weights)
    assert model.provenance["category"] == "widget" and model.provenance["kind"] == "texture"
    assert Path(model.provenance["data_root"]) == Path(root).resolve()
    assert load_model(fitted.checkpoint).provenance == model.provenance
    with pytest.warns(UserWarning, match="trained on category 'widget' but is evaluated on 'gadget'"):
        evaluate_category(fitted.weights, root, "gadget", None, EvalConfig(device="cpu", num_figures=0))


def test_a_run_without_budget_says_what_it_is_about_to_do(tmp_path: Path, monkeypatch) -> None:
    import diffad_core.pipeline as pipeline

    root = write_tiny_mvtec(tmp_path / "data", "widget", size=32)
    seen = {}

    def fake_fit(config, train, **kwargs):  # record instead of training for 3000 epochs
        seen.update(kwargs)
        kwargs["callback"]({"step": 2, "seconds": 3.0})
        return None

    monkeypatch.setattr(pipeline, "fit", fake_fit)
    lines: list[str] = []
    cfg = TrainConfig.from_preset("tiny", image_size=32, batch_size=2, init="scratch", device="cpu")
    train_category(root, "widget", cfg, tmp_path / "run", log=lines.append)
    assert "no budget given" in lines[1] and "3000 epochs = 9000 steps of 2 images" in lines[1]
    assert lines[2].startswith("about 3.8 h at the 1.50 s/step")
    assert seen["provenance"]["category"] == "widget"


def test_demo_plan_shares_the_cores_out(monkeypatch) -> None:
    import diffad_core.runtime as runtime
    from diffad_core.pipeline import demo_plan

    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    assert demo_plan(4, "cpu") == (2, 1)  # two categories at once, one thread each
    assert demo_plan(1, "cpu") == (1, 2)
    assert demo_plan(4, "cpu", threads=2) == (1, 2)  # a thread count asked for: one at a time
    assert demo_plan(4, "cpu", workers=1) == (1, 2)
    assert demo_plan(4, "cpu", workers=3) == (3, 1)
    assert demo_plan(2, "cpu", workers=3) == (2, 1)
    monkeypatch.setattr(runtime, "available_cores", lambda: 16)
    assert demo_plan(4, "cpu") == (4, 4)
    with pytest.raises(ValueError, match="workers=0"):
        demo_plan(4, "cpu", workers=0)


def test_demo_settings_freeze_the_pretrained_unet_on_a_cpu_only_when_it_is_trained() -> None:
    from diffad_core.engine import openvino_available
    from diffad_core.pipeline import demo_settings
    from diffad_core.runtime import cpu_has_native_bf16

    bf16 = {"amp": "bf16"} if cpu_has_native_bf16() else {}
    speedups = {"channels_last": True, **({"unet_engine": "openvino"} if openvino_available() else {})}
    frozen = {**bf16, "lr_unet": 0.0, **(speedups if bf16 else {})}  # faster bf16 forwards of the frozen UNet
    assert demo_settings("cpu") == frozen  # tiny starts from the pretrained weights
    assert demo_settings("cpu", "tiny", "scratch") == bf16  # a random UNet is never frozen
    assert demo_settings("cpu", "paper") == bf16  # paper starts from scratch
    assert demo_settings("cpu", "paper", "some/model.safetensors") == frozen
    # the speed settings follow an amp or lr_unet given by the caller
    assert demo_settings("cpu", lr_unet=5e-4) == {**bf16, "lr_unet": 5e-4}
    assert demo_settings("cpu", amp="off") == {"amp": "off", "lr_unet": 0.0}
    assert demo_settings("cpu", amp="bf16") == {"amp": "bf16", "lr_unet": 0.0, **speedups}


def test_training_logs_name_the_departures_from_the_released_recipe() -> None:
    from diffad_core.pipeline import _recipe_note

    assert _recipe_note(TrainConfig.from_preset("tiny")) == ""
    assert _recipe_note(TrainConfig.from_preset("tiny", lr_unet=0.0)) == ", reconstruction UNet frozen"
    assert _recipe_note(TrainConfig.from_preset("tiny", lr_unet=0.0, seg_repeats=4)) == (
        ", reconstruction UNet frozen, 4 SegNet updates per batch")
    assert _recipe_note(TrainConfig.from_preset("tiny", input_norm="gain")) == ", input_norm gain"
    assert _recipe_note(TrainConfig.from_preset("tiny", lr_unet=0.0, shade_prob=0.3)) == (
        ", reconstruction UNet frozen, shade_prob 0.3")


def test_demo_trains_two_categories_at_once(tmp_path: Path) -> None:
    from diffad_core.pipeline import demo
    from diffad_core.runtime import cpu_has_native_bf16

    lines: list[str] = []
    result = demo(tmp_path, minutes=0.04, categories=["pill", "brick"], device="cpu", workers=2, threads=1,
                  progress=False, log=lines.append)
    assert [r.category for r in result.results] == ["pill", "brick"]  # the order asked for, not of finishing
    assert any("2 processes x 1 thread(s), 0.04 min each" in line for line in lines)
    assert sum(line.endswith(tuple("0123456789")) and " steps: image AUROC " in line for line in lines) == 2
    assert set(result.steps) == {"pill", "brick"} and all(n >= 1 for n in result.steps.values())
    assert any(line.startswith(f"training steps: pill {result.steps['pill']} (")
               and f", brick {result.steps['brick']} (" in line and line.endswith(" s/step)") for line in lines)
    saved = json.loads((tmp_path / "runs" / "brick" / "train" / "train_config.json").read_text())
    assert saved["amp"] == ("bf16" if cpu_has_native_bf16() else "auto") and saved["init"] == "pretrained"
    assert saved["lr_unet"] == 0.0 and any("reconstruction UNet frozen" in line for line in lines)
    assert [r.category for r in result.shipped] == ["pill", "brick"]
    assert (tmp_path / "demo.md").is_file() and (tmp_path / "demo_shipped.md").is_file()
