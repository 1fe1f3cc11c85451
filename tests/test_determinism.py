"""Determinism on CPU: the same seed and settings twice -> the same weights and the same report.

``diffad train`` (a few steps) then ``diffad eval``, run twice into separate folders: the weights
must be bit-identical and every number of ``metrics.json`` and ``scores.csv`` equal, except the
wall-clock fields (seconds, images per second). What is and is not deterministic on a GPU is
written in the README's Reliability section (rendered by tools/reliability_table.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import write_tiny_mvtec
from diffad_core.cli import main
from reliability import IDENTICAL, flush_counts_after_module, record  # noqa: F401

_CLOCK_KEYS = {"seconds", "images_per_second"}


def _numbers(obj, prefix=""):
    """Flatten a metrics.json payload to {key path: value}, dropping wall-clock fields."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k not in _CLOCK_KEYS:
                out.update(_numbers(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def _train_and_eval(data: Path, out: Path, seed: str) -> tuple[dict, dict, str]:
    common = ["--data", str(data), "--category", "widget", "--device", "cpu"]
    assert main(["train", *common, "--out", str(out / "train"), "--quiet", "--image-size", "32", "--batch-size", "4",
                 "--steps", "2", "--seed", seed]) == 0
    assert main(["eval", *common, "--checkpoint", str(out / "train" / "model.safetensors"), "--out", str(out / "eval"),
                 "--batch-size", "3", "--num-figures", "0", "--seed", seed]) == 0
    weights = load_file(str(out / "train" / "model.safetensors"))
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    return weights, _numbers(metrics), (out / "eval" / "scores.csv").read_text()


def test_same_seed_twice_gives_identical_weights_and_metrics(tmp_path):
    data = write_tiny_mvtec(tmp_path / "data", size=32, n_train=6, n_good=2, n_bad=3)
    w1, m1, s1 = _train_and_eval(data, tmp_path / "a", "5")
    w2, m2, s2 = _train_and_eval(data, tmp_path / "b", "5")
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert m1 == m2, {k: (m1[k], m2.get(k)) for k in m1 if m1[k] != m2.get(k)}
    assert s1 == s2
    assert isinstance(m1["metrics.image_auroc"], float)
    record("same seed twice (determinism)", "train 2 steps + eval, CPU, twice", IDENTICAL)
