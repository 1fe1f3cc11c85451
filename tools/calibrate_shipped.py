"""Calibrate the shipped mini models' decision thresholds and write diffad_core/weights/calibration.json.

The normal images come from the mini generator with seed 1 (``make_mini_benchmark(seed=1)``'s
train/good): fresh samples of each category's normal appearance that are neither the shipped
models' training images nor any test image (the mini test sets are seed 0). The rule is the one
``fit`` uses on its held-out images (:func:`diffad_core.calibration.calibrate`).

    python tools/calibrate_shipped.py            # ~1 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffad_core import PRETRAINED, category_kind, load_model, load_tensors, make_mini_benchmark, open_dataset  # noqa: E402
from diffad_core.calibration import calibrate  # noqa: E402
from diffad_core.checkpoint import CALIBRATION_SIDECAR  # noqa: E402
from diffad_core.files import write_json  # noqa: E402
from diffad_core.pretrained import WEIGHTS_DIR  # noqa: E402

N_IMAGES = 30


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # --help, and no stray options
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_mini_benchmark(Path(tmp) / "mini", seed=1, categories=list(PRETRAINED), num_train=N_IMAGES,
                                   num_test_good=1, num_per_defect=1)
        for category, name in PRETRAINED.items():
            model = load_model(WEIGHTS_DIR / name)
            model.calibration = None
            train = load_tensors(open_dataset(root, category, "train", image_size=model.image_size))
            c = calibrate(model, train.images, kind=category_kind(category, "mini"), foreground=train.foreground, seed=0)
            c["images"] = f"make_mini_benchmark(seed=1) {category}/train/good, {N_IMAGES} images"
            out[name] = c
            print(f"{category}: image threshold {c['image_threshold']:.4g} (F1 {100 * c['image_f1']:.1f} %), "
                  f"pixel threshold {c['pixel_threshold']:.4g} (F1 {100 * c['pixel_f1']:.1f} %)")
    write_json(WEIGHTS_DIR / CALIBRATION_SIDECAR, out)
    print(json.dumps({k: {"image_threshold": v["image_threshold"], "pixel_threshold": v["pixel_threshold"]} for k, v in out.items()}))


if __name__ == "__main__":
    main()
