"""Train the shipped weights on one GPU in a few minutes: every run in parallel, one deadline.

    python tools/gpu_train.py --out runs/gpu --minutes 6.5 --deadline 560
    python tools/gpu_train.py --out runs/gpu-smoke --minutes 0.1 --device cpu --threads 1   # CPU check
    python tools/gpu_train.py --plan first ...                 # the set of the first GPU session

Runs, at the same time on one device (each a ``diffad`` command of its own, so each is exactly what
a user can run; their outputs land in OUT/<name>/). ``--plan gravel`` (the default since stop 37)
spends the card on what the CPU cannot give and the shipped models still miss (README, "Trained
models": gravel's image AUROC limits the mean), three processes at batch 32, since fewer
processes each get more of the card:

* ``mini-gravel-small-128`` ``diffad train``, the ``small`` preset at 128 px on gravel's training
  images, from the shipped small start (a larger network for gravel's pebbles);
* ``mini-gravel-tiny-128``  ``diffad train``, the shipped ``mini-gravel`` trained on jointly
  (reconstruction UNet and SegNet), at the preset's rates;
* ``pretrain-small-128``    ``diffad pretrain``, continuing the shipped small start.

The mini runs are then scored by ``diffad eval`` on a fresh validation set (mini seed 10, gravel,
150 normal and 50 per defect kind), never on the seed-0 test split the README reports: whether a
run replaces a shipped file is decided afterwards on such sets, by a rule written before.

``--plan first`` is the first GPU session's set (2026-12-04), which made today's starts:

* ``pretrain-tiny-64``   ``diffad pretrain``, tiny at 64 px, continuing the shipped 64 px start;
* ``pretrain-tiny-128``  ``diffad pretrain``, tiny at 128 px, continuing the shipped 128 px start;
* ``pretrain-small-128`` ``diffad pretrain``, small at 128 px, from scratch (the run that made the first small start);
* ``mini-<category>``    ``diffad train`` on the mini benchmark's training images (brick, gravel,
  nut, pill), tiny at 64 px, from the shipped 64 px start; then ``diffad eval`` on its test split.

The training budget is wall-clock minutes (``--minutes``), the same for every run. Measured on one
H200 (2026-12-04): processes time-slice the card rather than overlap, so seven runs got ~2.5
steps/s each and two got ~5.5; fewer runs at a time with larger batches would use it better. At ``--deadline`` seconds after the start every process still running is
stopped, so the packing step always runs: the run folders (weights, logs, configs, evaluation
metrics) are packed into OUT/results.tar, split into parts of at most 15 MiB when
``--split-into`` names a folder (the device tool brings back files of at most 16 MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "diffad_core" / "weights"
MINI = ("brick", "gravel", "nut", "pill")
PART_BYTES = 15 * 2**20


def _diffad(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffad_core", *args]


VALIDATION_SEED = 10  # the gravel plan's scoring set: fresh, never a test split that is reported


def _common(args: argparse.Namespace) -> list[str]:
    return ["--minutes", str(args.minutes), "--device", args.device, "--threads", str(args.threads),
            "--checkpoint-every", "5000", "--log-every", "50", "--quiet"]


def _gravel_jobs(out: Path, mini_root: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    common = _common(args)
    train = ["train", "--data", str(mini_root), "--category", "gravel", "--image-size", "128", "--batch-size", "32"]
    return {
        "mini-gravel-small-128": _diffad(*train, "--preset", "small",
                                         "--init", str(WEIGHTS / "pretrained-small-128.safetensors"),
                                         "--out", str(out / "mini-gravel-small-128"), *common),
        "mini-gravel-tiny-128": _diffad(*train, "--preset", "tiny", "--init", str(WEIGHTS / "mini-gravel.safetensors"),
                                        "--out", str(out / "mini-gravel-tiny-128"), *common),
        "pretrain-small-128": _diffad("pretrain", "--preset", "small", "--image-size", "128", "--images",
                                      str(args.images_128), "--init", str(WEIGHTS / "pretrained-small-128.safetensors"),
                                      "--batch-size", "32", "--out", str(out / "pretrain-small-128"), *common),
    }


def _jobs(out: Path, mini_root: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    if args.plan == "gravel":
        return _gravel_jobs(out, mini_root, args)
    common = _common(args)
    jobs = {
        "pretrain-tiny-64": _diffad("pretrain", "--preset", "tiny", "--image-size", "64", "--images", str(args.images_64),
                                    "--init", str(WEIGHTS / "pretrained-tiny-64.safetensors"), "--batch-size", "64",
                                    "--out", str(out / "pretrain-tiny-64"), *common),
        "pretrain-tiny-128": _diffad("pretrain", "--preset", "tiny", "--image-size", "128", "--images", str(args.images_128),
                                     "--init", str(WEIGHTS / "pretrained-tiny-128.safetensors"), "--batch-size", "32",
                                     "--out", str(out / "pretrain-tiny-128"), *common),
        "pretrain-small-128": _diffad("pretrain", "--preset", "small", "--image-size", "128", "--images", str(args.images_128),
                                      "--init", "scratch", "--batch-size", "16",
                                      "--out", str(out / "pretrain-small-128"), *common),
    }
    for category in MINI:
        jobs[f"mini-{category}"] = _diffad(
            "train", "--data", str(mini_root), "--category", category, "--preset", "tiny", "--image-size", "64",
            "--init", str(WEIGHTS / "pretrained-tiny-64.safetensors"), "--batch-size", "32",
            "--out", str(out / f"mini-{category}"), *common)
    return jobs


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for name, proc in procs.items():
        if proc.poll() is None:
            print(f"[{name}] still running at the deadline: stopped", flush=True)
            os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(3)
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _run_all(cmds: dict[str, list[str]], out: Path, deadline: float) -> dict[str, int]:
    """Start every command (own process group, log in OUT/<name>.log); wait until done or the deadline."""
    procs = {}
    for name, cmd in cmds.items():
        log = open(out / f"{name}.log", "w")
        procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    reported = set()
    gpu_seen = False
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(2)
        for name, proc in procs.items():
            if proc.poll() is not None and name not in reported:
                reported.add(name)
                print(f"[{name}] exit {proc.returncode} at {time.monotonic() - START:.0f} s", flush=True)
        if not gpu_seen and time.monotonic() - START > 90:
            gpu_seen = True
            try:  # how busy the card is with every run going (CUDA machines only)
                subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv"], check=False)
            except OSError:
                pass
    _stop(procs)
    return {name: proc.returncode for name, proc in procs.items()}


def _summary(out: Path, names: list[str]) -> None:
    for name in names:
        log = out / name / "log.jsonl"
        if log.is_file() and log.stat().st_size:
            last = json.loads(log.read_text().strip().splitlines()[-1])
            keys = ("step", "epoch", "loss", "noise", "focal", "smooth_l1", "seconds")
            print(f"{name}: " + ", ".join(f"{k} {last[k]:.4g}" for k in keys if k in last), flush=True)
        else:
            print(f"{name}: no log", flush=True)
        metrics = out / f"eval-{name}" / "metrics.json"
        if name.startswith("mini-") and metrics.is_file():
            m = json.loads(metrics.read_text())
            flat = m.get("metrics", m)
            print(f"  eval {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in flat.items() if isinstance(v, float)), flush=True)


def _half(run: Path) -> Path | None:
    """The run's weights as float16 safetensors (run/model-fp16.safetensors, ``tools/export_weights.py``).

    From model.safetensors, or from checkpoint.pt when the run was stopped before writing it.
    """
    sys.path.insert(0, str(ROOT))  # run as a script from a checkout: the package is beside tools/
    from export_weights import export

    for name, note in (("model.safetensors", "gpu_train run"), ("checkpoint.pt", "gpu_train run, stopped: from checkpoint.pt")):
        if (run / name).is_file():
            return export(run / name, run / "model-fp16.safetensors", note=note)
    return None


def _pack(out: Path, split_into: Path | None) -> None:
    tar_path = out / "results.tar"
    for run in sorted(p for p in out.iterdir() if p.is_dir() and (p / "train_config.json").is_file()):
        try:
            half = _half(run)
            print(f"{run.name}: {half.name if half else 'no weights'}", flush=True)
        except Exception as exc:  # pack the rest all the same
            print(f"{run.name}: cannot export float16 weights: {exc}", flush=True)
    keep = {"model-fp16.safetensors", "log.jsonl", "train_config.json", "metrics.json", "metrics.md"}
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and path != tar_path and (path.name in keep or path.suffix == ".log"):
                tar.add(path, arcname=str(path.relative_to(out)))
    size = tar_path.stat().st_size
    print(f"packed {tar_path} ({size / 2**20:.1f} MiB)", flush=True)
    if split_into is not None:
        split_into.mkdir(parents=True, exist_ok=True)
        with open(tar_path, "rb") as fh:
            for i, chunk in enumerate(iter(lambda: fh.read(PART_BYTES), b"")):
                (split_into / f"results.tar.part{i}").write_bytes(chunk)
        print(f"split into {split_into} (parts of {PART_BYTES // 2**20} MiB)", flush=True)


def _smoke(device: str) -> None:
    """Every synthesis operation, two training steps and a calibration on ``device``, in seconds,
    so that a device bug stops the script before the long runs start."""
    sys.path.insert(0, str(ROOT))
    import torch

    from diffad_core.synthesis import AnomalySynthesizer
    from diffad_core.train import TrainConfig, fit

    images = torch.rand(24, 3, 64, 64, device=device)
    for kind in ("texture", "object"):
        synth = AnomalySynthesizer(kind=kind, p_anomaly=1.0)
        for seed in range(12):  # enough draws that every augmentation runs
            synth(images[:16], None, generator=torch.Generator().manual_seed(seed))
    config = TrainConfig.from_preset("tiny", steps=2, device=device, init="scratch", log_every=1)
    fit(config, images.cpu(), kind="object", progress=False)
    torch.cuda.synchronize() if device.startswith("cuda") else None
    print(f"smoke test on {device}: passed at {time.monotonic() - START:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu"))
    parser.add_argument("--minutes", type=float, default=6.5, help="training minutes of every run")
    parser.add_argument("--deadline", type=float, default=560.0, help="seconds after the start when everything stops")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each process")
    parser.add_argument("--images-64", type=int, default=12000, help="corpus size at 64 px")
    parser.add_argument("--images-128", type=int, default=8000, help="corpus size at 128 px")
    parser.add_argument("--split-into", type=Path, default=None, help="folder for the <= 15 MiB parts of results.tar")
    parser.add_argument("--plan", choices=("gravel", "first"), default="gravel",
                        help="which runs: gravel (what the shipped models still miss) or first (2026-12-04's set)")
    args = parser.parse_args()

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    deadline = START + args.deadline
    mini_root = out / "mini"
    _smoke(args.device)
    subprocess.run(_diffad("mini", "--out", str(mini_root)), cwd=ROOT, check=True)
    eval_root = mini_root
    if args.plan == "gravel":  # score on fresh validation images, not on seed 0's reported test split
        eval_root = out / f"mini-seed{VALIDATION_SEED}"
        subprocess.run(_diffad("mini", "--out", str(eval_root), "--seed", str(VALIDATION_SEED), "--categories", "gravel",
                               "--num-train", "1", "--num-test-good", "150", "--num-per-defect", "50"),
                       cwd=ROOT, check=True)
    jobs = _jobs(out, mini_root, args)
    try:
        _train_and_evaluate(jobs, out, eval_root, deadline, args)
    finally:  # whatever happened, bring back what exists
        _pack(out, args.split_into)
    print(f"done in {time.monotonic() - START:.0f} s", flush=True)
    return 0


def _train_and_evaluate(jobs: dict[str, list[str]], out: Path, eval_root: Path, deadline: float,
                        args: argparse.Namespace) -> None:
    """Train every job, then score each mini run that wrote its weights on EVAL_ROOT's test split."""
    codes = _run_all(jobs, out, deadline)
    print("training exit codes:", codes, flush=True)
    evals = {}
    for name in jobs:
        if name.startswith("mini-") and (out / name / "model.safetensors").is_file():
            category = name.split("-")[1]
            evals[f"eval-{name}"] = _diffad("eval", "--data", str(eval_root), "--category", category, "--checkpoint",
                                            str(out / name), "--out", str(out / f"eval-{name}"), "--device", args.device,
                                            "--threads", str(args.threads))
    if evals and time.monotonic() < deadline - 20:
        print("eval exit codes:", _run_all(evals, out, deadline - 5), flush=True)
    _summary(out, list(jobs))
    for name in jobs:  # the tail of a failed run's log says why
        if codes.get(name) not in (0, None):
            print(f"--- {name}.log (tail)\n" + "\n".join((out / f"{name}.log").read_text().splitlines()[-12:]), flush=True)


START = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
