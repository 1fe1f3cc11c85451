"""The ``diffad`` command (also ``python -m diffad_core``).

Sub-commands: ``info``, ``mini``, ``pretrain``, ``train``, ``eval``, ``benchmark``, ``demo``,
``predict``, ``calibrate``, ``export``. Training and
evaluation options are generated from the fields of :class:`TrainConfig` and :class:`EvalConfig`,
so the command line and the library share one table of defaults.

User errors (a missing path, an unknown category, a bad flag value, an unreadable checkpoint) print
one line ``diffad: error: ...`` and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------- options from dataclass fields
def _add_dataclass_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: Sequence[str] = (),
    title: str,
    presets: Optional[dict[str, dict[str, Any]]] = None,
    helps: Optional[dict[str, str]] = None,
) -> None:
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Union and type(None) in args:  # Optional[X]
            hint = next(a for a in args if a is not type(None))
            origin, args = typing.get_origin(hint), typing.get_args(hint)
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif origin is typing.Literal:
            kw["choices"] = list(args)
        elif hint in (int, float, str):
            kw["type"] = hint
            kw["metavar"] = {int: "N", float: "X", str: "S"}[hint]
        else:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        by_preset = {name: values[f.name] for name, values in (presets or {}).items() if f.name in values}
        what = (helps or {}).get(f.name, "").replace("%", "%%")  # argparse %-formats help strings
        if by_preset:
            others = ", ".join(f"{name} {value}" for name, value in by_preset.items())
            kw["help"] = f"{what} (preset value: {others}; otherwise {default})".strip()
        else:
            kw["help"] = f"{what} (default: {default})".strip()
        group.add_argument(flag, **kw)


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


# ---------------------------------------------------------------- parser
MODEL_HELP = "model.safetensors, checkpoint.pt or the run folder of diffad train"


def build_parser() -> argparse.ArgumentParser:
    from .config import AMP_MODES, DEMO_MINUTES, EVAL_HELP, TRAIN_HELP, TRAIN_PRESETS, EvalConfig, TrainConfig  # torch-free: --help stays fast

    parser = _Parser(prog="diffad", description="DiffusionAD: norm-guided one-step denoising diffusion for anomaly detection")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser("info", help="print versions, the device and the model presets")

    p = sub.add_parser("mini", help="write the embedded mini benchmark (MVTec layout)")
    p.add_argument("--out", required=True, type=Path, help="folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--categories", nargs="+", default=None, help="subset of brick gravel nut pill (default: all)")
    p.add_argument("--image-size", type=int, default=128, help="pixels per side (default: 128)")
    p.add_argument("--num-train", type=int, default=60, help="normal training images per category (default: 60)")
    p.add_argument("--num-test-good", type=int, default=15, help="normal test images per category (default: 15)")
    p.add_argument("--num-per-defect", type=int, default=5,
                   help="test images per defect type (default: 5); raise both test counts for a validation set "
                        "large enough to rank close models")

    def data_args(p: argparse.ArgumentParser, category_required: bool = True) -> None:
        p.add_argument("--data", required=True, type=Path, help="dataset root")
        if category_required:
            p.add_argument("--category", required=True, help="category folder name, e.g. bottle")
        p.add_argument("--dataset", default="auto", choices=["auto", "mvtec", "visa", "dagm"], help="layout (default: auto)")
        p.add_argument("--kind", default=None, choices=["texture", "object"], help="category kind (default: from the known lists)")

    def threads_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--threads", type=int, default=None, metavar="N",
                       help="CPU threads for torch (default: all cores, with passive OpenMP waiting)")

    p = sub.add_parser("pretrain", help="train a category-agnostic starting point on the offline corpus")
    p.add_argument("--preset", default="tiny", choices=sorted(TRAIN_PRESETS), help="training preset (default: tiny)")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoint.pt, log.jsonl, model.safetensors)")
    p.add_argument("--images", type=int, default=6000, help="corpus size (random views; default: 6000)")
    p.add_argument("--corpus-seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    threads_arg(p)
    _add_dataclass_options(p, TrainConfig, skip=("preset",), title="training settings", presets=TRAIN_PRESETS, helps=TRAIN_HELP)

    p = sub.add_parser("train", help="train on one category")
    data_args(p)
    threads_arg(p)
    p.add_argument("--preset", default="tiny", choices=sorted(TRAIN_PRESETS), help="training preset (default: tiny)")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoint.pt, log.jsonl, model.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_dataclass_options(p, TrainConfig, skip=("preset",), title="training settings", presets=TRAIN_PRESETS, helps=TRAIN_HELP)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a category's test split")
    data_args(p)
    p.add_argument("--checkpoint", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--out", required=True, type=Path, help="report folder")
    threads_arg(p)
    _add_dataclass_options(p, EvalConfig, title="evaluation settings", helps=EVAL_HELP)

    p = sub.add_parser("benchmark", help="train and evaluate every category of a dataset; paper-style table")
    p.add_argument("--data", required=True, type=Path, help="dataset root")
    p.add_argument("--dataset", required=True, choices=["mvtec", "visa", "mpdd", "dagm", "mini"])
    p.add_argument("--categories", nargs="+", default=None, help="subset of categories (default: all)")
    p.add_argument("--checkpoints", type=Path, default=None, help="evaluate OUT-style run folders found here instead of training")
    p.add_argument("--shard", default="0/1", help="i/n: this job takes every n-th category starting at i")
    p.add_argument("--preset", default="tiny", choices=sorted(TRAIN_PRESETS))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--quiet", action="store_true")
    threads_arg(p)
    _add_dataclass_options(p, TrainConfig, skip=("preset",), title="training settings", presets=TRAIN_PRESETS, helps=TRAIN_HELP)

    p = sub.add_parser("demo", help="the main job: mini benchmark -> train -> evaluate -> table")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--minutes", type=float, default=DEMO_MINUTES,
                   help=f"wall-clock training budget of the whole demo (default: {DEMO_MINUTES:g})")
    p.add_argument("--preset", default="tiny", choices=sorted(TRAIN_PRESETS))
    p.add_argument("--categories", nargs="+", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--init", default=None, help="scratch | pretrained | PATH (default: the preset's, tiny: pretrained)")
    p.add_argument("--amp", default=None, choices=AMP_MODES,
                   help="training autocast (default: bf16 on a CPU with native bf16 instructions, else the preset's)")
    p.add_argument("--lr-unet", type=float, default=None, metavar="X",
                   help="rate of the reconstruction UNet (default: 0 = frozen on a CPU when starting from trained "
                        "weights, the preset's otherwise)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="categories trained at once, one process each (default: one per CPU core; 1 on a GPU)")
    p.add_argument("--quiet", action="store_true")
    threads_arg(p)

    p = sub.add_parser("predict", help="score new images: predictions.csv, anomaly maps, overlay figures")
    p.add_argument("--checkpoint", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--images", required=True, help="a folder (searched recursively), a glob pattern or one image file")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--overlays", type=int, default=16, metavar="K", help="overlay figures for the K highest scores (default: 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    threads_arg(p)
    _add_dataclass_options(p, EvalConfig, skip=("num_figures", "map_dtype"), title="inference settings", helps=EVAL_HELP)

    p = sub.add_parser("calibrate", help="store decision thresholds with a model, from a folder of normal images")
    p.add_argument("--checkpoint", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--images", required=True, help="normal images only: a folder, a glob pattern or one file")
    p.add_argument("--kind", required=True, choices=["texture", "object"], help="synthetic anomalies as in training")
    p.add_argument("--out", required=True, type=Path, help="the calibrated weights file to write (.safetensors)")
    p.add_argument("--seed", type=int, default=0)
    threads_arg(p)

    p = sub.add_parser("export", help="write the one-step graph for deployment (ONNX, OpenVINO)")
    p.add_argument("--checkpoint", required=True, type=Path, help=MODEL_HELP)
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino"])
    p.add_argument("--out", type=Path, default=None, help="file to write (default: next to the checkpoint)")
    for name, default in (("t-s", 200), ("t-b", 400), ("top-k", 50)):
        p.add_argument(f"--{name}", type=int, default=default, help=f"(default: {default})")
    p.add_argument("--w", type=float, default=1.0, help="(default: 1.0)")
    return parser


# ---------------------------------------------------------------- commands
def _cmd_info(args: argparse.Namespace) -> int:
    import numpy
    import torch

    from . import __version__
    from .networks import RECON_PRESETS, ReconUNet, SegUNet

    try:
        import kornia

        kornia_version = kornia.__version__
    except ImportError:  # pragma: no cover - kornia is a dependency
        kornia_version = "missing"
    print(f"diffad_core {__version__}")
    print(f"python {platform.python_version()}  torch {torch.__version__}  kornia {kornia_version}  numpy {numpy.__version__}")
    if torch.cuda.is_available():
        print(f"device: cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads); no CUDA GPU visible")
    print("presets (parameters at image size 256):")
    for name in RECON_PRESETS:
        with torch.device("meta"):
            recon = sum(p.numel() for p in ReconUNet.from_preset(name, image_size=256).parameters())
            seg = sum(p.numel() for p in SegUNet.from_preset(name, image_size=256).parameters())
        print(f"  {name:<6} ReconUNet {recon / 1e6:7.2f} M  SegUNet {seg / 1e6:6.2f} M")
    return 0


def _cmd_mini(args: argparse.Namespace) -> int:
    from .data import make_mini_benchmark

    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; pass a folder to write the mini benchmark into")
    t0 = time.perf_counter()
    root = make_mini_benchmark(args.out, seed=args.seed, categories=args.categories, image_size=args.image_size,
                               num_train=args.num_train, num_test_good=args.num_test_good,
                               num_per_defect=args.num_per_defect)
    print(f"mini benchmark written to {root} in {time.perf_counter() - t0:.1f} s")
    return 0


def _train_config(args: argparse.Namespace, **extra: Any):
    """The TrainConfig of a training verb: the preset, ``extra``, then the options given; the speed
    settings that pay (:func:`~diffad_core.pipeline.cpu_speedups`: channels-last, the OpenVINO UNet)
    are added unless the command line gives them."""
    from .pipeline import cpu_speedups
    from .train import TrainConfig

    given = {**extra, **_overrides(args, TrainConfig)}
    config = TrainConfig.from_preset(args.preset, **given)
    speedups = {k: v for k, v in cpu_speedups(config.device, config.amp, config.lr_unet).items() if k not in given}
    return dataclasses.replace(config, **speedups) if speedups else config


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from .pipeline import _say, pretrain_start

    result = pretrain_start(_train_config(args, init="scratch"), args.out, images=args.images,
                            corpus_seed=args.corpus_seed, resume=args.resume, progress=not args.quiet,
                            threads=args.threads)
    _say(print, f"done: {result.steps} steps in {result.seconds:.0f} s; weights {result.weights}")  # rank 0 only
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import _say, train_category

    result = train_category(args.data, args.category, _train_config(args), args.out, dataset=args.dataset,
                            kind=args.kind, resume=args.resume, progress=not args.quiet, threads=args.threads)
    _say(print, f"done: {result.steps} steps in {result.seconds:.0f} s; weights {result.weights}")  # rank 0 only
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import per_defect_table, summarize, threshold_line
    from .inference import EvalConfig
    from .pipeline import evaluate_category

    result = evaluate_category(args.checkpoint, args.data, args.category, args.out,
                               EvalConfig(**_overrides(args, EvalConfig)), dataset=args.dataset, threads=args.threads)
    print(summarize([result], None))
    if result.per_defect:
        print(per_defect_table(result))
    line = threshold_line(result)
    print(line[0].upper() + line[1:] if line else "no decision threshold: the model has none stored (diffad calibrate) and --threshold was not given")
    print(f"report written to {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .inference import EvalConfig
    from .predict import predict_folder
    from .runtime import set_threads

    set_threads(args.threads)
    config = EvalConfig(**{**_overrides(args, EvalConfig), "num_figures": 0})
    summary = predict_folder(args.checkpoint, args.images, args.out, config, threshold=config.threshold,
                             top_k=args.overlays, progress=not args.quiet)
    print(summary.line())
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import torch

    from .calibration import calibrate
    from .checkpoint import load_model, save_weights
    from .data.imageio import read_image, resize_image
    from .predict import collect_images
    from .runtime import set_threads

    set_threads(args.threads)
    model = load_model(args.checkpoint)
    size = (model.image_size, model.image_size)
    paths = collect_images(args.images)
    images = torch.stack([resize_image(read_image(p), size) for p in paths])
    model.calibration = calibrate(model, images, kind=args.kind, seed=args.seed)
    c = model.calibration
    save_weights(args.out, model)
    print(f"calibrated on {c['n_normal']} normal images and {c['n_synthetic']} synthetic anomalies: image threshold "
          f"{c['image_threshold']:.4g} (F1 {100 * c['image_f1']:.1f} %), pixel threshold {c['pixel_threshold']:.4g} "
          f"(F1 {100 * c['pixel_f1']:.1f} %) -> {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .export import export_onnx, export_openvino
    from .reconstruction import InferenceSetting

    model = load_model(args.checkpoint)
    setting = InferenceSetting(t_s=args.t_s, t_b=args.t_b, w=args.w, top_k=args.top_k)
    suffix = ".onnx" if args.format == "onnx" else ".xml"
    out = args.out or args.checkpoint.with_suffix(suffix)
    writer = export_onnx if args.format == "onnx" else export_openvino
    path = writer(model, out, setting=setting)
    print(f"exported the one-step graph ({args.format}; inputs images, noise_s, noise_b; outputs anomaly_map, score; "
          f"t_s {setting.t_s}, t_b {setting.t_b}, w {setting.w}, top-{setting.top_k}) to {path}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .pipeline import parse_shard, run_categories

    shard = parse_shard(args.shard)
    config = None if args.checkpoints is not None else _train_config(args)
    result = run_categories(args.data, args.dataset, config, args.out, categories=args.categories,
                            checkpoints=args.checkpoints, shard=shard, progress=not args.quiet, threads=args.threads)
    print(result.table)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline import demo

    demo(args.out, minutes=args.minutes, preset=args.preset, categories=args.categories, device=args.device,
         init=args.init, amp=args.amp, lr_unet=args.lr_unet, threads=args.threads, workers=args.workers, progress=not args.quiet)
    return 0


COMMANDS = {
    "info": _cmd_info,
    "mini": _cmd_mini,
    "pretrain": _cmd_pretrain,
    "train": _cmd_train,
    "eval": _cmd_eval,
    "benchmark": _cmd_benchmark,
    "demo": _cmd_demo,
    "predict": _cmd_predict,
    "calibrate": _cmd_calibrate,
    "export": _cmd_export,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``diffad`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError
    from .train import TrainingError

    try:
        return COMMANDS[args.command](args)
    except (CheckpointError, TrainingError, ValueError, OSError, ImportError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"diffad: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
