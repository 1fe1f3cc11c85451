"""The joint DiffusionAD training loss (paper section 3.4; docs/method.md §2).

    L = L_noise + focal_weight * L_focal(M, mask) + L_smoothL1(M, mask)

* L_noise: for each *normal* sample, ||eps_s - eps_theta(x_{t_s}, t_s)||^2 + ||eps_b - eps_theta(x_{t_b}, t_b)||^2
  (per-sample mean squared error, summed over the two scales), averaged over the normal samples;
  0 when the batch has none. Synthetic anomalies are not denoising targets.
* M = SegNet(concat(x_aug, x0_g)): x0_g is the norm-guided reconstruction of the (possibly
  anomalous) input, *not* detached, so the segmentation losses also train the reconstruction UNet.
* L_focal: binary focal loss on probabilities, alpha = 0.5, gamma = 4 (as released).
* L_smoothL1: smooth L1 between M and the mask.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .reconstruction import EpsModel, NormGuidedPass, norm_guided_forward
from .schedule import NoiseSchedule

__all__ = ["LossOutput", "focal_loss", "diffusionad_loss", "segmentation_loss", "sample_timesteps"]


class LossOutput(NamedTuple):
    """The total loss and its parts (scalars); ``anomaly_map`` M (B, 1, H, W) and the pass for logging."""

    total: Tensor
    noise: Tensor
    focal: Tensor
    smooth_l1: Tensor
    anomaly_map: Tensor
    guided: NormGuidedPass


def focal_loss(prob: Tensor, target: Tensor, *, alpha: float = 0.5, gamma: float = 4.0, logits: Optional[Tensor] = None) -> Tensor:
    """Binary focal loss (Lin et al. 2017) on probabilities, averaged over pixels.

    FL = -alpha_t (1 - p_t)^gamma log p_t with p_t = p where target = 1 and 1 - p elsewhere,
    alpha_t = alpha for positives and 1 - alpha for negatives (0.5 weighs both alike, as released).
    When ``logits`` are given, log p_t is taken from them (log-sigmoid), which is exact where p
    saturates; otherwise p is clamped to [1e-6, 1 - 1e-6].
    """
    if prob.shape != target.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} must have the same shape")
    prob = prob.float()
    target = target.float()
    p_t = prob * target + (1.0 - prob) * (1.0 - target)
    if logits is not None:
        logits = logits.float()
        log_p_t = target * F.logsigmoid(logits) + (1.0 - target) * F.logsigmoid(-logits)
    else:
        log_p_t = p_t.clamp(1e-6, 1.0 - 1e-6).log()
    alpha_t = alpha * target + (1.0 - alpha) * (1.0 - target)
    return (-alpha_t * (1.0 - p_t).pow(gamma) * log_p_t).mean()


def sample_timesteps(
    batch: int,
    low: int,
    high: int,
    *,
    device: torch.device | str = "cpu",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Draw one step per sample from U{low .. high-1} as a LongTensor (B,).

    The generator decides where the draw happens (its own device), then the result is moved.
    """
    if not 0 <= low < high:
        raise ValueError(f"timestep range [{low}, {high}) is empty or negative")
    gen_device = generator.device if generator is not None else torch.device(device)
    return torch.randint(low, high, (batch,), generator=generator, device=gen_device).to(device)


def _segment(segnet: Callable[[Tensor], Tensor], seg_input: Tensor) -> tuple[Tensor, Optional[Tensor]]:
    forward_logits = getattr(segnet, "forward_logits", None)
    if callable(forward_logits):
        logits = forward_logits(seg_input)
        return torch.sigmoid(logits), logits
    return segnet(seg_input), None


