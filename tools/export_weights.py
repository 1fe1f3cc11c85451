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
    model = load_model(args.source)
    if args.drop_calibration:
        model.calibration = None
    meta = {"source": args.note or f"exported from {args.source}"}
    if args.source.endswith(".safetensors"):  # a run folder's weights: its step count, config and time
        from safetensors import safe_open

        with safe_open(args.source, framework="pt") as handle:
            steps = (handle.metadata() or {}).get("steps")
        run = Path(args.source).parent
        if steps:
            meta["steps"] = steps
        if (run / "train_config.json").is_file():
            meta["train_config"] = json.dumps(json.loads((run / "train_config.json").read_text()))
        if (run / "log.jsonl").is_file() and (run / "log.jsonl").stat().st_size:
            meta["seconds"] = f"{json.loads((run / 'log.jsonl').read_text().splitlines()[-1])['seconds']:.0f}"
    if args.source.endswith(".pt"):
        state = load_checkpoint(args.source)
        meta.update(steps=str(state["step"]), seconds=f"{float(state['extra'].get('seconds', 0.0)):.0f}",
                    train_config=json.dumps(state["train_config"]))
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--meta {item!r}: write KEY=VALUE")
        meta[key] = value
    save_weights(args.target, model, dtype=torch.float16, metadata=meta)
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
