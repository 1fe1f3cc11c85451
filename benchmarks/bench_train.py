"""Benchmark: seconds per training step and peak memory, float32 eager vs our fast path.

What the figures stand for (one run, same data, same seed): the wall-clock time of one step of
:func:`diffad_core.fit` (anomaly synthesis on the device, the joint loss with its two eps_theta
calls and the SegNet, backward, both Adam steps), as the median over ``--steps`` timed steps
after ``--warmup`` untimed ones (which also pay ``torch.compile``). Steps are timed from the
``fit`` callback, called after each logged step (``log_every=1``; reading the loss waits for the
device, so each interval holds exactly one finished step, the same for both runs).

- ``fp32_step_s``: TrainConfig(amp="off"), contiguous tensors, eager, plain Adam.
- ``fast_step_s``: bf16 autocast on CUDA (``amp="auto"``), channels-last, fused Adam, and
  ``torch.compile`` on CUDA (``--no-compile`` turns it off); ``--grad-checkpointing`` adds
  activation checkpointing (less memory, more compute).
- ``peak_mem_gb`` / ``fp32_peak_mem_gb``: ``torch.cuda.max_memory_allocated`` of each run (GB =
  1e9 B). On the CPU they are null; ``cpu_peak_rss_gb`` is then the process's peak resident
  set size over the whole benchmark (both runs together, it never goes down).

    python benchmarks/bench_train.py --quick      # CPU: tiny preset, 64 px, batch 4, < 1 min
    python benchmarks/bench_train.py              # GPU: paper preset, 256 px, batch 16

Efficiency: ``step_gflop`` is the work of one fp32 step (forward + backward of the joint loss,
counted by ``torch.utils.flop_counter.FlopCounterMode``: convolutions, matmuls, attention), and
``fp32_gflop_s`` = step_gflop / fp32_step_s. On the CPU ``peak_gflop_s`` is an estimate, threads x
clock (``/proc/cpuinfo``) x fp32 FLOP per cycle and core (``--flop-per-cycle``; default from the
CPU flags: 64 with AVX-512 = two 512-bit FMA pipes, 32 with AVX2 + FMA, else 16), and
``efficiency`` = fp32_gflop_s / peak_gflop_s. The clock is the nominal one, so turbo can push the
ratio a little over what the estimate allows.
On the CPU ``cpu_bf16_step_s`` also times ``amp="bf16"`` (fast with AVX512-BF16 / AMX).

The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Optional

import torch

from common import device_name, emit, environment, peak_memory_gb, pick_device, process_peak_rss_gb, reset_peak_memory, sync

from diffad_core import TrainConfig, fit


def step_seconds(config: TrainConfig, images: torch.Tensor, warmup: int, device: torch.device) -> tuple[float, Optional[float]]:
    """(median seconds per step after ``warmup`` steps, peak CUDA memory in GB or None)."""
    stamps: list[float] = []
    reset_peak_memory(device)
    sync(device)
    fit(config, images, progress=False, callback=lambda record: stamps.append(time.perf_counter()))
    sync(device)
    intervals = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :])]
    return statistics.median(intervals), peak_memory_gb(device)


def step_gflop(config: TrainConfig, images: torch.Tensor) -> float:
    """GFLOP of one fp32 joint training step (forward + backward), counted on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    from diffad_core import AnomalySynthesizer, DiffusionAD, diffusionad_loss

    model = DiffusionAD.from_preset(config.preset, image_size=config.image_size).train()
    gen = torch.Generator().manual_seed(0)
    batch = images[: config.batch_size]
    syn = AnomalySynthesizer(kind="texture")(batch, generator=gen)
    with FlopCounterMode(display=False) as counter:
        out = diffusionad_loss(model.unet, model.segnet, model.schedule, syn.image, syn.mask, syn.label, generator=gen)
        out.total.backward()
    return counter.get_total_flops() / 1e9


