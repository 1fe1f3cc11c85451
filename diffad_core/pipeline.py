"""Typed flows over whole categories: what every ``diffad`` verb and notebook 05 run.

    result = train_category("data/mini", "brick", TrainConfig.from_preset("tiny", steps=300), "runs/brick")
    report = evaluate_category(result.weights, "data/mini", "brick", "runs/brick/eval")
    bench = run_categories("data/mvtec", "mvtec", TrainConfig.from_preset("paper"), "runs/mvtec")

Each flow opens the data, calls :func:`diffad_core.train.fit` or
:func:`diffad_core.evaluate.evaluate`, and reports what it does through ``log`` (``print`` by
default; pass ``log=None`` for silence). Nothing here parses arguments: :mod:`diffad_core.cli` turns
the command line into these calls, and a notebook calls them the same way.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

from .config import DEMO_MINUTES
from .evaluate import PAPER_RESULTS, EvalResult, evaluate, summarize, write_summary
from .inference import EvalConfig
from .runtime import set_threads
from .train import FitResult, TrainConfig, fit

__all__ = [
    "train_category",
    "evaluate_category",
    "run_categories",
    "BenchmarkResult",
    "demo",
    "demo_plan",
    "DemoPlan",
    "DemoResult",
    "pretrain_start",
    "parse_shard",
]

PathLike = Union[str, os.PathLike]
Log = Optional[Callable[[str], None]]


def _say(log: Log, text: str) -> None:
    if log is not None and os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 talks
        log(text)


def train_category(
    data: PathLike,
    category: str,
    config: TrainConfig,
    out: PathLike,
    *,
    dataset: str = "auto",
    kind: Optional[str] = None,
    resume: bool = False,
    progress: bool = True,
    threads: Optional[int] = None,
    log: Log = print,
) -> FitResult:
    """Train on ``category``'s ``train/good`` images under ``data`` and write the run to ``out``.

    ``kind`` (texture/object) overrides the category's entry in the known lists
    (:func:`diffad_core.data.category_kind`); the dataset carries it and ``fit`` reads it there.
    """
    from .calibration import validation_split
    from .data import open_dataset
    from .pretrained import describe_init

    train = open_dataset(data, category, "train", image_size=config.image_size, dataset=dataset, kind=kind)
    n_threads = set_threads(threads)
    n_val = len(validation_split(len(train), config.val_fraction, config.seed)[1])
    held = f", {n_val} held out for the thresholds" if n_val else ""
    _say(log, f"training {category} ({train.kind}, {len(train)} images{held}, preset {config.preset}, {config.image_size} px, "
              f"init: {describe_init(config)}{_recipe_note(config)}{_layout_note(config)}, "
              f"{n_threads} CPU thread(s)) -> {out}")
    callback = None
    if config.steps is None and config.minutes is None and config.epochs in (None, 3000):
        n_train = len(train) - n_val
        steps = max(1, -(-3000 * n_train // config.batch_size))
        _say(log, f"no budget given (--steps, --epochs or --minutes): this is the released schedule, 3000 epochs "
                  f"= {steps} steps of {config.batch_size} images; pass e.g. --minutes 20 for a short run")
        callback = _time_estimate(log, steps)
    provenance = {"category": category, "data_root": str(Path(data).resolve()), "dataset": dataset}
    return fit(config, train, out_dir=out, resume=resume, progress=progress, callback=callback, provenance=provenance)


def _time_estimate(log: Log, total_steps: int) -> Callable[[dict[str, float]], None]:
    """A fit callback that says once, from the first logged record, how long the whole run will take."""
    said = []

    def callback(record: dict[str, float]) -> None:
        if not said and record["step"] >= 2:
            said.append(True)
            per_step = record["seconds"] / record["step"]
            _say(log, f"about {per_step * total_steps / 3600:.1f} h at the {per_step:.2f} s/step of the first "
                      f"{record['step']} steps")

    return callback


def evaluate_category(
    checkpoint: PathLike,
    data: PathLike,
    category: str,
    out: Optional[PathLike],
    config: Optional[EvalConfig] = None,
    *,
    dataset: str = "auto",
    threads: Optional[int] = None,
) -> EvalResult:
    """Evaluate a model file on ``category``'s test split at the model's own image size."""
    from .checkpoint import load_model
    from .data import open_dataset

    set_threads(threads)
    model = load_model(checkpoint)
    trained_on = (model.provenance or {}).get("category")
    if trained_on is not None and trained_on != category:
        warnings.warn(f"{checkpoint} was trained on category {trained_on!r} but is evaluated on {category!r}",
                      UserWarning, stacklevel=2)
    test = open_dataset(data, category, "test", image_size=model.image_size, dataset=dataset)
    return evaluate(model, test, config or EvalConfig(), out_dir=out, category=category)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n: the job takes every n-th category starting at i."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} must look like i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r} needs 0 <= i < n")
    return i, n


@dataclass
class BenchmarkResult:
    """What :func:`run_categories` returns: one result per category, the table and its file."""

    results: list[EvalResult]
    table: str
    summary: Path


def run_categories(
    data: PathLike,
    dataset: str,
    config: Optional[TrainConfig],
    out: PathLike,
    *,
    categories: Optional[Sequence[str]] = None,
    checkpoints: Optional[PathLike] = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    threads: Optional[int] = None,
    log: Log = print,
) -> BenchmarkResult:
    """Train (or, with ``checkpoints``, only evaluate) every category of a benchmark; one table.

    ``out/<category>/train`` holds each run (resumed when its checkpoint exists) and
    ``out/<category>/eval`` its report; ``out/benchmark.md`` / ``.json`` the table, with the
    paper's published means of ``dataset`` beside ours.
    """
    from .data import DATASET_CATEGORIES, category_kind

    if dataset not in DATASET_CATEGORIES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_CATEGORIES)}")
    known = list(DATASET_CATEGORIES[dataset])
    chosen = list(categories or known)
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise ValueError(f"unknown {dataset} categories {unknown}; valid: {', '.join(known)}")
    if checkpoints is None and config is None:
        raise ValueError("run_categories needs a TrainConfig to train with, or checkpoints= to evaluate")
    i, n = shard
    out = Path(out)
    results = []
    for category in chosen[i::n]:
        run = out / category
        if checkpoints is not None:
            from .checkpoint import find_model_file

            model_file = find_model_file(Path(checkpoints) / category)
        else:
            model_file = train_category(data, category, config, run / "train", kind=category_kind(category, dataset),
                                        resume=(run / "train" / "checkpoint.pt").is_file(), progress=progress,
                                        threads=threads, log=log).weights
        results.append(evaluate_category(model_file, data, category, run / "eval", threads=threads))
    table = summarize(results, PAPER_RESULTS.get(dataset))
    summary = write_summary(out, results, table, name="benchmark" if n == 1 else f"benchmark_shard{i}of{n}")
    return BenchmarkResult(results, table, summary)


@dataclass
class DemoResult:
    """What :func:`demo` returns: the demo's results and table, and the shipped models' on the same data."""

    results: list[EvalResult]
    table: str
    shipped: list[EvalResult] = field(default_factory=list)
    shipped_table: Optional[str] = None
    report: Optional[Path] = None
    steps: dict[str, int] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)


class DemoPlan(NamedTuple):
    """How :func:`demo` trains: ``workers`` categories at once, each with ``threads`` torch threads."""

    workers: int
    threads: Optional[int]

    def minutes_each(self, minutes: float, n_categories: int) -> float:
        """A category's share of the wall-clock budget ``minutes``: one round per ``workers`` categories."""
        rounds = -(-n_categories // self.workers)
        return minutes / rounds


def demo_plan(n_categories: int, device: str = "auto", threads: Optional[int] = None,
              workers: Optional[int] = None) -> DemoPlan:
    """The :class:`DemoPlan` of :func:`demo`: categories trained at once and torch threads of each.

    On a CPU with neither ``threads`` nor ``workers`` given, one process per core (at most one per
    category) and the cores shared out evenly: on 2 cores, two categories at once with 1 thread
    each, because torch's second thread adds less than a second process does (README, Threads). On
    a GPU, or when ``threads`` is given, one category at a time. ``workers`` sets the number of
    processes; their threads then default to an even share of the cores.
    """
    from .runtime import available_cores, resolve_device

    on_cpu = resolve_device(device).type == "cpu"
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers={workers} must be >= 1")
        workers = min(workers, n_categories)
        if threads is None and on_cpu:
            threads = max(1, available_cores() // workers)
        return DemoPlan(workers, threads)
    if threads is not None or not on_cpu:
        return DemoPlan(1, threads)
    cores = available_cores()
    workers = max(1, min(n_categories, cores))
    return DemoPlan(workers, max(1, cores // workers))


def _recipe_note(config: TrainConfig) -> str:
    """What a training log line adds when the recipe departs from the released one:
    ", reconstruction UNet frozen" when ``lr_unet`` is 0, ", N SegNet updates per batch" when
    ``seg_repeats`` is above 1, ", input_norm gain" for a normalised input, ", shade_prob P" when
    some synthetic anomalies are shades; "" otherwise."""
    note = ", reconstruction UNet frozen" if config.lr_unet == 0 else ""
    note += f", {config.seg_repeats} SegNet updates per batch" if config.seg_repeats > 1 else ""
    note += f", input_norm {config.input_norm}" if config.input_norm != "none" else ""
    return note + (f", shade_prob {config.shade_prob:g}" if config.shade_prob > 0 else "")


def demo_settings(device: str = "auto", preset: str = "tiny", init: Optional[str] = None, *,
                  amp: Optional[str] = None, lr_unet: Optional[float] = None) -> dict[str, Any]:
    """The training settings :func:`demo` adds to its preset (``tools/tune_demo.py`` uses them too).

    On a CPU: bfloat16 autocast where the CPU has native bfloat16 instructions
    (:func:`~diffad_core.runtime.cpu_has_native_bf16`), and, when the run starts from trained
    weights (``init``, default the preset's, is not "scratch"), ``lr_unet`` 0: the pretrained
    reconstruction UNet is kept and only the SegNet trains, at about 0.4x the cost of a joint step,
    so the demo's minutes buy ~2.3x the SegNet steps. Chosen on validation seeds 1 and 2 by a rule
    written before the runs: S = (image + pixel AUROC) / 2 rose from 85.16 to 86.94 (two training
    seeds each side, noise 0.69; docs/results.md, round 6). ``amp`` and ``lr_unet``, when given,
    replace those two choices. Then the speed settings that pay for the result
    (:func:`cpu_speedups`): with bf16 and the UNet frozen, the frozen UNet's forward passes run
    faster channels-last (round 10) and in OpenVINO (round 12), so the demo's minutes buy more
    SegNet steps. Nothing is added on a GPU, where the same minutes buy thousands of joint steps.
    """
    from .config import TRAIN_PRESETS
    from .runtime import cpu_has_native_bf16, resolve_device

    given = {k: v for k, v in (("amp", amp), ("lr_unet", lr_unet)) if v is not None}
    if resolve_device(device).type != "cpu":
        return given
    settings: dict[str, Any] = {"amp": "bf16"} if cpu_has_native_bf16() else {}
    start = init if init is not None else TRAIN_PRESETS.get(preset, {}).get("init", "scratch")
    if start != "scratch":
        settings["lr_unet"] = 0.0
    settings.update(given)
    base = TrainConfig.from_preset(preset, **settings)
    settings.update(cpu_speedups(device, base.amp, base.lr_unet))
    return settings


def cpu_speedups(device: str, amp: str, lr_unet: float) -> dict[str, Any]:
    """The speed settings that make a training run faster where they are not on by default: on a
    CPU, with bfloat16 autocast (``amp`` "bf16") and the reconstruction UNet frozen (``lr_unet``
    0), whose two forward passes are most of such a step. There ``channels_last`` (oneDNN's bf16
    convolutions run faster in that layout: a 64 px step 1.22x, a 128 px step 1.27x; a CPU step
    that trains the UNet gained nothing and float32 training was 0.90x; docs/results.md, round 10)
    and, where openvino is installed, ``unet_engine`` "openvino" (the frozen UNet's passes in
    OpenVINO, :mod:`diffad_core.engine`; round 12). ``{}`` otherwise. :func:`demo_settings` and
    ``diffad train`` / ``pretrain`` / ``benchmark`` follow it, unless the command line gives the
    setting."""
    from .engine import openvino_available
    from .runtime import resolve_device

    if resolve_device(device).type != "cpu" or amp != "bf16" or lr_unet != 0:
        return {}
    return {"channels_last": True, **({"unet_engine": "openvino"} if openvino_available() else {})}


def _layout_note(config: TrainConfig) -> str:
    """", channels-last" for a log line when the run uses that memory format, ", UNet in OpenVINO"
    when the frozen UNet runs there; "" for neither."""
    note = ", channels-last" if config.channels_last else ""
    return note + (", UNet in OpenVINO" if config.unet_engine == "openvino" else "")


def _demo_category(data: Path, category: str, config: TrainConfig, run: Path, eval_config: EvalConfig,
                   threads: Optional[int], progress: bool, log: Log) -> tuple[EvalResult, int, float]:
    """Train and evaluate one demo category (run in a worker process when categories train at once);
    returns the evaluation, the training steps and the training seconds."""
    if run.exists():
        shutil.rmtree(run)
    fitted = train_category(data, category, config, run / "train", progress=progress, threads=threads, log=log)
    evaluated = evaluate_category(fitted.weights, data, category, run / "eval", eval_config, threads=threads)
    return evaluated, fitted.steps, fitted.seconds


def demo(
    out: PathLike = "runs/demo",
    *,
    minutes: float = DEMO_MINUTES,
    preset: str = "tiny",
    categories: Optional[Sequence[str]] = None,
    device: str = "auto",
    init: Optional[str] = None,
    amp: Optional[str] = None,
    lr_unet: Optional[float] = None,
    threads: Optional[int] = None,
    workers: Optional[int] = None,
    progress: bool = True,
    log: Log = print,
) -> DemoResult:
    """The main job: write the mini benchmark, train every category from the pretrained start,
    evaluate, and evaluate the shipped fully trained models on the same test images.

    ``minutes`` is the wall-clock training budget of the whole demo. :func:`demo_plan` decides how
    many categories train at once (``workers`` processes of ``threads`` threads); each category
    gets :meth:`DemoPlan.minutes_each` of it (one round per ``workers`` categories). ``amp`` and
    ``lr_unet`` None take :func:`demo_settings`: on a CPU, bfloat16 where it is native and a frozen
    reconstruction UNet when the run starts from trained weights; the preset's values elsewhere.
    """
    import numpy as np

    from .data import MINI_CATEGORIES, make_mini_benchmark
    from .pretrained import PRETRAINED, pretrained_path

    chosen = list(categories or MINI_CATEGORIES)
    unknown = [c for c in chosen if c not in MINI_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown mini categories {unknown}; valid: {', '.join(MINI_CATEGORIES)}")
    out = Path(out)
    data = out / "data"
    if not (data / chosen[0] / "train").is_dir():
        t0 = time.perf_counter()
        make_mini_benchmark(data, seed=0)
        _say(log, f"mini benchmark written to {data} in {time.perf_counter() - t0:.1f} s")
    plan = demo_plan(len(chosen), device, threads, workers)
    n_workers, n_threads = plan
    overrides: dict[str, Any] = {"minutes": plan.minutes_each(minutes, len(chosen)), "device": device}
    if init is not None:
        overrides["init"] = init
    overrides.update(demo_settings(device, preset, init, amp=amp, lr_unet=lr_unet))
    config = TrainConfig.from_preset(preset, **overrides)
    eval_config = EvalConfig(device=device)
    jobs = [(data, c, config, out / "runs" / c, eval_config, n_threads) for c in chosen]
    if n_workers == 1:
        trained = [_demo_category(*job, progress=progress, log=log) for job in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        _say(log, f"training {n_workers} categories at once ({n_workers} processes x {n_threads} thread(s), "
                  f"{config.minutes:.2f} min each, amp {config.amp}"
                  f"{_layout_note(config)}{_recipe_note(config)})")
        worker_log = None if log is None else print  # a notebook's own log function may not pickle
        with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_demo_category, *job, progress=False, log=worker_log): job[1] for job in jobs}
            done = {}
            for future in as_completed(futures):
                done[futures[future]] = (r, steps, _) = future.result()
                _say(log, f"{r.category} done after {steps} steps: image AUROC {100 * r.metrics['image_auroc']:.1f}, "
                          f"pixel AUROC {100 * r.metrics['pixel_auroc']:.1f}, AUPRO {100 * r.metrics['aupro']:.1f}")
        trained = [done[c] for c in chosen]
    results = [r for r, _, _ in trained]
    table = summarize(results, None)
    report = write_summary(out, results, table, name="demo")
    _say(log, table)
    result = DemoResult(results, table, report=report, steps={c: n for c, (_, n, _) in zip(chosen, trained)},
                        train_seconds={c: sec for c, (_, _, sec) in zip(chosen, trained)})
    # the steps a wall-clock budget buys vary between machines and runs (1.1 to 1.7 s/step seen on 2 cores)
    _say(log, "training steps: " + ", ".join(
        f"{c} {result.steps[c]} ({result.train_seconds[c] / max(result.steps[c], 1):.2f} s/step)" for c in chosen))
    shipped = [c for c in chosen if c in PRETRAINED and pretrained_path(c).is_file()]
    if shipped:  # the same test sets through the fully trained models that ship with the package
        result.shipped = [evaluate_category(pretrained_path(c), data, c, out / "runs" / c / "eval-shipped", eval_config)
                          for c in shipped]
        result.shipped_table = summarize(result.shipped, None)
        write_summary(out, result.shipped, result.shipped_table, name="demo_shipped")
        _say(log, "shipped fully trained models (diffad_core.load_pretrained) on the same test images:")
        _say(log, result.shipped_table)
        mine = [r for r in results if r.category in shipped]
        for key, label in (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO")):
            a = float(np.nanmean([r.metrics[key] for r in mine]))
            b = float(np.nanmean([r.metrics[key] for r in result.shipped]))
            _say(log, f"mean {label}: demo {100 * a:.1f} vs shipped {100 * b:.1f} ({100 * (a - b):+.1f} points)")
    _say(log, f"report: {report}")
    return result


def pretrain_start(
    config: TrainConfig,
    out: PathLike,
    *,
    images: int = 6000,
    corpus_seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    threads: Optional[int] = None,
    log: Log = print,
) -> FitResult:
    """Train a category-agnostic starting point on the offline corpus (:func:`diffad_core.pretrain`)."""
    from .pretrained import describe_init
    from .pretraining import pretrain

    n_threads = set_threads(threads)
    _say(log, f"pretraining preset {config.preset} at {config.image_size} px on {images} corpus images "
              f"(init: {describe_init(config)}{_recipe_note(config)}{_layout_note(config)}, {n_threads} CPU thread(s)) -> {out}")
    return pretrain(config, num_images=images, corpus_seed=corpus_seed, out_dir=out, resume=resume, progress=progress)
