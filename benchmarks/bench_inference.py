"""Benchmark: inference speed of the full DiffusionAD pipeline, released-style vs our fast path.

What the figures stand for (all measured in one run, same weights, same images):

- ``released_style_img_s``: images/s of :meth:`DiffusionAD.predict` (two eps_theta calls +
  SegNet + top-k score) the way the released evaluation runs it: float32, eager, batch 1, the
  anomaly map copied to the host after every image (one host sync per image).
- ``fast_img_s``: images/s of :func:`diffad_core.predict_split` with our settings: batches of
  ``--batch``, bf16 autocast on CUDA, channels-last, ``torch.compile`` with ``--compile``, no
  host sync inside the loop (maps copied once at the end). On CUDA, predict_split runs one
  untimed warm-up batch first (which also pays the compilation).
- ``onestep_vs_ddpm1000_ratio``: time of iterative DDPM reconstruction from t = T - 1 (1000
  UNet calls, ancestral steps) divided by the time of one norm-guided one-step reconstruction
  (2 UNet calls), both float32 eager batch 1; ``onestep_vs_ddpm_ts_ratio`` the same from
  t_s = 200 (201 calls), the cheaper iterative baseline. When fewer DDPM steps are measured
  (``--ddpm-steps``, the default on CPU), the time per step is extrapolated linearly and the JSON
  says ``"ddpm_extrapolated": true``.

The paper reports 23.5 images/s (its GPU, its batch). Usage:

    python benchmarks/bench_inference.py --quick                   # CPU, tiny preset, < 1 min
    python benchmarks/bench_inference.py --compile                 # GPU: paper preset, 256 px
    python benchmarks/bench_inference.py --preset small --image-size 128 --n-images 32

The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any, Optional

import torch

from common import device_name, emit, environment, pick_device, sync, timed

from diffad_core import DiffusionAD, EvalConfig, SplitTensors, iterative_reconstruct, predict_split

T_S, T_B = 200, 400


def synthetic_split(n: int, size: int, seed: int) -> SplitTensors:
    """n random uint8 test images (half labelled anomalous, with a square mask); only speed matters."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    masks = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    masks[n // 2 :, :, size // 4 : size // 2, size // 4 : size // 2] = 1
    labels = torch.tensor([0] * (n // 2) + [1] * (n - n // 2))
    return SplitTensors(
        images=images, masks=masks, labels=labels, foreground=torch.ones_like(masks),
        paths=[f"synthetic/{i:04d}.png" for i in range(n)], defects=["good" if int(y) == 0 else "square" for y in labels],
    )


def released_style(model: DiffusionAD, split: SplitTensors, device: torch.device, n: int, seed: int) -> float:
    """Images/s of float32 eager predict, one image at a time, map to the host after each."""
    model = model.to(device).eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    images = split.images[:n]

    def one(i: int) -> None:
        x = images[i : i + 1].to(device).float() / 255.0
        out = model.predict(x, t_s=T_S, t_b=T_B, generator=gen)
        out.anomaly_map.cpu()  # the released loop moves every map to the host at once
        out.score.cpu()

    one(0)  # warm-up (kernel selection, allocator)
    sync(device)
    start = time.perf_counter()
    for i in range(n):
        one(i)
    sync(device)
    return n / (time.perf_counter() - start)


def ddpm_ratio(model: DiffusionAD, device: torch.device, size: int, steps: Optional[int], seed: int) -> dict[str, Any]:
    """Times of one-step norm-guided reconstruction and iterative DDPM (float32, eager, batch 1)."""
    model = model.to(device).eval()
    T = model.schedule.num_train_timesteps
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.rand(1, 3, size, size, generator=gen, device=device)

    def onestep() -> None:
        with torch.inference_mode():
            model.reconstruct(x, t_s=T_S, t_b=T_B, generator=gen)

    def ddpm(n_calls: int) -> None:
        with torch.inference_mode():
            iterative_reconstruct(model.unet, model.schedule, model.to_model_space(x), n_calls - 1, generator=gen)

    onestep()  # warm-up
    onestep_s = timed(onestep, device, repeat=3)
    full = {"ddpm1000": T, "ddpm_ts": T_S + 1}
    out: dict[str, Any] = {"onestep_s": round(onestep_s, 6)}
    if steps is None:  # measure both iterative baselines in full
        for key, n_calls in full.items():
            out[f"{key}_s"] = round(timed(lambda: ddpm(n_calls), device), 4)
        out["ddpm_extrapolated"] = False
        out["ddpm_steps_measured"] = T + T_S + 1
    else:  # measure `steps` ancestral steps, extrapolate the per-call time linearly
        ddpm(1)  # warm-up
        per_call = timed(lambda: ddpm(steps), device, repeat=2) / steps
        for key, n_calls in full.items():
            out[f"{key}_s"] = round(per_call * n_calls, 4)
        out["ddpm_extrapolated"] = True
        out["ddpm_steps_measured"] = steps
        out["ddpm_s_per_call"] = round(per_call, 6)
    out["onestep_vs_ddpm1000_ratio"] = round(out["ddpm1000_s"] / onestep_s, 1)
    out["onestep_vs_ddpm_ts_ratio"] = round(out["ddpm_ts_s"] / onestep_s, 1)
    out["ddpm1000_unet_calls"] = T
    out["ddpm_ts_unet_calls"] = T_S + 1
    return out


def onnxruntime_row(model: DiffusionAD, images: torch.Tensor, batch: int, seed: int, device: torch.device) -> dict[str, Any]:
    """img/s of the exported one-step graph in onnxruntime (CPU provider) beside torch eager float32
    on the CPU, same batches, same noises, one after the other; {"onnxruntime_img_s": None} without
    the [export] extra."""
    try:
        import onnxruntime as ort

        from diffad_core.export import OneStepGraph, export_onnx
    except ImportError:
        return {"onnxruntime_img_s": None, "onnxruntime_note": "onnxruntime not installed (pip install diffad_core[export])"}
    import tempfile

    cpu_model = copy.deepcopy(model).float().eval().cpu()
    graph = OneStepGraph(cpu_model).eval()
    x = images.float().div(255.0)
    g = torch.Generator().manual_seed(seed)
    noises = [(torch.randn(x[i:i + batch].shape, generator=g), torch.randn(x[i:i + batch].shape, generator=g))
              for i in range(0, x.shape[0], batch)]
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(cpu_model, f"{tmp}/m.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run_onnx() -> None:
            for (ns, nb), i in zip(noises, range(0, x.shape[0], batch)):
                session.run(None, {"images": x[i:i + batch].numpy(), "noise_s": ns.numpy(), "noise_b": nb.numpy()})

        def run_torch() -> None:
            with torch.inference_mode():
                for (ns, nb), i in zip(noises, range(0, x.shape[0], batch)):
                    graph(x[i:i + batch], ns, nb)

        run_onnx(), run_torch()  # warm-up
        t_onnx = timed(run_onnx, torch.device("cpu"))
        t_torch = timed(run_torch, torch.device("cpu"))
    n = x.shape[0]
    return {"onnxruntime_img_s": round(n / t_onnx, 3), "torch_eager_cpu_img_s": round(n / t_torch, 3),
            "onnxruntime_vs_torch": round(t_torch / t_onnx, 2), "onnxruntime_threads": torch.get_num_threads()}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset, 64 px, batch 4, 8 images (CPU, < 1 min)")
    parser.add_argument("--preset", default=None, choices=["tiny", "small", "paper"], help="default: paper (quick: tiny)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 256 (quick: 64)")
    parser.add_argument("--batch", type=int, default=None, help="fast-path batch size (default: 16, quick: 4)")
    parser.add_argument("--n-images", type=int, default=None, help="images in the fast run (default: 128, quick: 8)")
    parser.add_argument("--n-released", type=int, default=None, help="images in the batch-1 run (default: 32, quick: 4)")
    parser.add_argument("--ddpm-steps", type=int, default=None,
                        help="DDPM steps to measure and extrapolate (default: all 1000 + 201 on CUDA, 3 on CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks in the fast run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    preset = args.preset or ("tiny" if args.quick else "paper")
    size = args.image_size or (64 if args.quick else 256)
    batch = args.batch or (4 if args.quick else 16)
    n_images = args.n_images or (2 * batch if args.quick else 8 * batch)
    n_images = max(batch, n_images - n_images % batch)  # whole batches: one compiled shape
    n_released = args.n_released or (4 if args.quick else 32)
    ddpm_steps = args.ddpm_steps if args.ddpm_steps is not None else (None if device.type == "cuda" else 3)

    torch.manual_seed(args.seed)
    model = DiffusionAD.from_preset(preset, image_size=size)
    split = synthetic_split(max(n_images, n_released), size, args.seed)

    ratio = ddpm_ratio(model, device, size, ddpm_steps, args.seed)
    released_img_s = released_style(model, split, device, n_released, args.seed)
    amp = "auto" if device.type == "cuda" else "off"  # "auto" = bf16 autocast on CUDA
    cfg = EvalConfig(batch_size=batch, seed=args.seed, device=str(device), amp=amp, channels_last=True,
                     compile=args.compile, num_figures=0)
    fast_split = SplitTensors(*(f[:n_images] for f in split[:6]), kind=split.kind)
    pred = predict_split(copy.deepcopy(model), fast_split, cfg)

    onnx_row = onnxruntime_row(model, fast_split.images, batch, args.seed, device)

    result: dict[str, Any] = {
        "benchmark": "inference",
        "device": device_name(device),
        "preset": preset,
        "image_size": size,
        "batch": batch,
        "n_images": n_images,
        "n_released": n_released,
        "released_style_img_s": round(released_img_s, 3),
        "fast_img_s": round(pred.images_per_second, 3),
        "speedup": round(pred.images_per_second / released_img_s, 2),
        "fast_amp": "bf16" if device.type == "cuda" else "float32",
        "fast_channels_last": True,
        "fast_compile": bool(args.compile),
        **ratio,
        **onnx_row,
        "paper_img_s": 23.5,
        **environment(),
    }
    print(
        f"{preset} {size}px on {result['device']}: released-style {released_img_s:.2f} img/s, "
        f"fast (batch {batch}) {pred.images_per_second:.2f} img/s; one-step vs DDPM-1000 "
        f"x{ratio['onestep_vs_ddpm1000_ratio']}{' (extrapolated)' if ratio['ddpm_extrapolated'] else ''}"
        + (f"; onnxruntime {onnx_row['onnxruntime_img_s']:.2f} vs torch eager {onnx_row['torch_eager_cpu_img_s']:.2f} img/s (CPU)"
           if onnx_row.get("onnxruntime_img_s") else "")
    )
    return emit(result)


if __name__ == "__main__":
    main()
