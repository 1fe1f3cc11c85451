"""diffad_core.course: the notebook explorers and course helpers, headless (build, move a slider,
check the redraw), and the course layer's separation from the core."""

from __future__ import annotations

import ast
import math
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
    box.controls["threshold"].value = 0.9
    assert box.values["flagged"] == 0.0 and math.isnan(box.values["precision"])
    assert "M > 0.90" in _title(box.figure, 1)


def test_explorer_text_repr_is_stable():
    box = threshold_explorer(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.float32))
    text = box._repr_mimebundle_()["text/plain"]
    assert text.startswith("threshold_explorer (threshold)") and "0x" not in text


def test_live_loss_curves_keeps_records_and_redraws():
    live = LiveLossCurves(every=2)
    live({"step": 1, "loss": 2.0, "noise": 1.0})
    assert live.figure is None
    live({"step": 2, "loss": 1.5, "noise": 0.8})
    assert live.figure is not None and len(live.figure.axes) == 2
    live({"step": 3, "loss": 1.0, "noise": 0.5})
    fig = live.close()
    assert len(live.records) == 3 and fig.axes[0].lines[-1].get_xdata().tolist() == [1, 2, 3]


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
