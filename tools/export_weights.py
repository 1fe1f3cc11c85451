"""Export a trained run's weights as half-precision safetensors for shipping with the package.

    python tools/export_weights.py runs/brick/checkpoint.pt diffad_core/weights/mini-brick.safetensors \
        --note "tiny 64 px, from pretrained-tiny-64, 500 steps on mini brick"

From a ``checkpoint.pt`` the step count and training seconds go into the file's metadata too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffad_core.checkpoint import load_checkpoint, load_model, save_weights


def export(source: str | Path, target: str | Path, *, note: str = "", meta: dict[str, str] | None = None,
           drop_calibration: bool = False) -> Path:
    """Write ``source``'s weights (a run's model.safetensors or checkpoint.pt) to ``target`` as float16,
    with the run's step count, seconds and training config, ``note`` as 'source' and ``meta``."""
    source = str(source)
    model = load_model(source)
    if drop_calibration:
        model.calibration = None
    entries = {"source": note or f"exported from {source}"}
    if source.endswith(".safetensors"):  # a run folder's weights: its step count, config and time
        from safetensors import safe_open

        with safe_open(source, framework="pt") as handle:
            steps = (handle.metadata() or {}).get("steps")
        run = Path(source).parent
        if steps:
            entries["steps"] = steps
        if (run / "train_config.json").is_file():
            entries["train_config"] = json.dumps(json.loads((run / "train_config.json").read_text()))
        if (run / "log.jsonl").is_file() and (run / "log.jsonl").stat().st_size:
            entries["seconds"] = f"{json.loads((run / 'log.jsonl').read_text().splitlines()[-1])['seconds']:.0f}"
    if source.endswith(".pt"):
        state = load_checkpoint(source)
        entries.update(steps=str(state["step"]), seconds=f"{float(state['extra'].get('seconds', 0.0)):.0f}",
                       train_config=json.dumps(state["train_config"]))
    entries.update(meta or {})
    return save_weights(target, model, dtype=torch.float16, metadata=entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="model.safetensors or checkpoint.pt of a training run")
    parser.add_argument("target", help="the .safetensors file to write (float16 tensors)")
    parser.add_argument("--note", default="", help="how the model was trained (stored as metadata 'source')")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="another metadata entry (e.g. data_root=...); repeatable")
    parser.add_argument("--drop-calibration", action="store_true",
                        help="leave the run's thresholds out (the shipped mini models take theirs from "
                             "weights/calibration.json, which tools/calibrate_shipped.py writes)")
    args = parser.parse_args()
    meta = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--meta {item!r}: write KEY=VALUE")
        meta[key] = value
    export(args.source, args.target, note=args.note, meta=meta, drop_calibration=args.drop_calibration)
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