def diffusionad_loss(
    unet: EpsModel,
    segnet: Callable[[Tensor], Tensor],
    schedule: NoiseSchedule,
    x_aug: Tensor,
    mask: Tensor,
    label: Tensor,
    *,
    t_s_range: tuple[int, int] = (0, 300),
    t_b_range: Optional[tuple[int, int]] = None,
    w: float = 1.0,
    focal_weight: float = 5.0,
    focal_alpha: float = 0.5,
    focal_gamma: float = 4.0,
    generator: Optional[torch.Generator] = None,
    t_s: Optional[Tensor] = None,
    t_b: Optional[Tensor] = None,
    noise_s: Optional[Tensor] = None,
    noise_b: Optional[Tensor] = None,
) -> LossOutput:
    """One joint training loss on a batch (docs/method.md §2).

    Args:
        unet: eps_theta, called as ``unet(x_t, t)``.
        segnet: the segmentation network, input (B, 2C, H, W), output M in [0, 1] (B, 1, H, W);
            its ``forward_logits`` is used when present for a stable focal loss.
        schedule: the noise schedule.
        x_aug: the training batch after anomaly synthesis (B, C, H, W), in the model's pixel range.
        mask: (B, 1, H, W) ground-truth anomaly masks in {0, 1}.
        label: (B,) 1 for synthetic anomalies, 0 for normal samples.
        t_s_range, t_b_range: half-open ranges for t_s ~ U{0..299} and t_b ~ U{300..T-1}
            (``t_b_range=None`` means (300, T)); one pair per sample.
        t_s, t_b, noise_s, noise_b: explicit draws (tests, reproducibility); drawn when None.

    Returns:
        :class:`LossOutput` with total = noise + focal_weight * focal + smooth_l1.
    """
    if x_aug.dim() != 4:
        raise ValueError(f"x_aug must be (B, C, H, W), got shape {tuple(x_aug.shape)}")
    batch = x_aug.shape[0]
    if mask.shape != (batch, 1) + tuple(x_aug.shape[2:]):
        raise ValueError(f"mask must be (B, 1, H, W) = {(batch, 1) + tuple(x_aug.shape[2:])}, got {tuple(mask.shape)}")
    if label.shape != (batch,):
        raise ValueError(f"label must be (B,) = ({batch},), got {tuple(label.shape)}")
    T = schedule.num_train_timesteps
    t_b_range = t_b_range if t_b_range is not None else (t_s_range[1], T)
    if t_b_range[1] > T or t_s_range[1] > T:
        raise ValueError(f"timestep ranges {t_s_range} / {t_b_range} exceed T = {T}")
    device = x_aug.device
    if t_s is None:
        t_s = sample_timesteps(batch, *t_s_range, device=device, generator=generator)
    if t_b is None:
        t_b = sample_timesteps(batch, *t_b_range, device=device, generator=generator)
    if noise_s is None:
        noise_s = torch.randn(x_aug.shape, generator=generator, device=generator.device if generator else device).to(device, x_aug.dtype)
    if noise_b is None:
        noise_b = torch.randn(x_aug.shape, generator=generator, device=generator.device if generator else device).to(device, x_aug.dtype)

    guided = norm_guided_forward(unet, schedule, x_aug, t_s, t_b, w, noise_s=noise_s, noise_b=noise_b)

    normal = (label == 0).to(torch.float32)
    per_sample = (guided.noise_s - guided.eps_s.float()).pow(2).flatten(1).mean(1) + (
        guided.noise_b - guided.eps_b.float()
    ).pow(2).flatten(1).mean(1)
    n_normal = normal.sum()
    noise_loss = (per_sample * normal).sum() / n_normal.clamp(min=1.0)

    anomaly_map, focal, smooth = segmentation_loss(segnet, x_aug, guided.x0_guided, mask,
                                                   focal_alpha=focal_alpha, focal_gamma=focal_gamma)
    total = noise_loss + focal_weight * focal + smooth
    return LossOutput(total, noise_loss, focal, smooth, anomaly_map, guided)


def segmentation_loss(
    segnet: Callable[[Tensor], Tensor],
    x: Tensor,
    x0_guided: Tensor,
    mask: Tensor,
    *,
    focal_alpha: float = 0.5,
    focal_gamma: float = 4.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """The SegNet's part of the loss: its map of (input, guided reconstruction) against the mask.

    ``x`` and ``x0_guided`` are in the model's pixel range, (B, C, H, W); ``mask`` is (B, 1, H, W).
    Returns the anomaly map, the focal loss and the smooth-L1 loss (unweighted).
    """
    seg_input = torch.cat([x, x0_guided.to(x.dtype)], dim=1)
    anomaly_map, logits = _segment(segnet, seg_input)
    target = mask.to(torch.float32)
    focal = focal_loss(anomaly_map, target, alpha=focal_alpha, gamma=focal_gamma, logits=logits)
    smooth = F.smooth_l1_loss(anomaly_map.float(), target)
    return anomaly_map, focal, smooth
