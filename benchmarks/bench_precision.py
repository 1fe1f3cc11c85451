"""Benchmark: how much bf16 autocast of the two UNet passes changes the metrics, next to float32.

Evaluation computes the SegNet, the anomaly maps and the image scores in float32 always; only the
two eps_theta passes may run under bf16 autocast (``EvalConfig.amp``: "auto" = bf16 on CUDA). This
evaluates each shipped mini model on a freshly generated mini benchmark twice, ``amp="off"`` and
``amp="bf16"``, same seed, and reports every metric of both and the largest absolute difference.
On a CPU the bf16 path is CPU autocast (the same number format as on a GPU, other kernels).

    python benchmarks/bench_precision.py            # 4 categories, ~2 min on 2 CPU cores
    python benchmarks/bench_precision.py --quick    # brick only (tests)

The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import device_name, emit, environment, pick_device

from diffad_core import METRIC_KEYS, MINI_CATEGORIES, EvalConfig, evaluate, load_pretrained, make_mini_benchmark, open_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="brick only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mini-root", type=Path, default=None, help="an existing mini benchmark (default: generate one)")
    args = parser.parse_args()
    device = pick_device(args.device)
    categories = ["brick"] if args.quick else list(MINI_CATEGORIES)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.mini_root or make_mini_benchmark(Path(tmp) / "mini", seed=0, categories=categories)
        rows = {}
        for category in categories:
            model = load_pretrained(category)
            test = open_dataset(root, category, "test", image_size=model.image_size)
            values = {}
            for amp in ("off", "bf16"):
                cfg = EvalConfig(device=str(device), amp=amp, num_figures=0)
                values[amp] = {k: round(float(evaluate(model, test, cfg).metrics[k]), 5) for k in METRIC_KEYS}
            diff = {k: round(abs(values["bf16"][k] - values["off"][k]), 5) for k in METRIC_KEYS}
            rows[category] = {"float32": values["off"], "bf16_unet": values["bf16"], "abs_diff": diff}
            print(f"{category}: largest |bf16 - float32| = {max(diff.values()):.5f} ({max(diff, key=diff.get)})")
    worst = max(max(r["abs_diff"].values()) for r in rows.values())
    emit({"benchmark": "precision", "device": device_name(device), **environment(), "categories": rows,
          "max_abs_diff": worst, "within_0.001": worst <= 0.001})


if __name__ == "__main__":
    main()
