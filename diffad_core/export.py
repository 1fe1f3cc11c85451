"""Export the one-step graph for deployment: ONNX (onnxruntime) and, when installed, OpenVINO.

DiffusionAD's inference is a fixed graph - two eps_theta passes, the norm-guided combination and
one SegNet pass - so it exports as one file:

    inputs   images   (B, 3, H, W) float32 in [0, 1], H = W = the model's side
             noise_s  (B, 3, H, W) float32 standard normal   (eps_s of the norm-guided pass)
             noise_b  (B, 3, H, W) float32 standard normal   (eps_b)
    outputs  anomaly_map  (B, 1, H, W) in [0, 1]
             score        (B,)  mean of the top-k map values

The two noises are inputs, not constants, so the exported graph computes exactly what
:meth:`diffad_core.model.DiffusionAD.predict` computes for the same draws (tested within 1e-4
with onnxruntime), and the caller decides their randomness: :func:`onnx_predict` draws them
from a seeded NumPy generator. t_s, t_b, w and top-k are baked in (the paper's 200 / 400 / 1 /
50 unless given) and written into the file's metadata, with the calibrated threshold when the
model has one. The batch dimension is dynamic.

Needs the ``[export]`` extra (``pip install diffad_core[export]``: onnx, onnxruntime, openvino); OpenVINO
converts the ONNX file to its IR (``.xml`` + ``.bin``).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn

from .files import atomic_path
from .reconstruction import PAPER_INFERENCE, InferenceSetting, reconstruct

__all__ = ["OneStepGraph", "export_onnx", "export_openvino", "onnx_predict", "EXPORT_FORMATS"]

PathLike = Union[str, os.PathLike]
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "openvino")
INPUT_NAMES = ("images", "noise_s", "noise_b")
OUTPUT_NAMES = ("anomaly_map", "score")


class OneStepGraph(nn.Module):
    """images, noise_s, noise_b -> anomaly map, score: the model's predict with explicit noises."""

    def __init__(self, model: Any, setting: InferenceSetting = PAPER_INFERENCE) -> None:
        super().__init__()
        self.model = model
        self.setting = setting

    def forward(self, images: Tensor, noise_s: Tensor, noise_b: Tensor) -> tuple[Tensor, Tensor]:
        m, st = self.model, self.setting
        x = m.to_model_space(images)
        rec = reconstruct(m.unet, m.schedule, x, st.t_s, st.t_b, st.w, noise_s, noise_b)
        amap = m.segnet(torch.cat([x, rec.x0_guided], dim=1))
        k = min(st.top_k, amap.shape[-1] * amap.shape[-2])
        return amap, amap.flatten(1).topk(k, dim=1).values.mean(dim=1)


def _require(module: str, extra: str = "export") -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"{module} is not installed; pip install 'diffad_core[{extra}]' (or pip install {module})") from None


def export_onnx(model: Any, path: PathLike, *, setting: InferenceSetting = PAPER_INFERENCE, opset: int = 17) -> Path:
    """Write the one-step graph of ``model`` (see the module docstring) to ``path`` atomically."""
    onnx = _require("onnx")
    model = model.float().eval().cpu()
    graph = OneStepGraph(model, setting).eval()
    size = int(model.image_size)
    example = tuple(torch.zeros(2, 3, size, size) for _ in INPUT_NAMES)
    dynamic = {name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES}
    target = Path(path)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks, which hold for any batch
        torch.onnx.export(graph, example, str(tmp), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
        proto = onnx.load(str(tmp))
        meta = {"diffad_setting": json.dumps(setting._asdict()), "diffad_image_size": str(size),
                "diffad_model_config": json.dumps(model.config.to_dict())}
        if getattr(model, "calibration", None):
            meta["diffad_calibration"] = json.dumps(model.calibration)
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
    return target


def export_openvino(model: Any, path: PathLike, *, setting: InferenceSetting = PAPER_INFERENCE) -> Path:
    """Write the OpenVINO IR (``path`` = the .xml; the .bin goes beside it), via the ONNX graph.

    Both files are written in a temporary folder next to ``path`` and then renamed into place.
    """
    ov = _require("openvino")
    target = Path(path).with_suffix(".xml")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.stem}.") as tmp:
        onnx_file = export_onnx(model, Path(tmp) / "model.onnx", setting=setting)
        xml = Path(tmp) / "model.xml"
        ov.save_model(ov.convert_model(str(onnx_file)), str(xml))
        os.replace(xml.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(xml, target)
    return target


def onnx_predict(path: PathLike, images: np.ndarray, *, seed: int = 0, session: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Run an exported file with onnxruntime on images (B, 3, H, W) float32 in [0, 1].

    Noises are drawn from ``numpy.random.default_rng(seed)`` (standard normal). Returns
    (anomaly maps (B, 1, H, W), scores (B,)).
    """
    ort = _require("onnxruntime")
    session = session or ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(images, dtype=np.float32)
    rng = np.random.default_rng(seed)
    noise_s = rng.standard_normal(x.shape, dtype=np.float32)
    noise_b = rng.standard_normal(x.shape, dtype=np.float32)
    amap, score = session.run(list(OUTPUT_NAMES), {"images": x, "noise_s": noise_s, "noise_b": noise_b})
    return amap, score
