"""diffad_core.course: the notebook explorers and course helpers, headless (build, move a slider,
check the redraw), and the course layer's separation from the core."""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import diffad_core
import diffad_core.course
from diffad_core import DiffusionAD, NoiseSchedule
from diffad_core.course import (
    LiveLossCurves,
    compare_speed,
    guidance_explorer,
    masked_errors,
    mini_examples,
    noising_explorer,
    rank_examples,
    threshold_explorer,
    time_per_image,
)
from diffad_core.course import helpers, widgets
from diffad_core.viz import overlay_anomaly_map

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(diffad_core.__file__).resolve().parent
# Modules only the course layer may import (the core must run without Jupyter).
COURSE_ONLY = ("diffad_core.course", "ipywidgets", "IPython")


@pytest.fixture(scope="module")
def tiny_model() -> DiffusionAD:
    torch.manual_seed(0)
    return DiffusionAD.from_preset("tiny", image_size=32).eval()


def _title(fig, i: int) -> str:
    return fig.axes[i].get_title()


def test_noising_explorer_redraws_with_the_new_t():
    sched = NoiseSchedule(1000)
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    box = noising_explorer(sched, image, t=100)
    assert box.renders == 1 and "t = 100" in _title(box.figure, 1)
    first = box.figure
    box.controls["t"].value = 700
    assert box.renders == 2 and box.figure is not first
    assert "t = 700" in _title(box.figure, 1)
    assert box.values["abar_t"] == pytest.approx(float(sched.alphas_cumprod[700]))
    # x_t shown is the closed form with the explorer's one noise draw: at t = 700 the picture is
    # mostly noise, so it differs from x_0 much more than at t = 100.
    shown = box.figure.axes[1].images[0].get_array()
    assert np.abs(np.asarray(shown) - image.permute(1, 2, 0).numpy()).mean() > 0.2


def test_noising_explorer_starts_where_moving_t_shows_a_change():
    sched = NoiseSchedule(1000)
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    box = noising_explorer(sched, image)
    slider = box.controls["t"]
    assert slider.value == 50 and (slider.min, slider.max, slider.step) == (0, 999, 1)
    x0 = image.permute(1, 2, 0).numpy()
    at_50 = np.asarray(box.figure.axes[1].images[0].get_array())
    slider.value = 150
    at_150 = np.asarray(box.figure.axes[1].images[0].get_array())
    # the picture at 50 still shows the image through the grain; 100 steps later it has changed a lot
    assert np.abs(at_50 - x0).mean() < 0.15 < np.abs(at_150 - at_50).mean() + np.abs(at_50 - x0).mean()
    assert np.abs(at_150 - at_50).mean() > 0.05


def test_noising_explorer_rejects_t_outside_the_schedule():
    with pytest.raises(ValueError, match="outside"):
        noising_explorer(NoiseSchedule(100), torch.rand(3, 8, 8), t=100)


def test_guidance_explorer_follows_each_slider(tiny_model):
    ex = mini_examples("brick", ["scratch"], image_size=32)
    box = guidance_explorer(tiny_model, ex.images[0], ex.masks[0])
    assert set(box.controls) == {"t_s", "t_b", "w"}
    before = dict(box.values)
    assert before["t_s"] == 200 and before["t_b"] == 400 and before["w"] == 1.0
    assert math.isfinite(before["error_inside"]) and math.isfinite(before["error_outside"])
    box.controls["w"].value = 3.0
    assert box.renders == 2 and box.values["w"] == 3.0
    assert "w=3" in _title(box.figure, 3)
    box.controls["t_b"].value = 800
    assert "t_b=800" in _title(box.figure, 2)
    # same noises, same settings -> same numbers (the draw is fixed per explorer)
    box.controls["t_b"].value = 400
    box.controls["w"].value = 1.0
    assert box.values["error_inside"] == pytest.approx(before["error_inside"], rel=1e-5)


