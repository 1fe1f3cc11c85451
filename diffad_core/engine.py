"""The frozen reconstruction UNet in OpenVINO: faster forward passes for SegNet-only training on a CPU.

With ``lr_unet`` 0 the reconstruction UNet eps_theta is fixed, and a training step still runs it
twice (eps_theta(x_{t_b}, t_b) and eps_theta(x_{t_s}, t_s), the norm-guided pass of paper section
3.3) before the SegNet's forward and backward pass; on a CPU those two passes are about three
quarters of the step. Nothing flows back through them, so they can run in an inference engine:
:class:`OpenVINOUNet` converts eps_theta once per run (a few seconds) and is then called exactly
like the UNet, ``eps = unet(x_t, t)``, inside the unchanged loss (``TrainConfig.unet_engine``).

* **Precision**: bfloat16 when the run autocasts to bfloat16 (``amp`` "bf16"), else float32.
  OpenVINO's bfloat16 pass differs from torch's bfloat16 autocast by about as much as torch's
  differs from float32 (max |delta eps| ~0.02-0.03 for eps of unit scale); its float32 pass equals
  the UNet's within 1e-4.
* **Threads**: torch's intra-op thread count at conversion (``--threads``), with CPU pinning off:
  OpenVINO pins its threads to cores by default, and two such processes (the demo trains two
  categories at once) then share one core and each runs at half speed.
* **Determinism**: one compiled model per run, the same draws in, the same eps out, so a resumed
  run repeats the uninterrupted one.

Needs ``pip install openvino`` (part of the ``export`` and ``dev`` extras, so ``make setup`` installs
it); :func:`openvino_available` says whether it is installed. Where it is,
:func:`diffad_core.pipeline.cpu_speedups` turns the engine on for bf16 runs with the UNet frozen.
"""

from __future__ import annotations

import importlib.util
import warnings

import torch
from torch import Tensor, nn

__all__ = ["OpenVINOUNet", "openvino_available"]


def openvino_available() -> bool:
    """Whether the ``openvino`` package is installed (it is imported only when used)."""
    return importlib.util.find_spec("openvino") is not None


class OpenVINOUNet:
    """eps_theta(x_t, t) of a frozen UNet, compiled by OpenVINO for the CPU.

    Args:
        unet: the reconstruction UNet, called as ``unet(x_t, t)``; its weights must not change
            afterwards (the compiled copy would not see it).
        channels, image_size: the input's shape (B, channels, image_size, image_size); the batch
            size is free.
        bf16: run at bfloat16 inference precision (else float32).
        threads: OpenVINO's inference threads.

    Calling it with x_t (B, C, H, W) and t (B,) integer steps on the CPU returns eps (B, C, H, W),
    float32, contiguous, a tensor of its own (not a view of OpenVINO's output buffer).
    """

    def __init__(self, unet: nn.Module, channels: int, image_size: int, *, bf16: bool, threads: int) -> None:
        if not openvino_available():
            raise ValueError("unet_engine='openvino' needs the openvino package: pip install openvino "
                             "(or use unet_engine='torch')")
        if threads < 1:
            raise ValueError(f"threads={threads} must be >= 1")
        import openvino as ov

        example = (torch.zeros(1, channels, image_size, image_size), torch.zeros(1, dtype=torch.long))
        shapes = [ov.PartialShape([-1, channels, image_size, image_size]), ov.PartialShape([-1])]
        was_training = unet.training
        unet.eval()
        try:
            # tracing warns about the UNet's shape checks, which hold for every input of this shape
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                converted = ov.convert_model(unet, example_input=example, input=shapes)
        finally:
            unet.train(was_training)
        properties = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                      "ENABLE_CPU_PINNING": False, "PERFORMANCE_HINT": "LATENCY"}
        self._compiled = ov.Core().compile_model(converted, "CPU", properties)
        self._request = self._compiled.create_infer_request()
        self.shape = (channels, image_size, image_size)

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        if x_t.device.type != "cpu" or tuple(x_t.shape[1:]) != self.shape:
            raise ValueError(f"the OpenVINO UNet takes CPU images of shape (B, {', '.join(map(str, self.shape))}); "
                             f"got {tuple(x_t.shape)} on {x_t.device}")
        x = x_t.detach().float().contiguous().numpy()
        steps = t.detach().to(torch.int64).reshape(-1).expand(x_t.shape[0]).contiguous().numpy()
        out = self._request.infer([x, steps])[self._compiled.output(0)]
        return torch.from_numpy(out.copy())
