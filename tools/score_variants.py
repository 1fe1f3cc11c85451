"""Re-score saved demo-search models with inference post-processing variants, paired, no training.

    python tools/score_variants.py runs/tune --blur 0 0.5 1 2 4
    python tools/score_variants.py runs/tune --top-k 10 25 50 100 200 400 4096
    python tools/score_variants.py runs/tune --flips 1 2 4 8
    python tools/score_variants.py runs/tune --bn saved normal train
    python tools/score_variants.py runs/tune --draws 1 2 4 8

Every row folder under ROOT that holds ``<category>/train/model.safetensors`` for the four mini
categories (what ``tools/tune_demo.py`` leaves behind) is a row. Each model is run once on the
*test* sets of mini seeds 1 and 2 (``ROOT/data-seed1``, ``ROOT/data-seed2``, written by
tune_demo; never seed 0, the demo's own) at the paper's inference setting, and its maps M are then
post-processed in every variant, so all variants see the very same maps and the training noise
cancels out of their differences (a paired comparison):

- ``--blur S...``: M blurred by a Gaussian of standard deviation S pixels at 64 px (scaled with the
  map's side); pixel scores and the image score (top-50 mean) both come from the blurred map.
  The released metric code does not blur; PatchCore, PaDiM and anomalib do.
- ``--top-k K...``: the image score is the mean of the K largest values of M (the paper: 50).
- ``--flips N...``: M is the mean of the SegNet's maps over the first N symmetries of the square
  (:mod:`diffad_core.tta`; 1 is the released inference). The SegNet runs once per symmetry on the
  same reconstruction x0_g, recorded in one pass, so the variants share x0_g exactly.
- ``--bn saved normal train``: the SegNet's BatchNorm statistics as the model file holds them, or
  recomputed from the category's ``ROOT/data-seed0`` ``train/good`` images (the demo's training
  folder): ``normal`` from those images alone at the inference setting (:func:`recompute_on_normal`),
  ``train`` from training batches with synthetic anomalies drawn as the row's run drew them
  (:func:`diffad_core.train.recompute_batchnorm_as_trained`; ``train100``: 100 batches instead of 20;
  ``train-infer``: the same batches with every sample at the inference pair t_s 200, t_b 400).
  Same noise and x0_g in every variant.
- ``--draws N...``: M is the mean of the maps of N draws of the inference noise (``EvalConfig``
  seeds 0..N-1, the paper's t_s, t_b and w in each); the image score is the top-50 mean of that M.
  1 is the released inference (seed 0). The draws are made once, up to the largest N.

``--val-seeds`` scores on other mini seeds' test sets (``ROOT/data-seed<N>``, never 0).

Prints per row the mean over the categories of image AUROC / pixel AUROC / AUPRO per variant, then
per variant the mean gain of S = (image + pixel AUROC) / 2 over the first variant and in how many
rows it was positive, and a JSON line. Round 4 of the demo search used it (docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffad_core import MINI_CATEGORIES, PAPER_INFERENCE, EvalConfig, load_model, load_tensors, open_dataset  # noqa: E402
from diffad_core.inference import predict_split  # noqa: E402
from diffad_core.metrics import aupro, image_auroc, pixel_auroc  # noqa: E402
from diffad_core.model import image_scores  # noqa: E402
from diffad_core.runtime import Networks  # noqa: E402
from diffad_core.train import TrainConfig, collecting_batchnorm_statistics, recompute_batchnorm_as_trained  # noqa: E402
from diffad_core.tta import SYMMETRIES, FlipAveragedSegNet  # noqa: E402

VAL_SEEDS = (1, 2)
CATEGORIES = list(MINI_CATEGORIES)


def gaussian_blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """(N, H, W) maps blurred by a Gaussian of std ``sigma`` px within each map (scipy's
    ``gaussian_filter``, mirrored borders, truncated at 4 sigma; viz blurs its pictures the same way).

    ``sigma`` 0 returns the maps unchanged.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return maps
    return ndimage.gaussian_filter(np.asarray(maps, dtype=np.float32), sigma=(0.0, sigma, sigma), mode="mirror",
                                   truncate=4.0)


def score_maps(maps: np.ndarray, labels: np.ndarray, masks: np.ndarray, *, sigma: float = 0.0,
               top_k: int = 50) -> tuple[float, float, float]:
    """(image AUROC, pixel AUROC, AUPRO) of maps (N, H, W) after the blur and with the top-k image score."""
    side = maps.shape[-1]
    m = gaussian_blur(maps, sigma * side / 64.0)
    score = image_scores(torch.from_numpy(np.ascontiguousarray(m))[:, None], top_k).numpy()
    return float(image_auroc(score, labels)), float(pixel_auroc(m, masks)), float(aupro(m, masks))