def cpu_peak_gflop_s(threads: int, flop_per_cycle: Optional[int]) -> tuple[Optional[float], Optional[int]]:
    """(threads x clock (GHz, /proc/cpuinfo) x FLOP per cycle, the FLOP per cycle used); None if unknown."""
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
    except OSError:
        return None, flop_per_cycle
    mhz = [float(line.split(":")[1]) for line in lines if line.lower().startswith("cpu mhz")]
    flags = next((line.split(":")[1].split() for line in lines if line.startswith("flags")), [])
    if flop_per_cycle is None:
        flop_per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= set(flags) else 16
    return (round(threads * max(mhz) / 1000.0 * flop_per_cycle, 1) if mhz else None), flop_per_cycle


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset, 64 px, batch 4, 3 timed steps (CPU, < 1 min)")
    parser.add_argument("--preset", default=None, choices=["tiny", "small", "paper"], help="default: paper (quick: tiny)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 256 (quick: 64)")
    parser.add_argument("--batch", type=int, default=None, help="default: 16 (quick: 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 10, quick: 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default: 3 with compile, else 2; quick: 1)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile in the fast run (default: on for CUDA, off for CPU)")
    parser.add_argument("--grad-checkpointing", action="store_true", help="activation checkpointing in the fast run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flop-per-cycle", type=int, default=None, help="fp32 FLOP per cycle per core for the CPU peak (default: from the CPU flags)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    preset = args.preset or ("tiny" if args.quick else "paper")
    size = args.image_size or (64 if args.quick else 256)
    batch = args.batch or (4 if args.quick else 16)
    steps = args.steps or (3 if args.quick else 10)
    compile_ = args.compile if args.compile is not None else device.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else (3 if compile_ else 2))

    gen = torch.Generator().manual_seed(args.seed)
    images = torch.rand(2 * batch, 3, size, size, generator=gen)
    common = dict(preset=preset, image_size=size, batch_size=batch, steps=warmup + steps + 1, log_every=1,
                  checkpoint_every=10**9, device=str(device), seed=args.seed)
    fp32_cfg = TrainConfig(**common, amp="off", channels_last=False, compile=False, fused_adam="off")
    fast_cfg = TrainConfig(**common, amp="auto", channels_last=True, compile=compile_, fused_adam="on",
                           grad_checkpointing=args.grad_checkpointing)

    fp32_s, fp32_mem = step_seconds(fp32_cfg, images, warmup, device)
    fast_s, fast_mem = step_seconds(fast_cfg, images, warmup, device)
    bf16_s = step_seconds(TrainConfig(**common, amp="bf16"), images, warmup, device)[0] if device.type == "cpu" else None
    gflop = step_gflop(fp32_cfg, images)
    peak, per_cycle = cpu_peak_gflop_s(torch.get_num_threads(), args.flop_per_cycle) if device.type == "cpu" else (None, None)

    result: dict[str, Any] = {
        "benchmark": "train",
        "device": device_name(device),
        "preset": preset,
        "image_size": size,
        "batch": batch,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "fp32_step_s": round(fp32_s, 4),
        "fast_step_s": round(fast_s, 4),
        "speedup": round(fp32_s / fast_s, 2),
        "cpu_bf16_step_s": round(bf16_s, 4) if bf16_s is not None else None,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "step_gflop": round(gflop, 1),
        "fp32_gflop_s": round(gflop / fp32_s, 1),
        "peak_gflop_s": peak,
        "peak_flop_per_cycle": per_cycle,
        "efficiency": round(gflop / fp32_s / peak, 3) if peak else None,
        "peak_mem_gb": fast_mem,
        "fp32_peak_mem_gb": fp32_mem,
        "cpu_peak_rss_gb": process_peak_rss_gb() if device.type != "cuda" else None,
        "fast_amp": "bf16" if device.type == "cuda" else "float32",
        "fast_channels_last": True,
        "fast_fused_adam": True,
        "fast_compile": bool(compile_),
        "fast_grad_checkpointing": bool(args.grad_checkpointing),
        **environment(),
    }
    print(
        f"{preset} {size}px batch {batch} on {result['device']}: fp32 {fp32_s:.3f} s/step, "
        f"fast {fast_s:.3f} s/step (x{result['speedup']}), peak memory {fp32_mem} -> {fast_mem} GB"
    )
    return emit(result)


if __name__ == "__main__":
    main()
