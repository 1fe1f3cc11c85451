"""Fuzzing the ``diffad`` command line: random flags and values for ``train`` and ``eval``.

Property (issue 7): the command either succeeds (and wrote its files, with metrics in [0, 1]) or
exits with status 2 and ONE line ``diffad: error: ...`` on stderr - never a traceback. Runs
in-process (``diffad_core.cli.main``) to stay fast; a few garbage command lines also go through a
real subprocess.

Not fuzzed, on purpose: ``--compile`` (a compiler run of minutes on CPU) and ``--amp bf16`` for
training (valid but ~5x slower on CPU); every other flag is.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import write_tiny_mvtec
from diffad_core.cli import main
from diffad_core.inference import EvalConfig
from diffad_core.train import TrainConfig
from reliability import CLI_EXIT_2, OK, assert_one_line_cli_error, flush_counts_after_module, fuzz_settings, record  # noqa: F401

AREA = "CLI flags"
ROOT = Path(__file__).resolve().parents[1]

_INTS = [-1, 0, 1, 2, 3, 7, 2**70, "x", "", "1.5", "1e3"]
_FLOATS = [-1.0, 0.0, 1e-4, 0.5, 1.0, 2.0, "nan", "inf", "-inf", "x", ""]

# Value pools per flag (the flag's type decides the generic pool; a few get bounded pools so that
# a valid draw stays a seconds-long run on CPU).
_TRAIN_VALUES: dict[str, list] = {
    "image-size": [-4, 0, 7, 16, 32, "x"],
    "batch-size": [-1, 0, 1, 3, 6, "x"],
    "steps": [-1, 0, 1, 2, "x", "1.5"],
    "num-train-timesteps": [-1, 0, 1, 2, 50, 1000, "x"],
    "t-s-max": [-1, 0, 1, 299, 300, 5000, "x"],
    "amp": ["auto", "off", "fp8", ""],
    "device": ["cpu", "auto", "cuda", "cuda:7", "tpu", "", "meta"],
    "anomaly-source": ["/nonexistent/textures", "@FILE", "@EMPTY"],
    "preset": ["tiny", "huge", ""],
    "beta-schedule": ["linear", "cosine", "quadratic"],
    "pixel-range": ["unit", "symmetric", "bytes"],
    "seg-lr-schedule": ["constant", "released", "cyclic"],
    "fused-adam": ["auto", "on", "off", "maybe"],
}
_EVAL_VALUES: dict[str, list] = {
    "t-s": [-1, 0, 1, 200, 999, 1000, 5000, "x"],
    "t-b": [-1, 0, 400, 999, 1000, 10**6, "x"],
    "top-k": [-1, 0, 1, 50, 10**6, "x"],
    "batch-size": [-1, 0, 1, 2, 1000, "x"],
    "num-figures": [-1, 0, 1, 2, "x"],
    "amp": ["auto", "off", "bf16", "fp8"],
    "map-dtype": ["float32", "float16", "float64"],
    "device": ["cpu", "auto", "cuda", "tpu", ""],
}


def _flag_pool(cls: type, special: dict[str, list], skip: set[str]) -> dict[str, list]:
    import dataclasses
    import typing

    pool: dict[str, list] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = f.name.replace("_", "-")
        if flag in skip:
            continue
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_origin(hint) is typing.Union and args else hint
        if flag in special:
            pool[flag] = special[flag]
        elif base is bool:
            pool[flag] = [None]  # --flag / --no-flag
        elif base is int:
            pool[flag] = _INTS
        elif base is float:
            pool[flag] = _FLOATS
        elif base is str:
            pool[flag] = ["", "x"]
        elif typing.get_origin(base) is typing.Literal:
            pool[flag] = list(typing.get_args(base)) + ["nonsense"]
    return pool


TRAIN_POOL = _flag_pool(TrainConfig, _TRAIN_VALUES, {"compile"})
TRAIN_POOL["preset"] = _TRAIN_VALUES["preset"]
EVAL_POOL = _flag_pool(EvalConfig, _EVAL_VALUES, {"compile"})
GARBAGE = ["--frobnicate", "-x", "--", "--steps", "--data", "--resume", "--help-me", "extra-arg"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    data = write_tiny_mvtec(base / "data", size=32, n_train=4, n_good=2, n_bad=2)
    (base / "not_a_folder.txt").write_text("x")
    (base / "empty_textures").mkdir()
    run = base / "run"
    code = main(["train", "--data", str(data), "--category", "widget", "--out", str(run), "--quiet", "--device", "cpu",
                 "--image-size", "32", "--batch-size", "2", "--steps", "1"])
    assert code == 0
    return {"base": base, "data": data, "ckpt": run / "model.safetensors"}


def _call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


@st.composite
def flags(draw, pool: dict[str, list], base: Path):
    names = draw(st.lists(st.sampled_from(sorted(pool)), max_size=4, unique=True))
    argv: list[str] = []
    for name in names:
        value = draw(st.sampled_from(pool[name]))
        if value is None:
            argv.append(draw(st.sampled_from([f"--{name}", f"--no-{name}"])))
            continue
        value = {"@FILE": str(base / "not_a_folder.txt"), "@EMPTY": str(base / "empty_textures")}.get(value, value)
        argv += [f"--{name}", str(value)]
    if draw(st.integers(0, 9)) == 0:  # now and then something argparse must refuse
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(GARBAGE)))
    return names, argv


def _check(code: int, err: str, names: list[str]) -> str:
    if code == 0:
        assert "Traceback" not in err
        return OK
    assert_one_line_cli_error(code, err)
    assert len(err.strip()) > len("diffad: error: ") + 10, err
    return CLI_EXIT_2


@fuzz_settings(10)
@given(data=st.data())
def test_train_with_random_flags(setup, data):
    names, extra = data.draw(flags(TRAIN_POOL, setup["base"]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = ["train", "--data", str(setup["data"]), "--category", "widget", "--out", str(out), "--quiet",
                "--device", "cpu", "--image-size", "32", "--batch-size", "2", "--steps", "1", *extra]
        code, _, err = _call(argv)
        outcome = _check(code, err, names)
        if code == 0:
            assert (out / "model.safetensors").is_file() and (out / "checkpoint.pt").is_file()
    record(AREA, f"train + {len(names)} random flag(s)", outcome)


@fuzz_settings(10)
@given(data=st.data())
def test_eval_with_random_flags(setup, data):
    names, extra = data.draw(flags(EVAL_POOL, setup["base"]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        argv = ["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]), "--category", "widget",
                "--out", str(out), "--device", "cpu", "--batch-size", "4", "--num-figures", "0", *extra]
        code, _, err = _call(argv)
        outcome = _check(code, err, names)
        if code == 0:
            metrics = json.loads((out / "metrics.json").read_text())
            values = metrics.get("metrics", metrics)
            for key in ("image_auroc", "pixel_auroc", "aupro"):
                v = values[key]
                assert v is None or (math.isfinite(v) and 0.0 <= v <= 1.0), (key, v)
    record(AREA, f"eval + {len(names)} random flag(s)", outcome)


def test_out_of_range_seed_names_the_setting(setup, tmp_path):
    code, _, err = _call(["train", "--data", str(setup["data"]), "--category", "widget", "--out", str(tmp_path / "o"),
                          "--quiet", "--device", "cpu", "--image-size", "32", "--steps", "1", "--seed", str(2**70)])
    assert_one_line_cli_error(code, err, "seed")
    record(AREA, "train --seed 2**70", CLI_EXIT_2)
    code, _, err = _call(["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]), "--category",
                          "widget", "--out", str(tmp_path / "r"), "--device", "cpu", "--seed", str(-(2**70))])
    assert_one_line_cli_error(code, err, "seed")
    record(AREA, "eval --seed -2**70", CLI_EXIT_2)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data"],
        ["eval", "--checkpoint", "/dev/null", "--data", "/nonexistent", "--category", "c", "--out", "/tmp/x", "--t-s", "1e9"],
        ["benchmark", "--data", "/nonexistent", "--dataset", "mvtec", "--shard", "a/b", "--out", "/tmp/x"],
        ["mini", "--out"],
    ],
)
def test_garbage_command_lines_in_a_subprocess(argv):
    proc = subprocess.run([sys.executable, "-m", "diffad_core", *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert_one_line_cli_error(proc.returncode, proc.stderr)
    record(AREA, "subprocess, malformed command line", CLI_EXIT_2)
