"""Export a trained run's weights as half-precision safetensors for shipping with the package.

    python tools/export_weights.py runs/brick/checkpoint.pt diffad_core/weights/mini-brick.safetensors \
        --note "tiny 64 px, from pretrained-tiny-64, 500 steps on mini brick"

From a ``checkpoint.pt`` the step count and training seconds go into the file's metadata too.
"""

from __future__ import annotations

import argparse
import json

import torch

from diffad_core.checkpoint import load_checkpoint, load_model, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="model.safetensors or checkpoint.pt of a training run")
    parser.add_argument("target", help="the .safetensors file to write (float16 tensors)")
    parser.add_argument("--note", default="", help="how the model was trained (stored as metadata 'source')")
    args = parser.parse_args()
    model = load_model(args.source)
    meta = {"source": args.note or f"exported from {args.source}"}
    if args.source.endswith(".pt"):
        state = load_checkpoint(args.source)
        meta.update(steps=str(state["step"]), seconds=f"{float(state['extra'].get('seconds', 0.0)):.0f}",
                    train_config=json.dumps(state["train_config"]))
    save_weights(args.target, model, dtype=torch.float16, metadata=meta)
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