class _RecordingSegNet(nn.Module):
    """Runs the SegNet under every symmetry, keeps the eight maps of each batch, returns the plain one."""

    def __init__(self, segnet: nn.Module) -> None:
        super().__init__()
        self.tta = FlipAveragedSegNet(segnet, len(SYMMETRIES))
        self.batches: list[torch.Tensor] = []

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        maps = self.tta.maps(pair)
        self.batches.append(torch.stack(maps)[:, :, 0].float().cpu())
        return maps[0]


class _Recorder:
    """A predictor for ``predict_split`` whose SegNet records every symmetry's map."""

    def __init__(self, model) -> None:
        self.model = model
        self.segnet = _RecordingSegNet(model.segnet)
        self.image_size = model.image_size

    def eval(self):
        self.model.eval()
        return self

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self

    def predict(self, images, **kwargs):
        return self.model.predict(images, nets=Networks(self.model.unet, self.segnet), **kwargs)


def flip_maps(model, test) -> tuple[np.ndarray, "object"]:
    """(8, N, H, W) maps of every symmetry (same x0_g) and the plain predictions."""
    recorder = _Recorder(model)
    pred = predict_split(recorder, test, EvalConfig(num_figures=0, device="cpu"))
    return torch.cat(recorder.segnet.batches, dim=1).numpy(), pred


