"""Reconstruction: the one-step, norm-guided estimate DiffusionAD uses, and the iterative baselines.

The norm-guided forward pass is written once (:func:`norm_guided_forward`) and shared by inference
(:func:`reconstruct`) and training (:func:`diffad_core.losses.diffusionad_loss`), so the two can
never drift apart.

Any network called as ``unet(x_t, t)`` with ``t`` a LongTensor of shape (B,) and returning
eps_theta(x_t, t) of the shape of ``x_t`` works here (tests pass toy models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, NamedTuple, Optional

import torch
from torch import Tensor

from .config import PAPER_INFERENCE, InferenceSetting
from .runtime import randn
from .schedule import NoiseSchedule

__all__ = [
    "InferenceSetting",
    "PAPER_INFERENCE",
    "NormGuidedPass",
    "Reconstruction",
    "norm_guided_forward",
    "reconstruct",
    "iterative_reconstruct",
    "EpsModel",
]

EpsModel = Callable[[Tensor, Tensor], Tensor]




class Reconstruction(NamedTuple):
    """Named result of :func:`reconstruct`; all fields (B, C, H, W), clamped to [-1, 1].

    Fields:
        x0_guided: x0_g, the norm-guided reconstruction (the one DiffusionAD segments against).
        x0_small: the plain one-step estimate x0_hat from t_s (keeps detail, may keep the anomaly).
        x0_big: the plain one-step estimate x0_hat from t_b (removes the anomaly, loses detail).
    """

    x0_guided: Tensor
    x0_small: Tensor
    x0_big: Tensor


@dataclass
class NormGuidedPass:
    """Everything one norm-guided pass computes (B, C, H, W each), for losses and pictures.

    ``noise_s``/``noise_b`` are the true noises eps_s, eps_b; ``eps_s``/``eps_b`` the predictions
    eps_theta(x_{t_s}, t_s), eps_theta(x_{t_b}, t_b).
    """

    x_ts: Tensor
    x_tb: Tensor
    noise_s: Tensor
    noise_b: Tensor
    eps_s: Tensor
    eps_b: Tensor
    x0_small: Tensor
    x0_big: Tensor
    x0_guided: Tensor

    def reconstruction(self) -> Reconstruction:
        return Reconstruction(self.x0_guided, self.x0_small, self.x0_big)


def _as_steps(t: int | Tensor, batch: int, device: torch.device, name: str) -> Tensor:
    if isinstance(t, bool) or not isinstance(t, (int, Tensor)):
        raise ValueError(f"{name} must be an int or a LongTensor of shape (B,), got {t!r}")
    if isinstance(t, int):
        return torch.full((batch,), t, dtype=torch.long, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    return t.to(device=device, dtype=torch.long) if not t.is_floating_point() else t


def _noise_like(x: Tensor, noise: Optional[Tensor], name: str, generator: Optional[torch.Generator]) -> Tensor:
    if noise is None:
        return randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if noise.shape != x.shape:
        raise ValueError(f"{name} has shape {tuple(noise.shape)} but x has {tuple(x.shape)}; they must match")
    return noise.to(device=x.device, dtype=x.dtype)


def norm_guided_forward(
    unet: EpsModel,
    schedule: NoiseSchedule,
    x: Tensor,
    t_s: int | Tensor,
    t_b: int | Tensor,
    w: float = 1.0,
    *,
    noise_s: Optional[Tensor] = None,
    noise_b: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> NormGuidedPass:
    """The norm-guided one-step pass (paper section 3.3; docs/method.md §1, steps 1-6).

    1. x_{t_s} = q(x_{t_s} | x), x_{t_b} = q(x_{t_b} | x) with independent noises eps_s, eps_b.
    2. eps_b' = eps_theta(x_{t_b}, t_b); x0_b = clamp(x0_hat(x_{t_b}, eps_b'), -1, 1).
    3. eps_s' = eps_theta(x_{t_s}, t_s); x0_small = clamp(x0_hat(x_{t_s}, eps_s'), -1, 1).
    4. x0_g = :meth:`NoiseSchedule.norm_guided_x0` (x_{t_s}, t_s, eps_s', x0_b, w).

    Two network evaluations per image whatever T is. ``t_s``/``t_b`` may be ints or per-sample
    LongTensors (B,) (training draws one pair per sample).
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, C, H, W) image tensor, got {shape}")
    if not torch.is_floating_point(x):
        raise ValueError(f"x has integer dtype {x.dtype}; convert images to float first (e.g. x.float() / 255)")
    batch = x.shape[0]
    ts = _as_steps(t_s, batch, x.device, "t_s")
    tb = _as_steps(t_b, batch, x.device, "t_b")
    noise_s = _noise_like(x, noise_s, "noise_s", generator)
    noise_b = _noise_like(x, noise_b, "noise_b", generator)
    # The schedule gets the int steps as given: it validates those on the host, whereas checking
    # a device tensor's values would wait for the device (a host sync) at every call.
    sched_s = t_s if isinstance(t_s, int) else ts
    sched_b = t_b if isinstance(t_b, int) else tb
    x_ts = schedule.add_noise(x, noise_s, sched_s)
    x_tb = schedule.add_noise(x, noise_b, sched_b)
    eps_b = unet(x_tb, tb)
    eps_s = unet(x_ts, ts)
    x0_big = schedule.predict_x0(x_tb, eps_b, sched_b).clamp(-1.0, 1.0)
    x0_small = schedule.predict_x0(x_ts, eps_s, sched_s).clamp(-1.0, 1.0)
    x0_guided = schedule.norm_guided_x0(x_ts, sched_s, eps_s, x0_big, w)
    return NormGuidedPass(x_ts, x_tb, noise_s, noise_b, eps_s, eps_b, x0_small, x0_big, x0_guided)


