"""ONNX export of the one-step graph, checked against the torch model with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="the [export] extra (onnx, onnxruntime) is not installed")
pytest.importorskip("onnx", reason="the [export] extra (onnx, onnxruntime) is not installed")

from diffad_core.cli import main  # noqa: E402
from diffad_core.export import export_onnx, onnx_predict  # noqa: E402
from diffad_core.model import DiffusionAD  # noqa: E402


def _model(input_norm: str = "none") -> DiffusionAD:
    torch.manual_seed(0)
    model = DiffusionAD.from_preset("tiny", image_size=32, input_norm=input_norm).eval()
    model.calibration = {"image_threshold": 0.4}
    return model


@pytest.mark.parametrize("input_norm", ["none", "gain"])
def test_onnx_equals_the_torch_model_for_the_same_noises(tmp_path: Path, input_norm: str) -> None:
    model = _model(input_norm)
    path = export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert '"t_s": 200' in meta["diffad_setting"] and "0.4" in meta["diffad_calibration"]
    for batch in (1, 3):  # the batch dimension is dynamic
        g = torch.Generator().manual_seed(batch)
        x = torch.rand(batch, 3, 32, 32, generator=g)
        ns, nb = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
        amap, score = session.run(None, {"images": x.numpy(), "noise_s": ns.numpy(), "noise_b": nb.numpy()})
        with torch.no_grad():
            rec = model.reconstruct(x, noise_s=ns, noise_b=nb)
            ref = model.segment(x, rec.x0_guided)
        np.testing.assert_allclose(amap, ref.numpy(), atol=1e-4)
        np.testing.assert_allclose(score, ref.flatten(1).topk(50, dim=1).values.mean(1).numpy(), atol=1e-4)
    amap, score = onnx_predict(path, x.numpy(), seed=0, session=session)
    again, _ = onnx_predict(path, x.numpy(), seed=0, session=session)
    assert amap.shape == (3, 1, 32, 32) and score.shape == (3,) and np.array_equal(amap, again)


def test_cli_export(tmp_path: Path, capsys) -> None:
    from diffad_core.checkpoint import save_weights

    save_weights(tmp_path / "m.safetensors", _model())
    assert main(["export", "--checkpoint", str(tmp_path / "m.safetensors")]) == 0
    assert (tmp_path / "m.onnx").is_file() and "one-step graph" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))


def test_openvino_export_agrees_when_openvino_is_installed(tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino", reason="openvino is optional (pip install openvino)")
    from diffad_core.export import OneStepGraph, export_openvino

    model = _model()
    xml = export_openvino(model, tmp_path / "m.xml")
    assert xml.is_file() and xml.with_suffix(".bin").is_file() and not list(tmp_path.glob(".*"))
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    ns, nb = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
    out = compiled({"images": x.numpy(), "noise_s": ns.numpy(), "noise_b": nb.numpy()})
    with torch.no_grad():
        ref, _ = OneStepGraph(model).eval()(x, ns, nb)
    # OpenVINO's CPU kernels accumulate differently: measured 1.2e-3 on a shipped 64 px model
    np.testing.assert_allclose(out[compiled.output("anomaly_map")], ref.numpy(), atol=5e-3)
