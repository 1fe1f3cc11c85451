"""Recompute the shipped mini models' SegNet BatchNorm statistics, check them, optionally write them.

    python tools/recompute_shipped_batchnorm.py --data runs/tune            # paired check only
    python tools/recompute_shipped_batchnorm.py --data runs/tune --write    # then rewrite the files
    python tools/recompute_shipped_batchnorm.py --data runs/tune --val-seeds 8 --categories brick nut \
        --noise-seed 1 --write                                               # other data, some files

The shipped ``mini-*.safetensors`` were trained before ``TrainConfig.bn_batches`` existed. For each
file this rebuilds its last training run's settings from the ``train_config`` in its metadata
(batch size, share of synthetic anomalies, t_s range, seed, exposure jitter, held-out share: 0 for
configs written before ``val_fraction`` existed) and recomputes the statistics with
:func:`diffad_core.train.recompute_batchnorm_as_trained` (20 batches, as ``fit`` does) on the images
it trained on: ``DATA/data-seed0/<category>/train/good`` (``make_mini_benchmark(seed=0)``, which
``tools/tune_demo.py`` writes). Only the BatchNorm buffers change; the weights stay float16.

The check scores each model with its stored and its recomputed statistics (rounded to float16 as
the file would hold them) on the *test* sets of mini seeds 1 and 2 (``DATA/data-seed1``,
``DATA/data-seed2``; ``--val-seeds`` names others, never seed 0's), with the same noise, and prints
the paired change of S = (image + pixel AUROC) / 2 per model and a JSON line. ``--noise-seed N``
also scores the stored model with inference noise seed N, so the change can be set against the
inference noise. ``--write`` rewrites the files of ``--categories`` (all four by default;
metadata kept, plus ``bn_recomputed``); thresholds are then refreshed by
``tools/calibrate_shipped.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffad_core import PRETRAINED, EvalConfig, TrainConfig, load_model, load_tensors, open_dataset  # noqa: E402
from diffad_core.calibration import validation_split  # noqa: E402
from diffad_core.checkpoint import save_weights  # noqa: E402
from diffad_core.inference import predict_split  # noqa: E402
from diffad_core.metrics import aupro, image_auroc, pixel_auroc  # noqa: E402
from diffad_core.pretrained import WEIGHTS_DIR  # noqa: E402
from diffad_core.train import recompute_batchnorm_as_trained  # noqa: E402

BATCHES = 20
VAL_SEEDS = (1, 2)


def recomputed(file: Path, data: Path):
    """(model with recomputed statistics rounded to float16, the file's metadata, its train config)."""
    with safe_open(str(file), "pt") as handle:
        metadata = dict(handle.metadata())
    cfg = json.loads(metadata["train_config"])
    config = TrainConfig.from_dict({k: v for k, v in cfg.items() if k in TrainConfig.__dataclass_fields__})
    model = load_model(file)
    category = metadata["category"]
    train = load_tensors(open_dataset(data / "data-seed0", category, "train", image_size=model.image_size))
    keep, _ = validation_split(train.images.shape[0], cfg.get("val_fraction", 0.0), config.seed)
    foreground = train.foreground[keep] if train.foreground is not None else None
    recompute_batchnorm_as_trained(model, train.images[keep], config, kind=metadata.get("kind", "texture"),
                                   foreground=foreground, batches=BATCHES)
    with torch.no_grad():  # the file holds float16: score what it would hold
        for name, buf in model.segnet.named_buffers():
            if buf.is_floating_point():
                buf.copy_(buf.half().float())
    return model, metadata, config


def scores(model, data: Path, category: str, seeds=VAL_SEEDS, noise_seed: int = 0) -> np.ndarray:
    out = []
    for seed in seeds:
        test = load_tensors(open_dataset(data / f"data-seed{seed}", category, "test", image_size=model.image_size))
        pred = predict_split(model, test, EvalConfig(num_figures=0, device="cpu", seed=noise_seed))
        masks = pred.masks.astype(bool)
        out.append((image_auroc(pred.scores, pred.labels), pixel_auroc(pred.maps, masks), aupro(pred.maps, masks)))
    return np.mean(out, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder holding data-seed0/1/2 (tune_demo's)")
    parser.add_argument("--write", action="store_true", help="rewrite the shipped files with the new statistics")
    parser.add_argument("--val-seeds", type=int, nargs="+", default=list(VAL_SEEDS),
                        help="score on the test sets of DATA/data-seedN (default 1 2; never 0)")
    parser.add_argument("--categories", nargs="+", choices=sorted(PRETRAINED), default=list(PRETRAINED))
    parser.add_argument("--noise-seed", type=int, default=None,
                        help="also score the stored model with this inference noise seed (the noise's size)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if 0 in args.val_seeds:
        raise SystemExit("--val-seeds must not contain 0: seed 0's test set is the one the README reports")
    for seed in [0, *args.val_seeds]:
        if not (args.data / f"data-seed{seed}").is_dir():
            raise SystemExit(f"{args.data / f'data-seed{seed}'} is missing: tools/tune_demo.py writes seeds 0-2, "
                             f"diffad mini --out {args.data / f'data-seed{seed}'} --seed {seed} any other")
    table = {}
    for category in args.categories:
        file = WEIGHTS_DIR / PRETRAINED[category]
        before = scores(load_model(file), args.data, category, args.val_seeds)
        model, metadata, config = recomputed(file, args.data)
        after = scores(model, args.data, category, args.val_seeds)
        gain = 100 * ((after[0] - before[0]) + (after[1] - before[1])) / 2
        table[category] = {"stored": before.tolist(), "recomputed": after.tolist(), "gain_S": gain}
        noise = ""
        if args.noise_seed is not None:
            other = scores(load_model(file), args.data, category, args.val_seeds, args.noise_seed)
            table[category]["noise_S"] = abs(100 * ((other[0] - before[0]) + (other[1] - before[1])) / 2)
            noise = f", inference noise {table[category]['noise_S']:.2f}"
        print(f"{category:7s} stored " + " / ".join(f"{100 * x:.1f}" for x in before) + "  recomputed "
              + " / ".join(f"{100 * x:.1f}" for x in after) + f"  S {gain:+.2f}{noise}  (batch {config.batch_size}, "
              f"p_anomaly {config.p_anomaly}, {model.image_size} px)", flush=True)
        if args.write:
            model.calibration = None  # thresholds live in calibration.json; tools/calibrate_shipped.py renews them
            keep = {k: v for k, v in metadata.items() if k not in ("format", "model_config", "calibration")}
            keep["bn_recomputed"] = (f"SegNet BatchNorm statistics recomputed over {BATCHES} training "
                                     f"batches: tools/recompute_shipped_batchnorm.py")
            save_weights(file, model, metadata=keep, dtype=torch.float16)
    mean_gain = float(np.mean([v["gain_S"] for v in table.values()]))
    print(f"mean S change {mean_gain:+.2f}; worst {min(v['gain_S'] for v in table.values()):+.2f}")
    print(json.dumps({"categories": table, "val_seeds": args.val_seeds, "mean_gain_S": mean_gain,
                      "written": args.write}))


if __name__ == "__main__":
    main()