def reconstruct(
    unet: EpsModel,
    schedule: NoiseSchedule,
    x: Tensor,
    t_s: int = PAPER_INFERENCE.t_s,
    t_b: int = PAPER_INFERENCE.t_b,
    w: float = PAPER_INFERENCE.w,
    noise_s: Optional[Tensor] = None,
    noise_b: Optional[Tensor] = None,
    *,
    generator: Optional[torch.Generator] = None,
) -> Reconstruction:
    """Norm-guided one-step reconstruction of ``x`` (B, C, H, W) in the model's pixel range.

    Defaults are the paper's inference setting (t_s = 200, t_b = 400, w = 1). Pass ``noise_s`` and
    ``noise_b`` (each shaped like ``x``) for a deterministic result; otherwise independent Gaussian
    noises are drawn (from ``generator`` when given). Gradients are not disabled: wrap the call in
    ``torch.no_grad()`` for inference.
    """
    T = schedule.num_train_timesteps
    for name, value in (("t_s", t_s), ("t_b", t_b)):
        if isinstance(value, int) and not 0 <= value < T:
            raise ValueError(f"{name}={value} is outside [0, {T})")
    return norm_guided_forward(
        unet, schedule, x, t_s, t_b, w, noise_s=noise_s, noise_b=noise_b, generator=generator
    ).reconstruction()


def ddim_timesteps(t_start: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from ``t_start`` down to 0 (both included when steps > 1)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps == 1:
        return [t_start]
    grid = torch.linspace(t_start, 0, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(grid), reverse=True)


def iterative_reconstruct(
    unet: EpsModel,
    schedule: NoiseSchedule,
    x: Tensor,
    t_start: int,
    steps: Optional[int] = None,
    method: Literal["ddpm", "ddim"] = "ddpm",
    *,
    noise: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    eta: float = 0.0,
) -> Tensor:
    """The slow baseline DiffusionAD replaces: noise ``x`` to ``t_start`` and denoise step by step.

    ``method="ddpm"`` takes every step t_start, t_start-1, ..., 0 (``t_start + 1`` network calls;
    ``steps`` must be None or exactly that). ``method="ddim"`` takes ``steps`` evenly spaced steps
    (default: all of them) with DDIM's update (``eta`` = 0: deterministic given ``noise``).
    Returns x_0 (B, C, H, W), clamped to [-1, 1].
    """
    T = schedule.num_train_timesteps
    if isinstance(t_start, bool) or not isinstance(t_start, int) or not 0 <= t_start < T:
        raise ValueError(f"t_start must be an int in [0, {T}), got {t_start!r}")
    if method not in ("ddpm", "ddim"):
        raise ValueError(f"method={method!r} is unknown; choose 'ddpm' or 'ddim'")
    if method == "ddpm" and steps is not None and steps != t_start + 1:
        raise ValueError(
            f"DDPM visits every step: steps must be None or t_start + 1 = {t_start + 1}, got {steps}; "
            "use method='ddim' to skip steps"
        )
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise ValueError("x must be a floating-point (B, C, H, W) tensor")
    batch = x.shape[0]
    x_t = schedule.add_noise(x, _noise_like(x, noise, "noise", generator), t_start)
    if method == "ddpm":
        for t in range(t_start, -1, -1):
            eps = unet(x_t, torch.full((batch,), t, dtype=torch.long, device=x.device))
            x_t = schedule.ddpm_step(eps, t, x_t, generator=generator)
    else:
        grid = ddim_timesteps(t_start, steps if steps is not None else t_start + 1)
        for i, t in enumerate(grid):
            t_prev = grid[i + 1] if i + 1 < len(grid) else -1
            eps = unet(x_t, torch.full((batch,), t, dtype=torch.long, device=x.device))
            x_t = schedule.ddim_step(eps, t, t_prev, x_t, eta=eta, generator=generator)
    return x_t.clamp(-1.0, 1.0)
