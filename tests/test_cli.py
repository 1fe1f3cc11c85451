"""The diffad command end to end on a tiny MVTec-layout category, and every user-error path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import write_tiny_mvtec

from diffad_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffad_core", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_info():
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr
    assert "torch" in proc.stdout and "paper" in proc.stdout and "ReconUNet" in proc.stdout


def test_train_then_eval(tiny_mvtec, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--data", str(tiny_mvtec), "--category", "widget", "--preset", "tiny", "--image-size", "32",
                 "--steps", "2", "--batch-size", "4", "--device", "cpu", "--out", str(run), "--quiet"])
    assert code == 0
    assert (run / "model.safetensors").is_file() and (run / "checkpoint.pt").is_file()
    code = main(["train", "--data", str(tiny_mvtec), "--category", "widget", "--preset", "tiny", "--image-size", "32",
                 "--steps", "3", "--batch-size", "4", "--device", "cpu", "--out", str(run), "--quiet", "--resume"])
    assert code == 0
    report = tmp_path / "report"
    code = main(["eval", "--checkpoint", str(run / "model.safetensors"), "--data", str(tiny_mvtec), "--category", "widget",
                 "--out", str(report), "--batch-size", "4", "--device", "cpu"])
    assert code == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["image_auroc"] <= 1.0 if "metrics" in metrics else 0.0 <= metrics["image_auroc"] <= 1.0
    out = capsys.readouterr().out
    assert "image_auroc" in out.lower() or "image auroc" in out.lower()
    # the training log says where the weights start from and how many CPU threads ran
    assert "init: pretrained start pretrained-tiny-64.safetensors" in out and "CPU thread(s)" in out


def test_train_init_and_threads_flags(tiny_mvtec, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_mvtec), "--category", "widget", "--preset", "tiny", "--image-size", "32",
                 "--steps", "1", "--batch-size", "2", "--device", "cpu", "--out", str(tmp_path / "a"), "--quiet",
                 "--init", "scratch", "--threads", "1"])
    assert code == 0
    assert "init: scratch, 1 CPU thread(s)" in capsys.readouterr().out
    code = main(["train", "--data", str(tiny_mvtec), "--category", "widget", "--preset", "tiny", "--image-size", "32",
                 "--steps", "1", "--batch-size", "2", "--device", "cpu", "--out", str(tmp_path / "b"), "--quiet",
                 "--init", str(tmp_path / "a" / "model.safetensors"), "--lr-unet", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "init: weights of" in out and "reconstruction UNet frozen" in out


def test_pretrain_command_writes_a_run(tmp_path, capsys):
    code = main(["pretrain", "--out", str(tmp_path / "pre"), "--images", "8", "--image-size", "32", "--batch-size", "2",
                 "--steps", "1", "--device", "cpu", "--quiet", "--threads", "1"])
    assert code == 0 and (tmp_path / "pre" / "model.safetensors").is_file()
    assert "8 corpus images" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["pretrain", "train"])
def test_only_rank_zero_reports_done_under_torchrun(command, tmp_path, capsys, monkeypatch):
    """Under torchrun every process runs the command; only rank 0 writes weights, so only it says 'done'."""
    import diffad_core.pipeline as pipeline

    def fake(*args, **kwargs):
        return types.SimpleNamespace(steps=3, seconds=1.0, weights="w" if os.environ["RANK"] == "0" else None)

    monkeypatch.setattr(pipeline, "pretrain_start", fake)
    monkeypatch.setattr(pipeline, "train_category", fake)
    args = {"pretrain": ["pretrain", "--out", str(tmp_path / "pre")],
            "train": ["train", "--data", str(tmp_path), "--category", "widget", "--out", str(tmp_path / "run")]}[command]
    for rank, said in (("1", ""), ("0", "done: 3 steps in 1 s; weights w\n")):
        monkeypatch.setenv("RANK", rank)
        assert main(args) == 0
        assert capsys.readouterr().out == said


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--data", "/nonexistent/x", "--category", "widget", "--out", "OUT"], "/nonexistent/x"),
        (["train", "--data", "DATA", "--category", "nosuch", "--out", "OUT"], "nosuch"),
        (["train", "--data", "DATA", "--category", "widget", "--out", "OUT", "--steps", "many"], "--steps"),
        (["train", "--data", "DATA", "--category", "widget", "--out", "OUT", "--amp", "fp8"], "--amp"),
        (["train", "--data", "DATA", "--category", "widget", "--out", "OUT", "--resume"], "checkpoint"),
        (["train", "--data", "DATA", "--category", "widget", "--out", "OUT", "--batch-size", "0"], "batch_size"),
        (["train", "--data", "DATA", "--category", "widget", "--out", "OUT", "--init", "/nonexistent/w.safetensors"], "/nonexistent/w"),
        (["train", "--data", "DATA", "--category", "widget", "--out", "OUT", "--preset", "paper", "--init", "pretrained"], "no pretrained"),
        (["eval", "--checkpoint", "CKPT", "--data", "DATA", "--category", "widget", "--out", "OUT"], "CKPT"),
        (["benchmark", "--data", "DATA", "--dataset", "mvtec", "--categories", "nosuch", "--out", "OUT"], "nosuch"),
        (["benchmark", "--data", "DATA", "--dataset", "mini", "--shard", "3/2", "--out", "OUT"], "shard"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_leave_no_output(tiny_mvtec, tmp_path, args, needle):
    ckpt = tmp_path / "bad.pt"
    ckpt.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    subst = {"DATA": str(tiny_mvtec), "OUT": str(out), "CKPT": str(ckpt)}
    argv = [subst.get(a, a) for a in args]
    needle = subst.get(needle, needle)
    proc = run_cli(*argv)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("diffad") and "error" in lines[0] and needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir()), "a failed command left files in --out"


def test_small_user_errors_are_our_own_one_liners(tmp_path, capsys):
    from diffad_core.cli import main

    (tmp_path / "afile").write_text("x")
    assert main(["mini", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file; pass a folder" in capsys.readouterr().err
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    root = write_tiny_mvtec(tmp_path / "data")
    assert main(["eval", "--data", str(root), "--category", "widget", "--checkpoint", str(png), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "not a diffad model file" in err and "weights_only" not in err
    assert main(["train", "--data", str(root / "widget"), "--category", "widget", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    assert f"pass its parent as the dataset root (--data {root})" in capsys.readouterr().err


def test_help_is_fast_because_it_imports_no_torch():
    import subprocess
    import sys

    code = "import sys; from diffad_core.cli import build_parser; build_parser(); print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_every_training_and_evaluation_setting_has_a_help_line():
    import dataclasses

    from diffad_core.config import EVAL_HELP, TRAIN_HELP, EvalConfig, TrainConfig
    from diffad_core.cli import build_parser

    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(TRAIN_HELP)
    assert {f.name for f in dataclasses.fields(EvalConfig)} == set(EVAL_HELP)
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "training budget in wall-clock minutes" in " ".join(text.split())


def test_training_commands_turn_the_speed_settings_on_where_they_pay() -> None:
    from diffad_core.cli import _train_config, build_parser
    from diffad_core.engine import openvino_available

    def config(*options: str):
        return _train_config(build_parser().parse_args(["train", "--data", "d", "--category", "c", "--out", "o", *options]))

    frozen = ("--device", "cpu", "--amp", "bf16", "--lr-unet", "0")
    assert config(*frozen).channels_last  # the measured case: bf16 forwards of a frozen UNet on a CPU
    assert not config(*frozen, "--no-channels-last").channels_last  # the user's word wins
    assert not config("--device", "cpu", "--amp", "bf16").channels_last  # a joint step gains nothing
    assert not config("--device", "cpu", "--lr-unet", "0", "--amp", "off").channels_last  # float32 was slower
    assert config("--device", "cpu", "--channels-last").channels_last
    engine = "openvino" if openvino_available() else "torch"
    assert config(*frozen).unet_engine == engine  # the frozen UNet's passes in OpenVINO where installed
    assert config(*frozen, "--unet-engine", "torch").unet_engine == "torch"
    assert config(*frozen, "--no-channels-last").unet_engine == engine  # each setting on its own
    for other in (("--device", "cpu", "--amp", "bf16"), ("--device", "cpu", "--lr-unet", "0", "--amp", "off")):
        assert config(*other).unet_engine == "torch"