def test_guidance_explorer_refuses_t_s_not_below_t_b(tiny_model):
    ex = mini_examples("brick", ["scratch"], image_size=32)
    with pytest.raises(ValueError, match="t_s < t_b"):
        guidance_explorer(tiny_model, ex.images[0], ex.masks[0], t_s=800, t_b=400)
    box = guidance_explorer(tiny_model, ex.images[0], ex.masks[0])
    assert box.error is None and box.message.value == ""
    figure, values = box.figure, dict(box.values)
    box.controls["t_s"].value = 800  # t_b is still 400
    assert box.renders == 1 and box.figure is figure and box.values == values  # no redraw
    assert "t_s = 800 is not below t_b = 400" in box.error and "not below" in box.message.value
    box.controls["t_b"].value = 800  # equal: still refused
    assert box.renders == 1 and box.error is not None
    box.controls["t_b"].value = 900
    assert box.renders == 2 and box.error is None and box.message.value == ""
    assert box.values["t_s"] == 800 and "t_b=900" in _title(box.figure, 2)


def test_threshold_explorer_counts_pixels_and_scores_against_the_mask():
    amap = np.zeros((10, 10), dtype=np.float32)
    amap[:5] = 0.8  # top half hot
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[:5, :5] = 1  # a quarter is truly anomalous
    box = threshold_explorer(np.full((10, 10, 3), 0.5, np.float32), amap, mask, threshold=0.5)
    assert box.values["flagged"] == pytest.approx(0.5)
    assert box.values["precision"] == pytest.approx(0.5)  # 25 of the 50 flagged pixels
    assert box.values["recall"] == pytest.approx(1.0)
    assert box.values["iou"] == pytest.approx(0.5)
    box.controls["threshold"].value = 0.9  # above the map's max: the slider stops there
    assert box.controls["threshold"].value == pytest.approx(0.8)
    assert box.values["flagged"] == 0.0 and math.isnan(box.values["precision"])
    assert "M > 0.800" in _title(box.figure, 1)


def _ramp_map(lo: float = 0.07, hi: float = 0.50, side: int = 40) -> np.ndarray:
    """A map whose values spread evenly over [lo, hi] (like a trained model's on a normal image)."""
    return np.linspace(lo, hi, side * side, dtype=np.float32).reshape(side, side)


def test_threshold_explorer_starts_inside_the_maps_range():
    amap = _ramp_map()
    box = threshold_explorer(np.full((40, 40, 3), 0.5, np.float32), amap)
    slider = box.controls["threshold"]
    assert slider.min == pytest.approx(0.07) and slider.max == pytest.approx(0.50)
    assert slider.value == pytest.approx(float(np.quantile(amap, 0.99)))
    assert box.values["flagged"] == pytest.approx(0.01, abs=0.002)  # about 1 % flagged, not 0
    box = threshold_explorer(np.full((40, 40, 3), 0.5, np.float32), amap, quantile=0.9)
    assert box.values["flagged"] == pytest.approx(0.10, abs=0.002)
    # an explicit threshold outside the map's range widens the slider instead of being clamped
    box = threshold_explorer(np.full((40, 40, 3), 0.5, np.float32), amap, threshold=0.8)
    assert box.controls["threshold"].max == pytest.approx(0.8) and box.values["flagged"] == 0.0


def test_threshold_explorer_default_flags_pixels_despite_ties_at_the_top():
    amap = np.zeros((10, 10), np.float32)
    amap[:5] = 0.8  # the 99th percentile is the max, which would flag nothing
    box = threshold_explorer(np.zeros((10, 10, 3), np.float32), amap)
    assert box.values["flagged"] == pytest.approx(0.5)


def test_threshold_explorer_stretches_the_colours_and_draws_a_colour_bar():
    amap = _ramp_map()
    box = threshold_explorer(np.full((40, 40, 3), 0.5, np.float32), amap, np.zeros((40, 40)))
    assert box.values["stretch"] is True and "stretched" in _title(box.figure, 0)
    bar = box.figure.axes[-1]  # the colour bar's axes comes after the three panels
    assert len(box.figure.axes) == 4 and bar.get_ylim() == pytest.approx((0.07, 0.50))
    stretched = np.asarray(box.figure.axes[0].images[0].get_array())
    box.controls["stretch"].value = False
    assert box.renders == 2 and "fixed" in _title(box.figure, 0)
    assert box.figure.axes[-1].get_ylim() == pytest.approx((0.0, 1.0))
    fixed = np.asarray(box.figure.axes[0].images[0].get_array())
    image = np.full((40, 40, 3), 0.5, np.float32)
    assert np.allclose(stretched, overlay_anomaly_map(image, amap, vmin=0.07, vmax=0.50))
    assert np.allclose(fixed, overlay_anomaly_map(image, amap, vmin=0.0, vmax=1.0))
    # an empty mask: everything flagged is a false positive; three decimals in the title
    assert "M > 0.496: 1.0 % of pixels\nprecision 0.000, recall nan, IoU 0.000" == _title(box.figure, 1)


