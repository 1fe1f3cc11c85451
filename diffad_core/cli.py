"""The ``diffad`` command (also ``python -m diffad_core``).

Sub-commands: ``info``, ``mini``, ``pretrain``, ``train``, ``eval``, ``benchmark``, ``demo``. Training and
evaluation options are generated from the fields of :class:`TrainConfig` and :class:`EvalConfig`,
so the command line and the library share one table of defaults.

User errors (a missing path, an unknown category, a bad flag value, an unreadable checkpoint) print
one line ``diffad: error: ...`` and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


class UserError(Exception):
    """An error caused by the user's input: reported in one line, exit status 2."""


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
        if by_preset:
            others = ", ".join(f"{name} {value}" for name, value in by_preset.items())
            kw["help"] = f"(preset value: {others}; otherwise {default})"
        else:
            kw["help"] = f"(default: {default})"
        group.add_argument(flag, **kw)


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .evaluate import EvalConfig
    from .train import TRAIN_PRESETS, TrainConfig

    parser = _Parser(prog="diffad", description="DiffusionAD: norm-guided one-step denoising diffusion for anomaly detection")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser("info", help="print versions, the device and the model presets")

    p = sub.add_parser("mini", help="write the embedded mini benchmark (MVTec layout)")
    p.add_argument("--out", required=True, type=Path, help="folder to create")
    p.add_argument("--seed", type=int, default=0)

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
    _add_dataclass_options(p, TrainConfig, skip=("preset",), title="training settings", presets=TRAIN_PRESETS)

    p = sub.add_parser("train", help="train on one category")
    data_args(p)
    threads_arg(p)
    p.add_argument("--preset", default="tiny", choices=sorted(TRAIN_PRESETS), help="training preset (default: tiny)")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoint.pt, log.jsonl, model.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_dataclass_options(p, TrainConfig, skip=("preset",), title="training settings", presets=TRAIN_PRESETS)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a category's test split")
    data_args(p)
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint.pt or model.safetensors")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    threads_arg(p)
    _add_dataclass_options(p, EvalConfig, title="evaluation settings")

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
    _add_dataclass_options(p, TrainConfig, skip=("preset",), title="training settings", presets=TRAIN_PRESETS)

    p = sub.add_parser("demo", help="the main job: mini benchmark -> train -> evaluate -> table")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--minutes", type=float, default=10.0, help="total training budget on all categories")
    p.add_argument("--preset", default="tiny", choices=sorted(TRAIN_PRESETS))
    p.add_argument("--categories", nargs="+", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--init", default=None, help="scratch | pretrained | PATH (default: the preset's, tiny: pretrained)")
    p.add_argument("--quiet", action="store_true")
    threads_arg(p)
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

    t0 = time.perf_counter()
    root = make_mini_benchmark(args.out, seed=args.seed)
    print(f"mini benchmark written to {root} in {time.perf_counter() - t0:.1f} s")
    return 0


def _open_split(args: argparse.Namespace, category: str, split: str, image_size: int):
    from .data import open_dataset

    return open_dataset(args.data, category, split, image_size=image_size, dataset=args.dataset)


def _kind(args: argparse.Namespace, category: str, dataset: Optional[str] = None) -> str:
    from .data import category_kind

    return args.kind or category_kind(category, dataset)


def _train_one(args: argparse.Namespace, category: str, out: Path, dataset_name: Optional[str] = None):
    from .train import TrainConfig, describe_init, fit, set_threads

    config = TrainConfig.from_preset(args.preset, **_overrides(args, TrainConfig))
    train = _open_split(args, category, "train", config.image_size)
    kind = _kind(args, category, dataset_name)
    threads = set_threads(getattr(args, "threads", None))
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 talks
        print(f"training {category} ({kind}, {len(train)} images, preset {args.preset}, {config.image_size} px, "
              f"init: {describe_init(config)}, {threads} CPU thread(s)) -> {out}")
    return fit(config, train, kind=kind, out_dir=out, resume=getattr(args, "resume", False), progress=not args.quiet)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretraining import pretrain
    from .train import TrainConfig, describe_init, set_threads

    config = TrainConfig.from_preset(args.preset, **{"init": "scratch", **_overrides(args, TrainConfig)})
    threads = set_threads(args.threads)
    print(f"pretraining preset {args.preset} at {config.image_size} px on {args.images} corpus images "
          f"(init: {describe_init(config)}, {threads} CPU thread(s)) -> {args.out}")
    result = pretrain(config, num_images=args.images, corpus_seed=args.corpus_seed, out_dir=args.out,
                      resume=args.resume, progress=not args.quiet)
    print(f"done: {result.steps} steps in {result.seconds:.0f} s; weights {result.weights}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    result = _train_one(args, args.category, args.out)
    if os.environ.get("RANK", "0") != "0":
        return 0
    print(f"done: {result.steps} steps in {result.seconds:.0f} s; weights {result.weights}")
    return 0


def _evaluate_one(args: argparse.Namespace, checkpoint: Path, category: str, out: Path, eval_over: dict[str, Any]):
    from .checkpoint import load_model
    from .evaluate import EvalConfig, evaluate

    config = EvalConfig(**eval_over)
    model = load_model(checkpoint)
    test = _open_split(args, category, "test", model.image_size)
    return evaluate(model, test, config, out_dir=out, category=category)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import EvalConfig, per_defect_table, summarize
    from .train import set_threads

    set_threads(args.threads)
    result = _evaluate_one(args, args.checkpoint, args.category, args.out, _overrides(args, EvalConfig))
    print(summarize([result], None))
    if result.per_defect:
        print(per_defect_table(result))
    print(f"report written to {args.out}")
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} must look like i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {text!r} needs 0 <= i < n")
    return i, n


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .data import DATASET_CATEGORIES
    from .evaluate import PAPER_RESULTS, summarize, write_summary

    from .train import set_threads

    set_threads(args.threads)
    i, n = _parse_shard(args.shard)
    known = list(DATASET_CATEGORIES[args.dataset])
    categories = args.categories or known
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise UserError(f"unknown {args.dataset} categories {unknown}; valid: {', '.join(known)}")
    mine = categories[i::n]
    args.dataset_layout = args.dataset
    args.dataset = "auto"
    args.kind = None
    results = []
    for category in mine:
        run = args.out / category
        if args.checkpoints is not None:
            ckpt = _find_checkpoint(args.checkpoints / category)
        else:
            args.resume = (run / "checkpoint.pt").is_file()
            ckpt = _train_one(args, category, run / "train", args.dataset_layout).weights
        results.append(_evaluate_one(args, ckpt, category, run / "eval", {}))
    table = summarize(results, PAPER_RESULTS.get(args.dataset_layout))
    write_summary(args.out, results, table, name="benchmark" if n == 1 else f"benchmark_shard{i}of{n}")
    print(table)
    return 0


def _find_checkpoint(folder: Path) -> Path:
    for candidate in (folder / "model.safetensors", folder / "train" / "model.safetensors", folder / "checkpoint.pt"):
        if candidate.is_file():
            return candidate
    raise UserError(f"no model.safetensors or checkpoint.pt in {folder}")


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import MINI_CATEGORIES, make_mini_benchmark
    from .evaluate import summarize, write_summary
    from .pretrained import PRETRAINED, pretrained_path

    categories = args.categories or list(MINI_CATEGORIES)
    unknown = [c for c in categories if c not in MINI_CATEGORIES]
    if unknown:
        raise UserError(f"unknown mini categories {unknown}; valid: {', '.join(MINI_CATEGORIES)}")
    data = args.out / "data"
    if not (data / categories[0] / "train").is_dir():
        t0 = time.perf_counter()
        make_mini_benchmark(data, seed=0)
        print(f"mini benchmark written to {data} in {time.perf_counter() - t0:.1f} s")
    per_category = args.minutes / len(categories)
    ns = argparse.Namespace(data=data, dataset="auto", kind=None, preset=args.preset, quiet=args.quiet,
                            minutes=per_category, device=args.device, resume=False, threads=args.threads)
    if args.init is not None:
        ns.init = args.init
    results = []
    for category in categories:
        run = args.out / "runs" / category
        if run.exists():
            shutil.rmtree(run)
        weights = _train_one(ns, category, run / "train").weights
        results.append(_evaluate_one(ns, weights, category, run / "eval", {"device": args.device}))
    table = summarize(results, None)
    write_summary(args.out, results, table, name="demo")
    print(table)
    shipped = [c for c in categories if c in PRETRAINED and pretrained_path(c).is_file()]
    if shipped:  # the same test sets through the fully trained models that ship with the package
        ref = [_evaluate_one(ns, pretrained_path(c), c, args.out / "runs" / c / "eval-shipped", {"device": args.device})
               for c in shipped]
        ref_table = summarize(ref, None)
        write_summary(args.out, ref, ref_table, name="demo_shipped")
        print("shipped fully trained models (diffad_core.load_pretrained) on the same test images:")
        print(ref_table)
        mine = [r for r in results if r.category in shipped]
        for key, label in (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO")):
            a = float(np.nanmean([r.metrics[key] for r in mine]))
            b = float(np.nanmean([r.metrics[key] for r in ref]))
            print(f"mean {label}: demo {100 * a:.1f} vs shipped {100 * b:.1f} ({100 * (a - b):+.1f} points)")
    print(f"report: {args.out / 'demo.md'}")
    return 0


COMMANDS = {
    "info": _cmd_info,
    "mini": _cmd_mini,
    "pretrain": _cmd_pretrain,
    "train": _cmd_train,
    "eval": _cmd_eval,
    "benchmark": _cmd_benchmark,
    "demo": _cmd_demo,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``diffad`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError
    from .train import TrainingError

    try:
        return COMMANDS[args.command](args)
    except (UserError, CheckpointError, TrainingError, ValueError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"diffad: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
