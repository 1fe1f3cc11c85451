"""The diffusion noise schedule and its closed-form identities.

Notation map (code name -> paper symbol, DiffusionAD section 3 / DDPM):

============================  =========================================================
``betas[t]``                  beta_t, variance of the noise added at step t
``alphas[t]``                 alpha_t = 1 - beta_t
``alphas_cumprod[t]``         abar_t = prod_{i <= t} alpha_i
``alphas_cumprod_prev[t]``    abar_{t-1} (1 for t = 0)
``eps`` / ``eps_pred``        eps ~ N(0, I) / eps_theta(x_t, t)
``x0`` / ``x_t``              the clean image x_0 / its noised version x_t
============================  =========================================================

Index convention (as in the released code and guided-diffusion): ``t = 0`` means *one* noising
step has been applied, so ``t`` runs over ``0 .. T-1`` and ``abar_0 = 1 - beta_0``.

Every coefficient is computed once in float64 and held as a (non-persistent) buffer, so
``schedule.to(device)`` moves it and a checkpoint only needs the two constructor arguments.
Arithmetic on images happens in the images' own floating dtype (float32 at least).
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Union

import torch
from torch import Tensor, nn

__all__ = ["NoiseSchedule", "BetaSchedule", "linear_betas", "cosine_betas"]

BetaSchedule = Literal["linear", "cosine"]
BETA_SCHEDULES: tuple[str, ...] = ("linear", "cosine")
Timesteps = Union[int, Tensor]


def linear_betas(num_train_timesteps: int) -> Tensor:
    """The released linear schedule: beta from 1e-4 to 0.02, both scaled by 1000 / T (float64, (T,))."""
    scale = 1000.0 / num_train_timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_train_timesteps, dtype=torch.float64)


def cosine_betas(num_train_timesteps: int, *, offset: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021), as released (float64, (T,)).

    abar(s) = cos^2(((s + offset) / (1 + offset)) * pi / 2) on s in [0, 1], and
    beta_t = min(1 - abar((t + 1) / T) / abar(t / T), max_beta).
    """

    def abar(s: float) -> float:
        return math.cos((s + offset) / (1.0 + offset) * math.pi / 2.0) ** 2

    T = num_train_timesteps
    betas = [min(1.0 - abar((i + 1) / T) / abar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


class NoiseSchedule(nn.Module):
    """A discrete DDPM noise schedule with the closed forms DiffusionAD needs.

    Args:
        num_train_timesteps: T, the number of diffusion steps (1000 in the paper).
        beta_schedule: ``"linear"`` (paper default) or ``"cosine"``.

    Raises:
        ValueError: for an unknown ``beta_schedule`` or T < 2.
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    posterior_variance: Tensor
    posterior_log_variance_clipped: Tensor
    posterior_mean_coef1: Tensor
    posterior_mean_coef2: Tensor

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: BetaSchedule = "linear") -> None:
        super().__init__()
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule={beta_schedule!r} is unknown; choose one of {BETA_SCHEDULES}")
        if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}")
        self.num_train_timesteps = num_train_timesteps
        self.beta_schedule = beta_schedule
        betas = linear_betas(num_train_timesteps) if beta_schedule == "linear" else cosine_betas(num_train_timesteps)
        if float(betas.max()) >= 1.0:
            raise ValueError(
                f"the {beta_schedule} schedule with T={num_train_timesteps} has beta >= 1 "
                "(the released linear schedule scales 0.02 by 1000 / T); use T >= 21 or beta_schedule='cosine'"
            )
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        # Posterior q(x_{t-1} | x_t, x_0) = N(coef1 * x_0 + coef2 * x_t, beta_tilde_t).
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        # beta_tilde_0 = 0: clip the log at t = 0 with the t = 1 value (as guided-diffusion does).
        post_log_var = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": post_log_var,
            "posterior_mean_coef1": betas * abar_prev.sqrt() / (1.0 - abar),
            "posterior_mean_coef2": (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def extra_repr(self) -> str:
        return f"num_train_timesteps={self.num_train_timesteps}, beta_schedule={self.beta_schedule!r}"

    # ------------------------------------------------------------------ helpers
    def _check_image(self, x: Tensor, name: str) -> None:
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not torch.is_floating_point(x):
            raise ValueError(
                f"{name} has integer dtype {x.dtype}; convert images to float first (e.g. x.float() / 255)"
            )
        if x.dim() < 1:
            raise ValueError(f"{name} must have a batch dimension, got a scalar")

    def _timesteps(self, t: Timesteps, batch: int, device: torch.device) -> Tensor:
        """Validate t and return a LongTensor of shape (batch,) on ``device``."""
        T = self.num_train_timesteps
        if isinstance(t, bool):
            raise ValueError(f"t must be an int or a LongTensor, got {t!r}")
        if isinstance(t, int):
            if not 0 <= t < T:
                raise ValueError(f"t={t} is outside [0, {T}); DiffusionAD indexes steps 0 .. T-1")
            return torch.full((batch,), t, dtype=torch.long, device=device)
        if not isinstance(t, Tensor):
            raise ValueError(f"t must be an int or a LongTensor, got {type(t).__name__}")
        if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"t must hold integer steps, got dtype {t.dtype}")
        if t.dim() == 0:
            t = t.expand(batch)
        if t.dim() != 1 or t.shape[0] != batch:
            raise ValueError(f"t has shape {tuple(t.shape)} but the batch has {batch} samples; pass one step per sample")
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= T:
            raise ValueError(f"t holds steps in [{lo}, {hi}], outside [0, {T}); DiffusionAD indexes steps 0 .. T-1")
        return t.to(device=device, dtype=torch.long)

    def _coef(self, table: Tensor, t: Timesteps, like: Tensor) -> Tensor:
        """table[t] shaped (B, 1, 1, ...) to broadcast over ``like`` (B, C, H, W), in like's dtype."""
        steps = self._timesteps(t, like.shape[0], table.device)
        dtype = torch.promote_types(like.dtype, torch.float32)
        values = table[steps].to(device=like.device, dtype=dtype)
        return values.reshape(-1, *([1] * (like.dim() - 1)))

    def _same_shape(self, a: Tensor, b: Tensor, names: str) -> None:
        if a.shape != b.shape:
            raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")

    # ------------------------------------------------------------------ closed forms
    def add_noise(self, x0: Tensor, noise: Tensor, t: Timesteps) -> Tensor:
        """Sample from q(x_t | x_0): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM eq. 4).

        Args:
            x0: clean images (B, C, H, W).
            noise: eps, same shape as ``x0``.
            t: one step for the batch (int) or per sample (LongTensor (B,)).
        """
        self._check_image(x0, "x0")
        self._check_image(noise, "noise")
        self._same_shape(x0, noise, "x0 and noise")
        abar = self._coef(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def predict_x0(self, x_t: Tensor, eps: Tensor, t: Timesteps) -> Tensor:
        """One-step estimate x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (paper eq. 6). No clamp."""
        self._check_image(x_t, "x_t")
        self._check_image(eps, "eps")
        self._same_shape(x_t, eps, "x_t and eps")
        abar = self._coef(self.alphas_cumprod, t, x_t)
        return (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()

    def predict_eps(self, x_t: Tensor, x0: Tensor, t: Timesteps) -> Tensor:
        """The noise that maps x_0 to x_t: eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)."""
        self._check_image(x_t, "x_t")
        self._check_image(x0, "x0")
        self._same_shape(x_t, x0, "x_t and x0")
        abar = self._coef(self.alphas_cumprod, t, x_t)
        return (x_t - abar.sqrt() * x0) / (1.0 - abar).sqrt()

    def norm_guided_x0(self, x_ts: Tensor, t_s: Timesteps, eps_s: Tensor, x0_b: Tensor, w: float = 1.0) -> Tensor:
        """Norm-guided reconstruction (paper section 3.3; docs/method.md §1, steps 4-6).

        Args:
            x_ts: the input noised to the small step, x_{t_s} (B, C, H, W).
            t_s: the small ("normal") step.
            eps_s: eps_theta(x_{t_s}, t_s).
            x0_b: the clamped one-step estimate from the big step t_b.
            w: guidance weight (w = 0 gives the plain t_s estimate).

        Returns:
            x0_g (B, C, H, W) clamped to [-1, 1], computed as

            1. xb_{t_s} = sqrt(abar_{t_s}) x0_b + sqrt(1 - abar_{t_s}) eps_s  (re-noise with the predicted noise)
            2. eps_hat = eps_s - w sqrt(1 - abar_{t_s}) (xb_{t_s} - x_{t_s})
            3. x0_g = (x_{t_s} - sqrt(1 - abar_{t_s}) eps_hat) / sqrt(abar_{t_s}).
        """
        self._check_image(x_ts, "x_ts")
        self._check_image(eps_s, "eps_s")
        self._check_image(x0_b, "x0_b")
        self._same_shape(x_ts, eps_s, "x_ts and eps_s")
        self._same_shape(x_ts, x0_b, "x_ts and x0_b")
        abar = self._coef(self.alphas_cumprod, t_s, x_ts)
        sigma = (1.0 - abar).sqrt()
        xb_ts = abar.sqrt() * x0_b + sigma * eps_s
        eps_hat = eps_s - w * sigma * (xb_ts - x_ts)
        return ((x_ts - sigma * eps_hat) / abar.sqrt()).clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ iterative baselines
    def ddpm_step(
        self,
        eps: Tensor,
        t: Timesteps,
        x_t: Tensor,
        generator: Optional[torch.Generator] = None,
        *,
        clip_sample: bool = True,
    ) -> Tensor:
        """One ancestral DDPM step: sample x_{t-1} from p(x_{t-1} | x_t).

        Mean: the posterior mean of q(x_{t-1} | x_t, x0_hat) with x0_hat = predict_x0 (clamped to
        [-1, 1] when ``clip_sample``); variance: the fixed posterior variance beta_tilde_t, as in the
        released code. No noise is added at t = 0, so the result there is the mean.
        """
        self._check_image(x_t, "x_t")
        self._check_image(eps, "eps")
        self._same_shape(x_t, eps, "x_t and eps")
        x0 = self.predict_x0(x_t, eps, t)
        if clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
        mean = self._coef(self.posterior_mean_coef1, t, x_t) * x0 + self._coef(self.posterior_mean_coef2, t, x_t) * x_t
        steps = self._timesteps(t, x_t.shape[0], x_t.device)
        nonzero = (steps > 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        std = (0.5 * self._coef(self.posterior_log_variance_clipped, t, x_t)).exp()
        return mean + nonzero * std * noise

    def ddim_step(
        self,
        eps: Tensor,
        t: Timesteps,
        t_prev: Timesteps,
        x_t: Tensor,
        eta: float = 0.0,
        generator: Optional[torch.Generator] = None,
        *,
        clip_sample: bool = True,
    ) -> Tensor:
        """One DDIM step from t to ``t_prev`` (Song et al. 2021, eq. 12); ``t_prev = -1`` lands on x_0.

        eta = 0 is deterministic; eta = 1 matches DDPM's variance. With ``clip_sample`` the estimate
        x0_hat is clamped to [-1, 1] and the noise direction is recomputed from it.
        """
        self._check_image(x_t, "x_t")
        self._check_image(eps, "eps")
        self._same_shape(x_t, eps, "x_t and eps")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        x0 = self.predict_x0(x_t, eps, t)
        if clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
            eps = self.predict_eps(x_t, x0, t)
        abar_t = self._coef(self.alphas_cumprod, t, x_t)
        abar_prev = self._abar_prev(t_prev, x_t)
        sigma = eta * ((1.0 - abar_prev) / (1.0 - abar_t)).sqrt() * (1.0 - abar_t / abar_prev).clamp(min=0).sqrt()
        direction = (1.0 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
        x_prev = abar_prev.sqrt() * x0 + direction
        if eta > 0:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
            x_prev = x_prev + sigma * noise
        return x_prev

    def _abar_prev(self, t_prev: Timesteps, like: Tensor) -> Tensor:
        """abar at ``t_prev`` with abar_{-1} = 1 (the clean image)."""
        if isinstance(t_prev, int) and t_prev == -1:
            dtype = torch.promote_types(like.dtype, torch.float32)
            return torch.ones((like.shape[0],) + (1,) * (like.dim() - 1), dtype=dtype, device=like.device)
        if isinstance(t_prev, Tensor) and not t_prev.is_floating_point() and t_prev.dim() <= 1:
            clean = t_prev == -1
            if bool(clean.any()):
                table = torch.cat([torch.ones(1, dtype=torch.float64, device=self.alphas_cumprod.device), self.alphas_cumprod])
                steps = self._timesteps(t_prev + 1, like.shape[0], table.device)
                dtype = torch.promote_types(like.dtype, torch.float32)
                return table[steps].to(like.device, dtype).reshape(-1, *([1] * (like.dim() - 1)))
        return self._coef(self.alphas_cumprod, t_prev, like)