def test_explorer_text_repr_is_stable():
    box = threshold_explorer(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.float32))
    text = box._repr_mimebundle_()["text/plain"]
    assert text.startswith("threshold_explorer (threshold, stretch)") and "0x" not in text


def test_live_loss_curves_keeps_records_and_redraws():
    live = LiveLossCurves(every=2)
    live({"step": 1, "loss": 2.0, "noise": 1.0})
    assert live.figure is None
    live({"step": 2, "loss": 1.5, "noise": 0.8})
    assert live.figure is not None and len(live.figure.axes) == 2
    live({"step": 3, "loss": 1.0, "noise": 0.5})
    fig = live.close()
    assert len(live.records) == 3 and fig.axes[0].lines[-1].get_xdata().tolist() == [1, 2, 3]


def test_live_loss_curves_show_the_first_point_at_its_value():
    live = LiveLossCurves(total_steps=10)
    live({"step": 1, "loss": 0.06, "noise": 0.026})
    ax = live.figure.axes[0]
    assert ax.lines[-1].get_marker() == "o"  # one point is drawn, not an invisible line
    lo, hi = ax.get_ylim()
    assert lo < 0.06 < hi and hi - lo == pytest.approx(0.1 * 0.06)  # 5 % each side, not 0.96..1.04
    assert ax.get_xlim()[0] == 0.0 and ax.get_xlim()[1] >= 10  # the whole run's x range
    live({"step": 2, "loss": 0.04, "noise": 0.02})
    lo, hi = live.figure.axes[0].get_ylim()
    assert lo == pytest.approx(0.04 - 0.002) and hi == pytest.approx(0.06 + 0.002)
    with pytest.raises(ValueError, match="total_steps"):
        LiveLossCurves(total_steps=0)


def test_masked_errors_by_hand():
    x = torch.zeros(3, 4, 4)
    x0 = torch.zeros(3, 4, 4)
    x0[:, 0, 0] = 0.6  # the one masked pixel
    x0[0, 3, 3] = 0.3  # one outside pixel, one channel: channel mean 0.1
    mask = torch.zeros(4, 4)
    mask[0, 0] = 1
    err = masked_errors(x, x0, mask)
    assert err.inside == pytest.approx(0.6)
    assert err.outside == pytest.approx(0.1 / 15)
    assert math.isnan(masked_errors(x, x0, torch.zeros(4, 4)).inside)
    with pytest.raises(ValueError, match="same shape"):
        masked_errors(x, x0[:, :2], mask)


def test_mini_examples_render_masks_where_the_image_differs():
    ex = mini_examples("nut", ["good", "stain"], image_size=48, seed=1)
    assert ex.images.shape == (2, 3, 48, 48) and ex.masks.shape == (2, 1, 48, 48)
    assert ex.masks[0].sum() == 0 and torch.equal(ex.images[0], ex.clean[0])
    changed = (ex.images[1] - ex.clean[1]).abs().amax(dim=0) > 0
    assert torch.equal(changed, ex.masks[1, 0] > 0)
    assert torch.equal(ex.images, mini_examples("nut", ["good", "stain"], image_size=48, seed=1).images)


def test_rank_examples_by_hand():
    scores = [0.1, 0.9, 0.4, 0.8, 0.2, 0.7]
    labels = [0, 1, 1, 0, 1, 0]
    r = rank_examples(scores, labels, k=2)
    assert r.best_defects.tolist() == [1, 2]
    assert r.worst_defects.tolist() == [4, 2]
    assert r.worst_good.tolist() == [3, 5]


def test_time_per_image_divides_by_batch_and_counts_calls():
    calls = []
    sec = time_per_image(lambda: calls.append(1), batch=4, repeats=3, warmup=2)
    assert len(calls) == 5 and 0 <= sec < 1


