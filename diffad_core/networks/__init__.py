"""The two networks of DiffusionAD: the noise predictor eps_theta and the segmentation net.

DiffusionAD (Zhang et al., arXiv 2303.08730, Sec. 3) joins two sub-networks:

* :class:`ReconUNet` (:mod:`.recon`), the *reconstruction sub-network*: a guided-diffusion
  style UNet eps_theta(x_t, t) that predicts the noise eps added to x_0 at step t. The
  one-step and norm-guided reconstructions (``schedule.py``) are computed from its output.
* :class:`SegUNet` (:mod:`.seg`), the *segmentation sub-network*: a DRAEM-style
  discriminative UNet that maps concat(x, x0_g), shape (B, 6, H, W), to an anomaly map M in
  [0, 1], shape (B, 1, H, W).

Both are built from a frozen, typed config (:class:`ReconUNetConfig`, :class:`SegUNetConfig`)
that the model keeps as ``.config``; :func:`config_to_dict` / :func:`config_from_dict` turn a
config into JSON-safe data and back, so a checkpoint can carry the architecture it needs.
Named presets ("paper", "small", "tiny") are in ``RECON_PRESETS`` and ``SEG_PRESETS``; their
sizes and costs are tabled in the docstrings of :mod:`.recon` and :mod:`.seg`. The shared
layers and config helpers live in :mod:`.blocks`. See docs/method.md §3.

Notation: x_t the noised image at step t (integer, 0 <= t < T; t = 0 is one noising step),
eps_theta(x_t, t) the predicted noise, x0_g the norm-guided reconstruction, M the anomaly map.
"""

from .blocks import config_from_dict, config_to_dict, count_parameters, timestep_embedding
from .recon import RECON_PRESETS, ReconUNet, ReconUNetConfig
from .seg import SEG_PRESETS, SegUNet, SegUNetConfig

__all__ = [
    "RECON_PRESETS",
    "SEG_PRESETS",
    "ReconUNet",
    "ReconUNetConfig",
    "SegUNet",
    "SegUNetConfig",
    "config_from_dict",
    "config_to_dict",
    "count_parameters",
    "timestep_embedding",
]
