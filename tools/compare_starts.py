"""Compare model files on synthetic anomalies of fresh normal images (no test labels involved).

    python tools/compare_starts.py diffad_core/weights/pretrained-tiny-64.safetensors runs/x/model.safetensors
    python tools/compare_starts.py A B --image-size 128 --images 20

For each mini category, ``--images`` normal images of ``make_mini_benchmark(seed=1)``'s train/good
(neither a shipped model's training images, which are seed 0, nor any test image) are scored as
they are and again as synthetic anomalies (the training synthesizer with p_anomaly = 1, seeded, so
every model sees the same images). Prints image AUROC (normal vs synthetic) and pixel AUROC (on the
synthetic masks) per category and their mean, and the PSNR (dB) of the norm-guided reconstructions
of the normal images (no labels at all), one line per model, and a JSON line at the end. This is how
the shipped starting points are chosen. ``--categories`` limits the categories (e.g. a category's own
model: ``--categories nut``).
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
from diffad_core.metrics import image_auroc, pixel_auroc, psnr  # noqa: E402
from diffad_core.synthesis import AnomalySynthesizer  # noqa: E402


def _score(model, normal: torch.Tensor, anomalous: torch.Tensor, mask: torch.Tensor) -> tuple[float, float, float]:
    good = model.predict(normal, generator=torch.Generator().manual_seed(0))  # predict runs without grad
    bad = model.predict(anomalous, generator=torch.Generator().manual_seed(0))
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    image = image_auroc(np.r_[good.score.numpy(), bad.score.numpy()], labels)
    pixel = pixel_auroc(bad.anomaly_map.numpy(), mask.numpy() > 0.5)
    rebuilt = float(np.mean(psnr(good.reconstruction.float().numpy(), normal.numpy())))
    return float(image), float(pixel), rebuilt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=20, help="normal images per category")
    parser.add_argument("--categories", nargs="+", choices=MINI_CATEGORIES, default=list(MINI_CATEGORIES))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_mini_benchmark(Path(tmp) / "mini", seed=1, num_train=args.images, num_test_good=1, num_per_defect=1)
        data = {}
        for category in args.categories:
            train = load_tensors(open_dataset(root, category, "train", image_size=args.image_size))
            x = train.images.float() / 255.0
            fg = train.foreground.float() if train.foreground is not None else None
            synth = AnomalySynthesizer(kind=category_kind(category, "mini"), p_anomaly=1.0)
            syn = synth(x, fg, generator=torch.Generator().manual_seed(1))
            data[category] = (x, syn.image, syn.mask)
        for path in args.models:
            model = load_model(path).float().eval()
            per = {c: _score(model, *data[c]) for c in args.categories}
            mean = [float(np.mean([v[i] for v in per.values()])) for i in range(3)]
            cells = ", ".join(f"{c} {100 * i:.1f}/{100 * p:.1f}/{db:.2f} dB" for c, (i, p, db) in per.items())
            print(f"{path}: mean image/pixel AUROC {100 * mean[0]:.1f}/{100 * mean[1]:.1f}, PSNR {mean[2]:.2f} dB "
                  f"({cells})", flush=True)
            results[str(path)] = {"image_auroc": round(mean[0], 4), "pixel_auroc": round(mean[1], 4),
                                  "psnr_db": round(mean[2], 2), **{c: [round(v, 4) for v in per[c]] for c in per}}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