def test_compare_speed_counts_network_calls(tiny_model):
    x = torch.rand(1, 3, 32, 32)
    r = compare_speed(tiny_model, x, t_start=5, method="ddim", steps=3, repeats=1)
    assert r.one_step_calls == 2 and r.iterative_calls == 3
    assert r.ratio == pytest.approx(r.iterative / r.one_step)


def test_course_model_prints_nothing_when_loading(capsys):
    model = helpers.course_model("brick")
    assert isinstance(model, DiffusionAD) and capsys.readouterr() == ("", "")


def test_course_model_retrain_announces_its_length_and_shows_progress(monkeypatch, capsys):
    seen = {}

    class _Result:
        model = "trained"

    def fake_fit(cfg, train, **kwargs):
        seen.update(steps=cfg.steps, progress=kwargs["progress"], out=capsys.readouterr().out)
        return _Result()

    monkeypatch.setattr("diffad_core.train.fit", fake_fit)
    assert helpers.course_model("brick", retrain=True, steps=120) == "trained"
    assert seen["steps"] == 120 and seen["progress"] is True
    line = seen["out"]  # printed before training starts
    minutes = round(120 * helpers.RETRAIN_SECONDS_PER_STEP_CPU / 60)
    assert "120 steps" in line and f"roughly {minutes} min" in line
    assert f"the shipped model had {helpers.shipped_steps('brick')})" in line
    helpers.course_model("brick", retrain=True, steps=5, progress=False)
    assert seen["progress"] is False


def _weights_steps(name: str) -> int:
    from safetensors import safe_open

    with safe_open(str(PACKAGE / "weights" / name), "pt") as f:
        return int(f.metadata()["steps"])


def _markdown(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_notebook_step_counts_match_the_shipped_weights():
    assert helpers.shipped_steps("brick") == _weights_steps("mini-brick.safetensors")
    adapted, pretrained = _weights_steps("mini-brick.safetensors"), _weights_steps("pretrained-tiny-64.safetensors")
    claims = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = " ".join(_markdown(nb).split())
        claims += [(nb.name, int(n), adapted) for n in re.findall(r"adapted [^.]*?for (\d+) steps", text)]
        claims += [(nb.name, int(n), pretrained) for n in re.findall(r"pretrained weights \((\d+) steps", text)]
    assert claims, "no notebook states the shipped models' steps"
    assert [c for c in claims if c[1] != c[2]] == []


def test_every_notebook_states_its_run_time():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        intro = "".join(json.loads(nb.read_text())["cells"][0]["source"])
        assert re.search(r"runs in about \d+ s on a 2-core CPU", intro), nb.name


# --------------------------------------------------------------------------- separation from the core


def _is_course_only(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in COURSE_ONLY)


def _modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; every module it left in ``sys.modules``."""
    probe = f"{code}\nimport sys\nprint(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_the_core_does_not_import_the_course_layer():
    code = "import diffad_core, diffad_core.evaluate, diffad_core.train, diffad_core.cli, diffad_core.viz"
    assert [m for m in _modules_after(code) if _is_course_only(m)] == []


def test_importing_the_course_does_not_import_ipywidgets():
    # ipywidgets and IPython are imported inside the functions that display something
    modules = _modules_after("import diffad_core.course")
    assert "diffad_core.course.widgets" in modules
    assert [m for m in modules if m.split(".")[0] in ("ipywidgets", "IPython")] == []


def _imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, including those inside functions;
    ``from X import y`` yields both X and X.y (y may be a submodule)."""
    package = ["diffad_core", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join(parts + ([node.module] if node.module else []))
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def test_no_core_module_imports_the_course_layer():
    """Static check of every module outside diffad_core/course/ (viz.py included)."""
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "course"
        for line, name in _imported_names(path)
        if _is_course_only(name)
    ]
    assert not offenders, offenders


def test_course_reexports_its_modules_public_names():
    assert sorted(diffad_core.course.__all__) == sorted(helpers.__all__ + widgets.__all__)
    for name in diffad_core.course.__all__:
        assert getattr(diffad_core.course, name) is getattr(helpers if name in helpers.__all__ else widgets, name)


def test_dev_installs_the_course_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras["course"]) <= set(extras["dev"])  # so `make test` installs it
    assert not any(req.lower().startswith(("ipywidgets", "ipython")) for req in project["dependencies"])
