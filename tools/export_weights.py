"""Export a trained run's weights as half-precision safetensors for shipping with the package.

    python tools/export_weights.py runs/brick/model.safetensors diffad_core/weights/mini-brick.safetensors
"""

from __future__ import annotations

import argparse

import torch

from diffad_core.checkpoint import load_model, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="model.safetensors or checkpoint.pt of a training run")
    parser.add_argument("target", help="the .safetensors file to write (float16 tensors)")
    args = parser.parse_args()
    model = load_model(args.source)
    save_weights(args.target, model, dtype=torch.float16, metadata={"source": "diffad train on the mini benchmark"})
    print(f"wrote {args.target}")


if __name__ == "__main__":
    main()
