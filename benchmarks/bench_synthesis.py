"""Throughput of the batched AnomalySynthesizer against a per-sample NumPy implementation.

The yardstick is the same recipe written the way a per-sample ``Dataset.__getitem__`` would do
it (as the released code does, with imgaug): a Python loop over samples, NumPy Perlin noise,
PIL rotation, PIL / NumPy for the ten augmentations. Both sides use the same
settings (kind="object", p_anomaly=0.5, 3 augmentations) and the same texture bank; bank
creation and one warm-up batch are excluded from the timings.

Usage:
    python benchmarks/bench_synthesis.py            # 256 x 256, batch 16 (20 batches) and 64, train steps
    python benchmarks/bench_synthesis.py --quick    # 3 batches (1 at batch 64)
    python benchmarks/bench_synthesis.py --train-steps tiny   # skip the paper@256 step (slow on a CPU)
    python benchmarks/bench_synthesis.py --device cuda   # also time the batched version on CUDA
    python benchmarks/bench_synthesis.py --stages   # also where the time goes, stage by stage

The last line printed is one JSON object:

- ``batched_img_s``, ``per_sample_img_s``, ``ratio`` (= batched / per-sample) at ``batch``, and
  the same at ``large_batch`` (``*_large``), both sides on the CPU with ``threads`` torch threads
  (default 1, so that neither side gets more cores than the other);
- ``tiny64_*``: one ``tiny`` training step at 64 px, batch 16 (``diffusionad_loss`` + backward,
  best of 2) and the synthesizer on the same batch size; ``tiny64_synthesis_share`` =
  synthesis / (synthesis + step), the fraction of a training step spent making anomalies;
- ``paper256_*`` (with ``--train-steps all``): ONE ``paper`` step at 256 px with batch 2, scaled
  per image, against the synthesizer's time per image at batch 16; ``paper256_note`` says so;
- ``gpu_img_s`` when the batched version also ran on CUDA;
- ``stage_ms_per_image`` (with ``--stages``): {stage: [batched, per-sample]} milliseconds per
  image for each augmentation, the Perlin region and the grid shuffle (batch 8, process time).

The training steps and the synthesis are timed in the same run, on the same threads, so the
shares hold on a loaded machine even when the absolute numbers move.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffad_core.synthesis import AnomalySynthesizer  # noqa: E402

# --------------------------------------------------------------------------- per-sample yardstick


def np_perlin(height: int, width: int, res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Classic 2D Perlin noise for one image: (H, W) float32 in [-1, 1]."""
    angles = rng.uniform(0, 2 * np.pi, (res[0] + 1, res[1] + 1))
    grad = np.stack([np.cos(angles), np.sin(angles)], -1)
    u = np.arange(height) * res[0] / height
    v = np.arange(width) * res[1] / width
    i, j = np.floor(u).astype(int), np.floor(v).astype(int)
    f, g = (u - i)[:, None], (v - j)[None, :]

    def corner(a: int, b: int) -> np.ndarray:
        gr = grad[(i + a)[:, None], (j + b)[None, :]]
        return gr[..., 0] * (f - a) + gr[..., 1] * (g - b)

    fade = lambda t: t * t * t * (t * (t * 6 - 15) + 10)  # noqa: E731
    s, t = fade(f), fade(g)
    top = corner(0, 0) * (1 - s) + corner(1, 0) * s
    bottom = corner(0, 1) * (1 - s) + corner(1, 1) * s
    return (math.sqrt(2) * (top * (1 - t) + bottom * t)).astype(np.float32)


