"""Compare model files on synthetic anomalies of fresh normal images (no test labels involved).

    python tools/compare_starts.py diffad_core/weights/pretrained-tiny-64.safetensors runs/x/model.safetensors
    python tools/compare_starts.py A B --image-size 128 --images 20

For each mini category, ``--images`` normal images of ``make_mini_benchmark(seed=1)``'s train/good
(neither a shipped model's training images, which are seed 0, nor any test image) are scored as
they are and again as synthetic anomalies (the training synthesizer with p_anomaly = 1, seeded, so
every model sees the same images). Prints image AUROC (normal vs synthetic) and pixel AUROC (on the
synthetic masks) per category and their mean, one line per model, and a JSON line at the end. This
is how the shipped starting points are chosen.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffad_core import MINI_CATEGORIES, category_kind, load_model, load_tensors, make_mini_benchmark, open_dataset  # noqa: E402
from diffad_core.metrics import image_auroc, pixel_auroc  # noqa: E402
from diffad_core.synthesis import AnomalySynthesizer  # noqa: E402


def _score(model, normal: torch.Tensor, anomalous: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    good = model.predict(normal, generator=torch.Generator().manual_seed(0))  # predict runs without grad
    bad = model.predict(anomalous, generator=torch.Generator().manual_seed(0))
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    image = image_auroc(np.r_[good.score.numpy(), bad.score.numpy()], labels)
    pixel = pixel_auroc(bad.anomaly_map.numpy(), mask.numpy() > 0.5)
    return float(image), float(pixel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=20, help="normal images per category")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_mini_benchmark(Path(tmp) / "mini", seed=1, num_train=args.images, num_test_good=1, num_per_defect=1)
        data = {}
        for category in MINI_CATEGORIES:
            train = load_tensors(open_dataset(root, category, "train", image_size=args.image_size))
            x = train.images.float() / 255.0
            fg = train.foreground.float() if train.foreground is not None else None
            synth = AnomalySynthesizer(kind=category_kind(category, "mini"), p_anomaly=1.0)
            syn = synth(x, fg, generator=torch.Generator().manual_seed(1))
            data[category] = (x, syn.image, syn.mask)
        for path in args.models:
            model = load_model(path).float().eval()
            per = {c: _score(model, *data[c]) for c in MINI_CATEGORIES}
            mean = np.mean([v[0] for v in per.values()]), np.mean([v[1] for v in per.values()])
            cells = ", ".join(f"{c} {100 * i:.1f}/{100 * p:.1f}" for c, (i, p) in per.items())
            print(f"{path}: mean image/pixel AUROC {100 * mean[0]:.1f}/{100 * mean[1]:.1f} ({cells})", flush=True)
            results[str(path)] = {"image_auroc": round(float(mean[0]), 4), "pixel_auroc": round(float(mean[1]), 4),
                                  **{c: [round(v, 4) for v in per[c]] for c in per}}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
