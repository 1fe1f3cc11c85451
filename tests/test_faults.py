"""Fault injection on training and loading: SIGKILL, a full disk, NaN losses, hostile files.

Properties (issue 7):

* a run killed at any moment (SIGKILL, also in the middle of a checkpoint write) resumes from its
  last complete checkpoint with ``--resume`` and ends with exactly the weights of an uninterrupted
  run (CPU, fixed seed, one intra-op thread in every process);
* a failed write (ENOSPC from ``os.replace``; tests run as root, where chmod would not block
  writes) keeps the previous checkpoint intact and is reported (CLI: exit 2, one line);
* a NaN loss is reported with its step and never overwrites the last good checkpoint;
* checkpoints are loaded with ``weights_only=True`` / safetensors: a malicious pickle handed to
  ``diffad eval`` is refused without running; configs are parsed as JSON, never evaluated.

The README table check lives here too: the table must equal what ``tools/reliability_table.py``
renders from the committed ``tests/reliability_counts.json``.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import diffad_core.train as train_module
from conftest import write_tiny_mvtec
from diffad_core.checkpoint import CheckpointError, load_checkpoint, load_model
from diffad_core.cli import main
from reliability import (  # noqa: F401
    CLI_EXIT_2,
    KEPT,
    REFUSED,
    SAME_WEIGHTS,
    assert_one_line_cli_error,
    flush_counts_after_module,
    record,
)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 5
KILL_SEED = 7
RANDOM_KILLS = 1  # each costs a process start (~5 s); the mid-write kill comes on top


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_mvtec(tmp_path_factory.mktemp("faults") / "data", size=32, n_train=6)


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--category", "widget", "--out", str(out), "--quiet", "--device", "cpu",
            "--image-size", "32", "--batch-size", "4", "--steps", str(STEPS), "--checkpoint-every", "1",
            "--log-every", "1", "--seed", "0", *extra]


def _one_thread_main(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic as the one-thread subprocesses
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict[str, torch.Tensor]:
    """Weights of an uninterrupted run, the target every faulted run must reach."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert _one_thread_main(_train_argv(data, out)) == 0
    return load_file(str(out / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _ckpt_step(out: Path) -> int:
    file = out / "checkpoint.pt"
    return int(load_checkpoint(file)["step"]) if file.is_file() else 0


# --------------------------------------------------------------------------- SIGKILL

_KILL_IN_WRITE = r"""
import os, signal, sys, torch
real_save, calls = torch.save, [0]
def save(obj, f, *args, **kwargs):
    calls[0] += 1
    real_save(obj, f, *args, **kwargs)
    if calls[0] == int(os.environ["KILL_AT_SAVE"]):   # half of the temporary file is on disk
        data = open(f, "rb").read()
        open(f, "wb").write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
torch.save = save
from diffad_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _launch(argv: list[str], *, kill_at_save: int = 0) -> subprocess.Popen:
    env = _env()
    if kill_at_save:
        env["KILL_AT_SAVE"] = str(kill_at_save)
        cmd = [sys.executable, "-c", _KILL_IN_WRITE, *argv]
    else:
        cmd = [sys.executable, "-m", "diffad_core", *argv]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _logged_steps(out: Path) -> int:
    try:
        return len((out / "log.jsonl").read_text().splitlines())
    except OSError:
        return 0


def test_sigkill_at_random_moments_then_resume_reaches_the_same_weights(data, reference, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(KILL_SEED)
    # 1. killed inside the third checkpoint write (half a temporary file on disk).
    proc = _launch(_train_argv(data, out), kill_at_save=3)
    assert proc.wait(timeout=300) == -signal.SIGKILL
    assert _ckpt_step(out) == 2, "the last complete checkpoint must be the one of step 2"
    assert list(out.glob(".checkpoint.pt.*.tmp")), "the kill should have left the half-written temporary file"
    record("training killed (SIGKILL) and resumed", "SIGKILL during a checkpoint write", SAME_WEIGHTS)
    # 2. killed at seeded random moments of resumed runs (after a random logged step + delay).
    for _ in range(RANDOM_KILLS):
        start = _ckpt_step(out)
        if start >= STEPS - 1:
            break
        proc = _launch(_train_argv(data, out, "--resume"))
        target = rng.randint(start + 1, STEPS - 1)
        deadline = time.monotonic() + 300
        while _logged_steps(out) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        step = _ckpt_step(out)  # loads: the checkpoint on disk is always a complete one
        assert start <= step <= STEPS
        record("training killed (SIGKILL) and resumed", "SIGKILL at a seeded random moment", SAME_WEIGHTS)
    # 3. resume to the end.
    proc = _launch(_train_argv(data, out, "--resume"))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert _same(load_file(str(out / "model.safetensors")), reference), "resumed weights differ from the reference"
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))


# --------------------------------------------------------------------------- full disk


def _enospc_on(monkeypatch, name: str, nth: int) -> None:
    """Make the ``nth`` os.replace onto a file called ``name`` fail with ENOSPC."""
    real, seen = os.replace, [0]

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            seen[0] += 1
            if seen[0] == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_full_disk_during_checkpoint_keeps_the_previous_one_and_resume_recovers(data, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _enospc_on(monkeypatch, "checkpoint.pt", nth=3)
    code = _one_thread_main(_train_argv(data, out))
    assert_one_line_cli_error(code, capsys.readouterr().err, "No space left", "checkpoint.pt")
    assert _ckpt_step(out) == 2, "the checkpoint of step 2 must survive the failed write of step 3"
    assert not list(out.glob(".*.tmp")), "a failed write left its temporary file behind"
    record("checkpoint / weights write failures (ENOSPC)", "ENOSPC on checkpoint.pt (CLI)", KEPT)
    monkeypatch.undo()
    assert _one_thread_main(_train_argv(data, out, "--resume")) == 0
    assert _same(load_file(str(out / "model.safetensors")), reference)
    record("checkpoint / weights write failures (ENOSPC)", "ENOSPC on checkpoint.pt, then --resume", SAME_WEIGHTS)


def test_full_disk_on_final_weights_is_reported_and_keeps_old_weights(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert _one_thread_main(_train_argv(data, out, "--steps", "1")) == 0
    before = (out / "model.safetensors").read_bytes()
    _enospc_on(monkeypatch, "model.safetensors", nth=1)
    code = _one_thread_main(_train_argv(data, out, "--steps", "2", "--resume"))
    assert_one_line_cli_error(code, capsys.readouterr().err, "No space left", "model.safetensors")
    assert (out / "model.safetensors").read_bytes() == before
    assert _ckpt_step(out) == 2
    record("checkpoint / weights write failures (ENOSPC)", "ENOSPC on model.safetensors (CLI)", KEPT)


# --------------------------------------------------------------------------- NaN


@pytest.mark.parametrize("log_every", ["1", "5"])
def test_nan_loss_via_cli_names_the_step_and_keeps_the_checkpoint(data, tmp_path, monkeypatch, capsys, log_every):
    out = tmp_path / "run"
    real = train_module.diffusionad_loss
    calls = [0]

    def poisoned(*args, **kwargs):
        calls[0] += 1
        result = real(*args, **kwargs)
        return result._replace(total=result.total * float("nan")) if calls[0] == 3 else result

    monkeypatch.setattr(train_module, "diffusionad_loss", poisoned)
    code = _one_thread_main(_train_argv(data, out, "--log-every", log_every))
    # log_every=1: the NaN loss itself is caught; log_every=5: the NaN weights are caught at the save.
    assert_one_line_cli_error(code, capsys.readouterr().err, "step 3")
    assert _ckpt_step(out) == 2 and not (out / "model.safetensors").exists()
    kind = "NaN loss at a logged step" if log_every == "1" else "NaN weights between log steps"
    record("non-finite loss or weights", kind, KEPT)


# --------------------------------------------------------------------------- loading safety


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["evil.pt", "evil.safetensors", "evil_config.pt"])
def test_cli_eval_refuses_hostile_checkpoints_without_running_them(data, tmp_path, capsys, name):
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    if name == "evil_config.pt":  # a well-formed checkpoint whose config is Python, not JSON
        torch.save({"format": "diffad-checkpoint-v1", "model_config": f"__import__('os').system('touch {marker}')",
                    "train_config": "{}", "model": {}}, path)
    else:
        torch.save({"format": "diffad-checkpoint-v1", "payload": _Evil(marker)}, path)
    code = main(["eval", "--checkpoint", str(path), "--data", str(data), "--category", "widget",
                 "--out", str(tmp_path / "report"), "--device", "cpu"])
    assert_one_line_cli_error(code, capsys.readouterr().err, name)
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert not (tmp_path / "report").exists()
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()
    record("malicious or foreign checkpoints", f"diffad eval --checkpoint {name}", REFUSED)


def test_the_library_never_unpickles_or_evaluates_what_it_loads():
    source = {p: p.read_text() for p in (ROOT / "diffad_core").rglob("*.py")}
    for path, text in source.items():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        for banned in (r"(?<![\w.])(?<!def )eval\(", r"(?<![\w.])(?<!def )exec\(", r"pickle\.loads?\(", r"yaml\.(unsafe_)?load\(",
                       r"marshal\.loads?\(", r"dill\.", r"joblib\.load\("):
            hits = [line for line in text.splitlines() if re.search(banned, line) and not line.lstrip().startswith("#")]
            assert not hits, f"{path} uses {banned}: {hits}"
    record("malicious or foreign checkpoints", f"static scan of {len(source)} modules for unsafe loaders", REFUSED)


# --------------------------------------------------------------------------- README table


def _table_tool():
    spec = importlib.util.spec_from_file_location("reliability_table", ROOT / "tools" / "reliability_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_reliability_table_is_rendered_from_the_committed_counts():
    tool = _table_tool()
    counts = json.loads((ROOT / "tests" / "reliability_counts.json").read_text())
    assert tool.readme_section(ROOT / "README.md") == tool.render(counts), (
        "README reliability table is stale: run `make reliability` (or python tools/reliability_table.py --write)"
    )
    areas = {row for row in counts["rows"]}
    assert len(areas) >= 8 and all(sum(r["inputs"].values()) > 0 for r in counts["rows"].values())


def test_nan_at_the_first_step_does_not_claim_a_checkpoint(data, tmp_path, monkeypatch, capsys):
    real = train_module.diffusionad_loss

    def poisoned(*args, **kwargs):
        result = real(*args, **kwargs)
        return result._replace(total=result.total * float("nan"))

    monkeypatch.setattr(train_module, "diffusionad_loss", poisoned)
    code = _one_thread_main(_train_argv(data, tmp_path / "run", "--steps", "1"))
    err = capsys.readouterr().err
    assert_one_line_cli_error(code, err, "step 1")
    assert "was kept" not in err and not (tmp_path / "run" / "checkpoint.pt").exists()
    record("non-finite loss or weights", "NaN loss before any checkpoint", CLI_EXIT_2)
