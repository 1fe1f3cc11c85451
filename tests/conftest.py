"""Shared test fixtures: toy networks with the ``unet(x_t, t)`` signature and seeded generators."""

from __future__ import annotations

import os

# Before torch is imported: passive OpenMP waiting (as diffad_core sets it), or two spinning test
# threads beside one other busy process run 5-30x slower (README, Threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")
if "OMP_NUM_THREADS" not in os.environ:  # an explicit thread count wins
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


class OracleUNet(nn.Module):
    """Returns the true noise for a fixed clean batch: the perfect eps_theta for that batch."""

    def __init__(self, schedule, x0: Tensor) -> None:
        super().__init__()
        self.schedule = schedule
        self.x0 = x0

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.schedule.predict_eps(x_t, self.x0, t)


class ToyUNet(nn.Module):
    """A tiny time-conditioned conv net (trainable) for loss and gradient tests."""

    def __init__(self, channels: int = 3, T: int = 1000) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.embed = nn.Embedding(T, channels)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.conv(x_t) + self.embed(t)[:, :, None, None]


class ToySegNet(nn.Module):
    def __init__(self, channels: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, padding=1)

    def forward_logits(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_logits(x))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def write_tiny_mvtec(root, category: str = "widget", size: int = 32, n_train: int = 6, n_good: int = 2, n_bad: int = 3, seed: int = 0):
    """Write a minimal MVTec-layout category with PIL (a few smooth images, square defects)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / category

    def image():
        yy, xx = np.mgrid[0:size, 0:size] / size
        phase = rng.uniform(0, 6.28)
        img = 0.5 + 0.25 * np.sin(8 * xx + phase)[..., None] * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 0.02, (size, size, 3))
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)

    for split, defect, n in (("train", "good", n_train), ("test", "good", n_good), ("test", "scratch", n_bad)):
        folder = base / split / defect
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = image()
            if defect != "good":
                mask = np.zeros((size, size), np.uint8)
                y, x = rng.integers(2, size - 10, 2)
                mask[y : y + 6, x : x + 6] = 255
                img[mask > 0] = (20, 20, 20)
                gt = base / "ground_truth" / defect
                gt.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(gt / f"{i:03d}_mask.png")
            Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def tiny_mvtec(tmp_path):
    return write_tiny_mvtec(tmp_path / "data")
