"""Where and how the networks run - one rule shared by training, evaluation, prediction and the course.

* **Device**: :func:`resolve_device` turns ``"auto"`` into CUDA when a GPU is visible, else CPU.
* **Threads**: :func:`set_threads` sets torch's intra-op threads (None keeps torch's default).
  ``diffad_core`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported, so several threads are
  never the 5x-slower case on a small machine shared with another busy process (README, Threads).
* **Autocast** (``amp``): ``"off"`` is float32; ``"bf16"`` is bfloat16 autocast on any device (CPU
  and CUDA both support it); ``"auto"`` is bf16 on CUDA and float32 elsewhere. Training autocasts
  the whole joint loss; inference autocasts only the two UNet passes and computes the SegNet, the
  anomaly map and the image score in float32 (:meth:`diffad_core.model.DiffusionAD.predict`).
* **Compile**: :func:`compile_networks` returns compiled callables for the two networks and leaves
  the model untouched. The SegNet's ``forward_logits`` (which the training loss calls) is compiled
  too: a ``torch.compile`` wrapper hands attribute lookups to the uncompiled module, so compiling
  the module alone would run the loss's SegNet pass uncompiled.
* **Memory format**: :func:`memory_format` (channels-last helps convolutions on GPUs).
* **Processes**: :func:`distributed` joins the ``torchrun`` process group; :func:`rng_state` /
  :func:`set_rng_state` save and restore the global RNGs in training checkpoints.
* **Random draws**: :func:`randn` draws on the generator's own device, in float32, and moves the
  result once, so a seeded CPU generator gives the same noise whatever device the model is on.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .config import AMP_MODES, AmpMode

__all__ = [
    "AMP_MODES",
    "AmpMode",
    "Networks",
    "resolve_device",
    "set_threads",
    "available_cores",
    "cpu_has_native_bf16",
    "use_bf16",
    "autocast",
    "compile_networks",
    "memory_format",
    "randn",
    "distributed",
    "rng_state",
    "set_rng_state",
]



def resolve_device(name: Union[str, torch.device] = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; anything else is checked and returned."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a valid torch device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu")
    return device


def set_threads(threads: Optional[int] = None) -> int:
    """Set torch's intra-op thread count and return it; None keeps torch's default (all cores)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads} must be >= 1")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bf16 autocast pays.

    Measured on the 2-core AVX512-BF16 machine of the README: a tiny@64 training step of batch 32
    on one thread, 2.9 s in float32 and 2.5 s in bf16. Without these instructions bf16 is emulated
    and slower than float32.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def use_bf16(amp: str, device: torch.device) -> bool:
    """Whether ``amp`` means bfloat16 autocast on ``device`` (see the module docstring)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp={amp!r} is unknown; choose one of {AMP_MODES}")
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``enabled``, else a context that changes nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class _CompiledSegNet:
    """A compiled SegNet whose ``forward_logits`` is compiled as well (see the module docstring)."""

    def __init__(self, segnet: nn.Module, compile_fn: Callable[..., Any]) -> None:
        self.module = segnet
        self.forward_logits = compile_fn(segnet.forward_logits)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_logits(x))


class Networks(NamedTuple):
    """The callables that run eps_theta and the SegNet (the model's own modules, or compiled ones)."""

    unet: Callable[..., Tensor]
    segnet: Callable[..., Tensor]


def compile_networks(model: Any, *, enabled: bool = True, **compile_kwargs: Any) -> Networks:
    """``torch.compile`` the model's UNet and SegNet without changing ``model``.

    With ``enabled=False`` the model's own modules are returned, so callers need no branch.
    ``compile_kwargs`` go to ``torch.compile`` (e.g. ``mode="max-autotune"``).
    """
    if not enabled:
        return Networks(model.unet, model.segnet)

    def compile_fn(fn: Callable[..., Any]) -> Callable[..., Any]:
        return torch.compile(fn, **compile_kwargs)

    segnet = model.segnet
    seg: Callable[..., Tensor] = (_CompiledSegNet(segnet, compile_fn) if callable(getattr(segnet, "forward_logits", None))
                                  else compile_fn(segnet))
    return Networks(compile_fn(model.unet), seg)


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``."""
    return torch.channels_last if channels_last else torch.contiguous_format


def randn(
    shape: Sequence[int],
    *,
    generator: Optional[torch.Generator] = None,
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    """Standard normal noise drawn on the generator's device in float32, then moved once.

    Without a generator the draw uses torch's global RNG on ``device`` (default CPU).
    """
    source = generator.device if generator is not None else torch.device(device or "cpu")
    out = torch.randn(tuple(shape), generator=generator, device=source, dtype=torch.float32)
    return out.to(device=device if device is not None else source, dtype=dtype or torch.float32)


def distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by ``torchrun`` (WORLD_SIZE > 1).

    The backend is NCCL when CUDA is available and gloo otherwise (CPU, the tests).
    """
    import os

    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rng_state() -> dict[str, Tensor]:
    """torch's global CPU (and, once initialised, CUDA) RNG states, for training checkpoints."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Tensor]) -> None:
    """Restore what :func:`rng_state` returned."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