@torch.no_grad()
def recompute_on_normal(model, images: torch.Tensor, batch_size: int = 16) -> None:
    """BatchNorm statistics from normal images alone at the inference setting (round 15's R1)."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    with collecting_batchnorm_statistics(model.segnet):
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].float() / 255.0
            if x.shape[0] > 1:
                model.segment(x, model.reconstruct(x, generator=generator).x0_guided.float())


def recompute_like_training(model, row: Path, category: str, train, batches: int = 20,
                            timesteps: tuple[int, int] | None = None) -> None:
    """BatchNorm statistics from training batches drawn as the row's run drew them (R2), optionally
    over more batches (``train100``) or with every sample at one (t_s, t_b) pair (``train-infer``)."""
    cfg = TrainConfig.from_dict(json.loads((row / category / "train" / "train_config.json").read_text()))
    recompute_batchnorm_as_trained(model, train.images, cfg, kind=train.kind, foreground=train.foreground,
                                   batches=batches, timesteps=timesteps)


def score_batchnorm_variants(row: Path, c: str, size: int, train: dict, tests: dict, variants, names, per,
                             root: Path, val_seeds=VAL_SEEDS) -> None:
    """Each ``--bn`` variant: the model with its statistics recomputed once, scored on both seeds."""
    images = train[c] if size == 64 else load_tensors(open_dataset(root / "data-seed0", c, "train", image_size=size))
    for name, (_, value) in zip(names, variants):
        model = load_model(row / c / "train" / "model.safetensors")
        if value == "normal":
            recompute_on_normal(model, images.images)
        elif value == "train":
            recompute_like_training(model, row, c, images)
        elif value == "train100":
            recompute_like_training(model, row, c, images, batches=100)
        elif value == "train-infer":
            recompute_like_training(model, row, c, images, timesteps=(PAPER_INFERENCE.t_s, PAPER_INFERENCE.t_b))
        for seed in val_seeds:
            test = tests[seed, c] if size == 64 else load_tensors(
                open_dataset(root / f"data-seed{seed}", c, "test", image_size=size))
            pred = predict_split(model, test, EvalConfig(num_figures=0, device="cpu"))
            per[name].append(score_maps(pred.maps.astype(np.float32), pred.labels, pred.masks.astype(bool)))


def draw_maps(model, test, draws: int) -> tuple[np.ndarray, "object"]:
    """(draws, N, H, W) maps of inference noise seeds 0..draws-1 and the seed-0 predictions."""
    preds = [predict_split(model, test, EvalConfig(num_figures=0, device="cpu", seed=seed)) for seed in range(draws)]
    return np.stack([pred.maps.astype(np.float32) for pred in preds]), preds[0]


def paired_gains(table: dict[str, dict[str, list[float]]], reference: str) -> dict[str, dict[str, float]]:
    """Per variant: mean over rows of S(variant) - S(reference), rows with a gain, mean AUPRO change.

    ``table[row][variant]`` is (image AUROC, pixel AUROC, AUPRO) averaged over the categories.
    """
    out = {}
    for variant in next(iter(table.values())):
        gain = np.array([((v[variant][0] - v[reference][0]) + (v[variant][1] - v[reference][1])) / 2
                         for v in table.values()])
        pro = np.array([v[variant][2] - v[reference][2] for v in table.values()])
        out[variant] = {"gain": float(gain.mean()), "positive": int((gain > 0).sum()), "rows": len(gain),
                        "aupro_change": float(pro.mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder of the tune_demo rows (e.g. runs/tune)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--blur", type=float, nargs="+", help="Gaussian std in px at 64 px; the first is the reference")
    group.add_argument("--top-k", type=int, nargs="+", help="image-score k values; the first is the reference")
    group.add_argument("--flips", type=int, nargs="+", choices=(1, 2, 4, 8),
                       help="symmetries averaged (diffad_core.tta); the first is the reference")
    group.add_argument("--bn", nargs="+", choices=("saved", "normal", "train", "train100", "train-infer"),
                       help="SegNet BatchNorm statistics: as saved, or recomputed from train/good; the first is the reference")
    group.add_argument("--draws", type=int, nargs="+",
                       help="inference noise draws averaged (seeds 0..N-1); the first is the reference")
    parser.add_argument("--rows", nargs="+", default=None, help="only these row folders (names under ROOT)")
    parser.add_argument("--val-seeds", type=int, nargs="+", default=list(VAL_SEEDS),
                        help="score on the test sets of ROOT/data-seedN (default 1 2; never 0)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.blur:
        variants = [("blur", s) for s in args.blur]
    elif args.top_k:
        variants = [("top_k", k) for k in args.top_k]
    elif args.flips:
        variants = [("flips", n) for n in args.flips]
    elif args.draws:
        if min(args.draws) < 1:
            raise SystemExit(f"--draws must be >= 1, got {args.draws}")
        variants = [("draws", n) for n in args.draws]
    else:
        variants = [("bn", v) for v in args.bn]
    names = [f"{kind}={value}" if isinstance(value, str) else f"{kind}={value:g}" for kind, value in variants]
    if 0 in args.val_seeds:
        raise SystemExit("--val-seeds must not contain 0: seed 0's test set is the one the demo and README report")
    rows = sorted(p for p in args.root.iterdir()
                  if all((p / c / "train" / "model.safetensors").is_file() for c in CATEGORIES)
                  and (args.rows is None or p.name in args.rows))
    if not rows:
        raise SystemExit(f"no tune_demo rows (<row>/<category>/train/model.safetensors) under {args.root}")
    tests = {}
    for seed in args.val_seeds:
        data = args.root / f"data-seed{seed}"
        if not (data / CATEGORIES[0] / "test").is_dir():
            raise SystemExit(f"{data} is missing: run tools/tune_demo.py once, which writes it")
        for c in CATEGORIES:
            tests[seed, c] = load_tensors(open_dataset(data, c, "test", image_size=64))
    train = {}
    if variants[0][0] == "bn":
        for c in CATEGORIES:
            train[c] = load_tensors(open_dataset(args.root / "data-seed0", c, "train", image_size=64))
    table: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        per: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
        for c in CATEGORIES:
            model = load_model(row / c / "train" / "model.safetensors")
            if variants[0][0] == "bn":
                score_batchnorm_variants(row, c, model.image_size, train, tests, variants, names, per, args.root,
                                         args.val_seeds)
                continue
            for seed in args.val_seeds:
                test = tests[seed, c] if model.image_size == 64 else load_tensors(
                    open_dataset(args.root / f"data-seed{seed}", c, "test", image_size=model.image_size))
                if variants[0][0] == "flips":
                    every, pred = flip_maps(model, test)
                elif variants[0][0] == "draws":
                    every, pred = draw_maps(model, test, max(args.draws))
                else:
                    pred = predict_split(model, test, EvalConfig(num_figures=0, device="cpu"))
                masks = pred.masks.astype(bool)
                for name, (kind, value) in zip(names, variants):
                    if kind in ("flips", "draws"):
                        per[name].append(score_maps(every[: int(value)].mean(0), pred.labels, masks))
                        continue
                    kw = {"sigma": value} if kind == "blur" else {"top_k": int(value)}
                    per[name].append(score_maps(pred.maps.astype(np.float32), pred.labels, masks, **kw))
        table[row.name] = {n: np.mean(v, axis=0).tolist() for n, v in per.items()}
        print(f"{row.name:10s} " + "  ".join(f"{n}: " + "/".join(f"{100 * x:.1f}" for x in table[row.name][n])
                                             for n in names), flush=True)
    gains = paired_gains(table, names[0])
    for n, g in gains.items():
        print(f"{n:12s} mean S gain {100 * g['gain']:+.2f} (positive in {g['positive']}/{g['rows']} rows), "
              f"AUPRO {100 * g['aupro_change']:+.2f}")
    print(json.dumps({"rows": table, "gains": gains}))


if __name__ == "__main__":
    main()