def np_region(fg: np.ndarray, rng: np.random.Generator, max_tries: int = 50) -> np.ndarray:
    height, width = fg.shape
    res = (2 ** int(rng.integers(0, 6)), 2 ** int(rng.integers(0, 6)))
    region = np.zeros_like(fg)
    for _ in range(max_tries):
        noise = np_perlin(height, width, res, rng)
        # PIL rotates float images in C (bilinear, zero fill), ~3x faster than scipy.ndimage.rotate
        noise = np.asarray(Image.fromarray(noise, mode="F").rotate(rng.uniform(-90, 90), resample=Image.Resampling.BILINEAR))
        region = ((noise > 0.5) & (fg > 0.5)).astype(np.float32)
        if region.any():
            break
    return region


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def np_hue_saturation(x: np.ndarray, dh: float, ds: float) -> np.ndarray:
    """Shift hue by dh turns and saturation by ds in HSV (vectorised; matplotlib's is ~3x slower)."""
    value, chroma = x.max(-1), x.max(-1) - x.min(-1)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    safe = np.maximum(chroma, 1e-12)
    hue = np.where(value == r, (g - b) / safe, np.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = ((np.where(chroma > 0, hue, 0.0) / 6 + dh) % 1.0) * 6
    vs = value * np.clip(chroma / np.maximum(value, 1e-12) + ds, 0, 1)
    channels = [value - vs * np.clip(np.minimum(k, 4 - k), 0, 1) for k in ((hue + m) % 6 for m in (5, 3, 1))]
    return np.stack(channels, -1).astype(np.float32)


def np_augment(x: np.ndarray, op: str, rng: np.random.Generator) -> np.ndarray:
    """One augmentation on an (H, W, 3) float32 image in [0, 1]."""
    if op == "gamma":
        return np.power(x, rng.uniform(0.5, 2.0, 3).astype(np.float32))
    if op == "brightness":
        luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(x + (luma * (rng.uniform(0.8, 1.2) - 1) + rng.uniform(-30, 30) / 255)[..., None], 0, 1)
    if op == "sharpness":
        return np.asarray(ImageEnhance.Sharpness(Image.fromarray(_u8(x))).enhance(rng.uniform(0, 2)), np.float32) / 255
    if op == "hue_saturation":
        return np_hue_saturation(x, rng.uniform(-50, 50) / 255, rng.uniform(-50, 50) / 255)
    if op == "solarize":
        apply, threshold = rng.uniform() < 0.5, rng.uniform(32, 128) / 255
        return np.where(x >= threshold, 1 - x, x) if apply else x
    if op == "posterize":
        return np.asarray(ImageOps.posterize(Image.fromarray(_u8(x)), int(rng.integers(1, 9))), np.float32) / 255
    if op == "invert":
        return 1 - x
    if op == "autocontrast":
        cutoff = int(rng.integers(0, 21))
        return np.asarray(ImageOps.autocontrast(Image.fromarray(_u8(x)), cutoff=cutoff), np.float32) / 255
    if op == "equalize":
        return np.asarray(ImageOps.equalize(Image.fromarray(_u8(x))), np.float32) / 255
    if op == "rotate":
        img = Image.fromarray(_u8(x)).rotate(rng.uniform(-45, 45), resample=Image.Resampling.BILINEAR)
        return np.asarray(img, np.float32) / 255
    raise ValueError(op)


OPS = ("gamma", "brightness", "sharpness", "hue_saturation", "solarize", "posterize", "invert",
       "autocontrast", "equalize", "rotate")


def np_shuffle_grid(x: np.ndarray, rng: np.random.Generator, grid: int = 8) -> np.ndarray:
    height, width = x.shape[:2]
    th, tw = height // grid, width // grid
    rows = np.arange(height)
    cols = np.arange(width)
    rows[: grid * th] = (rng.permutation(grid)[:, None] * th + np.arange(th)).reshape(-1)
    cols[: grid * tw] = (rng.permutation(grid)[:, None] * tw + np.arange(tw)).reshape(-1)
    return x[rows][:, cols]


def np_synthesize_one(x: np.ndarray, bank: np.ndarray, rng: np.random.Generator):
    """The recipe for one (H, W, 3) float32 image: (augmented, mask (H, W, 1), label)."""
    if rng.uniform() >= 0.5:
        return x, np.zeros(x.shape[:2] + (1,), np.float32), 0.0
    region = np_region(np.ones(x.shape[:2], np.float32), rng)
    use_self = rng.uniform() >= 0.5
    source = x if use_self else bank[rng.integers(0, len(bank))].astype(np.float32) / 255
    for op in rng.permutation(len(OPS))[:3]:
        source = np_augment(source, OPS[op], rng)
    if use_self:
        source = np_shuffle_grid(source, rng)
    beta = rng.uniform(0.2, 0.8)
    m = region[..., None]
    out = x * (1 - m) + (1 - beta) * source * m + beta * x * m
    return out.astype(np.float32), m, float(region.any())


def per_sample_batch(images: np.ndarray, bank: np.ndarray, rng: np.random.Generator):
    results = [np_synthesize_one(img, bank, rng) for img in images]
    return np.stack([r[0] for r in results]), np.stack([r[1] for r in results]), np.array([r[2] for r in results])


# --------------------------------------------------------------------------- timing


def demo_images(batch: int, size: int, seed: int) -> torch.Tensor:
    """Object-like images: a shaded, striped disc on a dark background, (B, 3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.32 * size) ** 2).float()
    colour = torch.rand(batch, 3, 1, 1, generator=g) * 0.6 + 0.3
    stripes = 0.1 * torch.sin(xx / (size / 40))[None, None]
    return 0.08 * (1 - disc) + (colour + stripes).clamp(0, 1) * disc


def time_batches(fn, batches: list, timer=time.perf_counter) -> float:
    """Images per second of fn over the batches (after one warm-up call)."""
    fn(batches[0])
    start = timer()
    for b in batches:
        fn(b)
    elapsed = timer() - start
    return sum(len(b) for b in batches) / elapsed


def side_by_side(size: int, batch: int, n_batches: int, timer) -> tuple[float, float]:
    """(batched img/s, per-sample img/s) on the CPU, same images, settings and texture bank."""
    synth = AnomalySynthesizer(kind="object", p_anomaly=0.5)
    batches = [demo_images(batch, size, seed) for seed in range(n_batches)]
    bank = synth.texture_bank(size, size, "cpu").permute(0, 2, 3, 1).numpy()  # same textures for both
    gen = torch.Generator().manual_seed(0)
    batched = time_batches(lambda b: synth(b, generator=gen), batches, timer)
    rng = np.random.default_rng(0)
    np_batches = [b.permute(0, 2, 3, 1).numpy() for b in batches]
    per_sample = time_batches(lambda b: per_sample_batch(b, bank, rng), np_batches, timer)
    return batched, per_sample


def train_step_seconds(preset: str, size: int, batch: int, repeats: int) -> float:
    """Seconds of one training step (diffusionad_loss + backward, no optimizer) at this size."""
    from diffad_core.losses import diffusionad_loss
    from diffad_core.model import DiffusionAD

    model = DiffusionAD.from_preset(preset, image_size=size)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    mask = (torch.rand(batch, 1, size, size, generator=g) > 0.7).float()
    label = mask.flatten(1).amax(1)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = diffusionad_loss(model.unet, model.segnet, model.schedule, x, mask, label, generator=g)
        loss.total.backward()

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def synthesis_seconds(size: int, batch: int, n_batches: int) -> float:
    """Seconds per batch of the batched synthesizer at this size (CPU, after a warm-up)."""
    synth = AnomalySynthesizer(kind="object", p_anomaly=0.5)
    batches = [demo_images(batch, size, seed) for seed in range(n_batches)]
    gen = torch.Generator().manual_seed(0)
    return batch / time_batches(lambda b: synth(b, generator=gen), batches)


def stage_costs(size: int, n: int = 8, repeats: int = 5) -> dict[str, list[float]]:
    """Milliseconds per image of each stage, batched (n images at once) and per-sample, CPU.

    The ten augmentations, the Perlin region and the grid shuffle, on the same n images; the
    best of ``repeats`` timings of three calls each (process time, so another busy process or
    a page-fault burst moves it less). Returns {stage: [batched_ms, per_sample_ms]}.
    """
    from diffad_core import perlin, synthesis, textures

    x = demo_images(n, size, 0)
    xn = x.permute(0, 2, 3, 1).numpy().copy()
    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)

    def per_image(fn) -> float:
        fn()
        best = math.inf
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(3):
                fn()
            best = min(best, (time.process_time() - start) / 3)
        return 1000.0 * best / n

    ones, ones_np = torch.ones(n, 1, size, size), np.ones((size, size), np.float32)
    stages = {name: (lambda op=synthesis._OPS[name]: op(x, gen), lambda name=name: [np_augment(im, name, rng) for im in xn])
              for name in OPS}
    stages["perlin_region"] = (lambda: perlin.perlin_mask(ones, generator=gen), lambda: [np_region(ones_np, rng) for _ in range(n)])
    stages["grid_shuffle"] = (lambda: textures.shuffle_grid(x, generator=gen), lambda: [np_shuffle_grid(im, rng) for im in xn])
    return {name: [round(per_image(ours), 3), round(per_image(ref), 3)] for name, (ours, ref) in stages.items()}


def _with_time_limit(seconds: int, fn):
    """fn() or TimeoutError after ``seconds`` (SIGALRM: Unix, main thread)."""
    import signal

    def expire(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 batches instead of 20 (1 at the large batch)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="cpu: CPU only; cuda/auto: also time the batched version on CUDA (auto: if available)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--large-batch", type=int, default=64, help="second batch size timed side by side (0: skip)")
    parser.add_argument("--batches", type=int, default=None, help="override the number of timed batches")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, like the NumPy side)")
    parser.add_argument("--timer", default="wall", choices=["wall", "process"],
                        help="wall clock (default) or this process's CPU time (steadier on a shared machine; "
                        "CPU-side only, meaningful with --threads 1)")
    parser.add_argument("--train-steps", default="all", choices=["none", "tiny", "all"],
                        help="time training steps for the synthesis share: tiny@64 (batch 16), "
                        "all = also paper@256 (one step, batch 2, skipped if it takes > 60 s)")
    parser.add_argument("--stages", action="store_true",
                        help="also time each stage per image (ten augmentations, Perlin region, grid shuffle), both sides")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but torch.cuda.is_available() is False")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    torch.set_num_threads(args.threads)
    n_batches = args.batches or (3 if args.quick else 20)
    size, batch = args.image_size, args.batch
    timer = time.perf_counter if args.timer == "wall" else time.process_time

    batched, per_sample = side_by_side(size, batch, n_batches, timer)
    print(f"batch {batch}: batched (torch, cpu, {args.threads} thread(s)): {batched:8.1f} img/s", flush=True)
    print(f"batch {batch}: per-sample (numpy/PIL loop):          {per_sample:8.1f} img/s", flush=True)
    result = {
        "benchmark": "synthesis",
        "device": "cpu",
        "image_size": size,
        "batch": batch,
        "batches": n_batches,
        "threads": args.threads,
        "timer": args.timer,
        "batched_img_s": round(batched, 1),
        "per_sample_img_s": round(per_sample, 1),
        "ratio": round(batched / per_sample, 2),
    }
    if args.large_batch:
        large_batches = max(1, (n_batches * batch) // (2 * args.large_batch)) if args.batches is None else n_batches
        big, big_ref = side_by_side(size, args.large_batch, large_batches, timer)
        print(f"batch {args.large_batch}: batched {big:8.1f} img/s, per-sample {big_ref:8.1f} img/s", flush=True)
        result.update({
            "large_batch": args.large_batch,
            "large_batches": large_batches,
            "batched_img_s_large": round(big, 1),
            "per_sample_img_s_large": round(big_ref, 1),
            "ratio_large": round(big / big_ref, 2),
        })
    if args.stages:
        stages = stage_costs(size)
        print("stage (ms per image, batch 8)   batched  per-sample", flush=True)
        for name, (ours, ref) in stages.items():
            print(f"  {name:28s} {ours:8.3f}  {ref:8.3f}", flush=True)
        result["stage_ms_per_image"] = stages
    if args.train_steps != "none":
        # synthesis share of one training step, both measured here, same threads (wall clock)
        synth_tiny = synthesis_seconds(64, 16, max(2, n_batches))
        step_tiny = train_step_seconds("tiny", 64, 16, repeats=2)
        result.update({
            "tiny64_batch": 16,
            "tiny64_step_s": round(step_tiny, 4),
            "tiny64_synthesis_s": round(synth_tiny, 4),
            "tiny64_synthesis_share": round(synth_tiny / (synth_tiny + step_tiny), 4),
        })
        print(f"tiny@64, batch 16: step {step_tiny:.3f} s, synthesis {synth_tiny * 1000:.1f} ms", flush=True)
    if args.train_steps == "all":
        paper_batch = 2
        result["paper256_step_batch"] = paper_batch
        try:
            step_paper = _with_time_limit(60, lambda: train_step_seconds("paper", 256, paper_batch, repeats=1))
        except TimeoutError:
            result["paper256_note"] = f"skipped: one paper@256 step at batch {paper_batch} took > 60 s here"
            print(result["paper256_note"], flush=True)
        else:
            per_image = step_paper / paper_batch
            synth_paper = synthesis_seconds(256, 16, max(2, n_batches)) / 16  # per image
            result.update({
                "paper256_step_s_per_image": round(per_image, 3),
                "paper256_synthesis_s_per_image": round(synth_paper, 5),
                "paper256_synthesis_share": round(synth_paper / (synth_paper + per_image), 5),
                "paper256_note": f"ONE step at batch {paper_batch}, per image = step / {paper_batch}; "
                "synthesis per image at batch 16",
            })
            print(f"paper@256: step {per_image:.2f} s/image, synthesis {synth_paper * 1000:.2f} ms/image", flush=True)
    if use_cuda:
        batches = [demo_images(batch, size, seed) for seed in range(n_batches)]
        cuda_batches = [b.cuda() for b in batches]
        synth_gpu = AnomalySynthesizer(kind="object", p_anomaly=0.5)
        gen_gpu = torch.Generator(device="cuda").manual_seed(0)

        def run_gpu(b: torch.Tensor) -> None:
            synth_gpu(b, generator=gen_gpu)
            torch.cuda.synchronize()

        result["gpu_img_s"] = round(time_batches(run_gpu, cuda_batches), 1)
        result["gpu_name"] = torch.cuda.get_device_name(0)
        print(f"batched (torch, cuda):                 {result['gpu_img_s']:8.1f} img/s", flush=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
