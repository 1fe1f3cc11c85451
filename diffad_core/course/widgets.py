"""Interactive explorers for the notebooks (ipywidgets): sliders + a figure that follows them.

Each ``*_explorer`` function builds an :class:`Explorer` (an ``ipywidgets.VBox``: a row of
sliders above an ``Output`` holding the figure), draws it once and returns it; the notebook cell
just evaluates it. Moving a slider redraws the figure with the new values:

    noising_explorer(schedule, image)            # x_t for any t, with abar_t
    guidance_explorer(model, image, mask)        # x0_small / x0_big / x0_guided for t_s, t_b, w
    threshold_explorer(image, amap, mask)        # the binary map at any threshold

The explorers keep their last figure (``explorer.figure``) and the numbers it shows
(``explorer.values``), so they can be tested without a browser. Noise is drawn once per explorer
(seeded), so a slider changes only the quantity it names, never the random draw.

Each explorer opens where moving a slider visibly changes the picture: the noising explorer at
t = 50 (by t = 200 the image is mostly noise already), the threshold explorer at the map's own
99th percentile with a slider over the map's range. A setting the method does not allow (t_s
not below t_b) is refused with a message above the figure, which keeps the last valid picture.

:class:`LiveLossCurves` is a ``fit(..., callback=...)`` callback that redraws the loss curves in
place while training runs.
"""

from __future__ import annotations

import html
import math
from typing import Any, Callable, Mapping, Optional

import matplotlib
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .. import viz
from ..metrics import ArrayLike
from ..model import DiffusionAD
from ..schedule import NoiseSchedule
from .helpers import masked_errors

__all__ = ["noising_explorer", "guidance_explorer", "threshold_explorer", "LiveLossCurves"]


def _widgets():
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - ipywidgets comes with the "course" extra
        raise ImportError("the explorers need ipywidgets: pip install 'diffad_core[course]' "
                          "(or pip install 'ipywidgets>=8')") from exc
    return ipywidgets


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def _make_explorer(
    name: str,
    controls: Mapping[str, Any],
    draw: Callable[..., tuple[Figure, dict[str, float]]],
    check: Optional[Callable[..., Optional[str]]] = None,
) -> Any:
    """A VBox of ``controls`` over a message line and an Output; ``draw(**values)`` returns
    (figure, numbers).

    ``check(**values)``, when given, runs before each redraw and returns None or the reason the
    values are refused; a refused setting shows that reason in the message line and leaves the
    figure and ``values`` as they were.

    The returned widget has attributes ``controls`` (name -> slider), ``output`` (the Output),
    ``message`` (the HTML line), ``error`` (the last refusal, or None), ``figure`` (the last
    drawn Figure), ``values`` (the last numbers) and ``renders`` (how many times it drew).
    """
    w = _widgets()

    class _Explorer(w.VBox):  # a subclass only to give the widget a short, stable text repr
        def _repr_mimebundle_(self, **kwargs: Any) -> Optional[dict]:
            bundle = super()._repr_mimebundle_(**kwargs) or {}
            sliders = ", ".join(controls)
            bundle["text/plain"] = f"{name} ({sliders}): run the notebook to move the sliders"
            return bundle

    output = w.Output()
    message = w.HTML(value="")
    row = w.HBox(list(controls.values()))
    box = _Explorer([row, message, output])
    box.controls = dict(controls)
    box.output = output
    box.message = message
    box.error = None
    box.figure = None
    box.values = {}
    box.renders = 0

    def render(_change: Any = None) -> None:
        args = {key: c.value for key, c in controls.items()}
        box.error = check(**args) if check is not None else None
        if box.error is not None:
            message.value = f'<span style="color: #b00020">{html.escape(box.error)}</span>'
            return
        message.value = ""
        fig, numbers = draw(**args)
        box.figure, box.values = fig, {**args, **numbers}
        box.renders += 1
        output.clear_output(wait=True)
        with output:
            _display(fig)

    for c in controls.values():
        c.observe(render, names="value")
    render()
    return box


def _image_chw(image: ArrayLike) -> torch.Tensor:
    """One image as float (1, 3, H, W) in [0, 1] from (3, H, W), (H, W, 3) or (1, 3, H, W)."""
    x = torch.as_tensor(np.asarray(image)) if not isinstance(image, torch.Tensor) else image.detach().cpu()
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 3 and x.shape[-1] == 3 and x.shape[0] != 3:
        x = x.permute(2, 0, 1)
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), (H, W, 3) or (1, 3, H, W); got {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x[None]


def _mask_hw(mask: Optional[ArrayLike], shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.zeros(shape, dtype=bool)
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    m = m.reshape(m.shape[-2:]) if m.ndim > 2 else m
    if m.shape != shape:
        raise ValueError(f"mask is {m.shape} but the image is {shape} (H, W)")
    return m > 0


# --------------------------------------------------------------------------- 1. forward noising


def noising_explorer(
    schedule: NoiseSchedule,
    image: ArrayLike,
    *,
    t: int = 50,
    seed: int = 0,
    step: int = 1,
) -> Any:
    """Slider over t: x_0, the noisy x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and abar_t.

    Args:
        schedule: the noise schedule (T = ``schedule.num_train_timesteps``).
        image: x_0, (3, H, W) / (H, W, 3) in [0, 1] (or uint8).
        t: initial timestep. The default 50 still shows the image under a visible grain; with the
            linear schedule and images in [0, 1] x_t is mostly noise from t = 200 on, so most of
            what there is to see lies in the first few hundred steps.
        seed: seed of the one noise draw eps ~ N(0, I) used for every t.
        step: slider step (the slider covers every t in [0, T - 1]).

    Returns:
        The explorer widget; ``values`` holds ``t``, ``abar_t`` and ``signal_to_noise``
        (abar_t / (1 - abar_t)).
    """
    w = _widgets()
    x0 = _image_chw(image)
    T = schedule.num_train_timesteps
    if not 0 <= t < T:
        raise ValueError(f"t={t} is outside [0, {T})")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    abar = schedule.alphas_cumprod.detach().cpu().double().numpy()

    def draw(t: int) -> tuple[Figure, dict[str, float]]:
        x_t = schedule.add_noise(x0, eps, int(t))
        a = float(abar[t])
        fig = Figure(figsize=(9.0, 3.0), layout="constrained")
        axes = fig.subplots(1, 3)
        axes[0].imshow(viz.as_image(x0[0]))
        axes[0].set_title("x_0")
        axes[1].imshow(viz.as_image(x_t[0].clamp(0, 1)))
        axes[1].set_title(f"x_t, t = {t} (clipped to [0, 1])")
        for ax in axes[:2]:
            ax.set_axis_off()
        axes[2].plot(np.arange(T), abar, lw=1.5)
        axes[2].axvline(t, color="C3", ls="--", lw=1)
        axes[2].set_title(f"abar_t = {a:.3f}")
        axes[2].set_xlabel("t")
        axes[2].set_ylim(0, 1.02)
        return fig, {"abar_t": a, "signal_to_noise": a / max(1.0 - a, 1e-12)}

    slider = w.IntSlider(value=t, min=0, max=T - 1, step=step, description="t", continuous_update=False)
    return _make_explorer("noising_explorer", {"t": slider}, draw)


# --------------------------------------------------------------------------- 3. norm guidance


def guidance_explorer(
    model: DiffusionAD,
    image: ArrayLike,
    mask: Optional[ArrayLike] = None,
    *,
    t_s: int = 200,
    t_b: int = 400,
    w: float = 1.0,
    seed: int = 0,
) -> Any:
    """Sliders over t_s, t_b and w: x0_small, x0_big, x0_guided and the error map |x - x0_g|.

    Args:
        model: a trained :class:`DiffusionAD` (any device; it is used in eval mode).
        image: the input x, (3, H, W) / (H, W, 3) in [0, 1], the model's image size.
        mask: optional ground-truth anomaly mask (H, W); the figure then reports the mean error
            inside and outside it (:func:`diffad_core.course.masked_errors`).
        t_s, t_b, w: initial values (the paper's inference setting by default); t_s < t_b.
        seed: seed of the two noises eps_s, eps_b, drawn once and reused for every setting.

    Returns:
        The explorer; ``values`` holds ``t_s``, ``t_b``, ``w``, ``error_inside`` and
        ``error_outside`` (NaN without a mask) of x0_guided. Moving a slider so that t_s >= t_b
        is refused: the message line says so, the figure and ``values`` keep the last valid
        setting, and ``explorer.error`` holds the message.

    Raises:
        ValueError: initial t_s, t_b not in 0 <= t_s < t_b < T.
    """
    wd = _widgets()
    T = model.schedule.num_train_timesteps
    if not 0 <= t_s < t_b < T:
        raise ValueError(f"need 0 <= t_s < t_b < {T} (a small step below a big one); got t_s={t_s}, t_b={t_b}")
    device = model.device
    x = _image_chw(image).to(device)
    m = _mask_hw(mask, tuple(x.shape[-2:]))
    gen = torch.Generator().manual_seed(seed)
    noise_s = torch.randn(x.shape, generator=gen).to(device)
    noise_b = torch.randn(x.shape, generator=gen).to(device)
    model.eval()

    def check(t_s: int, t_b: int, w: float) -> Optional[str]:
        if t_s < t_b:
            return None
        return (f"t_s = {t_s} is not below t_b = {t_b}: the small step must come before the big one. "
                f"Lower t_s or raise t_b; the figure still shows the last valid setting.")

    def draw(t_s: int, t_b: int, w: float) -> tuple[Figure, dict[str, float]]:
        with torch.no_grad():
            rec = model.reconstruct(x, t_s=int(t_s), t_b=int(t_b), w=float(w), noise_s=noise_s, noise_b=noise_b)
        gain = model.input_gain(x)
        small, big, guided = (model.to_image_space(r.float(), gain).cpu() for r in (rec.x0_small, rec.x0_big, rec.x0_guided))
        err = masked_errors(x.cpu(), guided, m)
        diff = (x.cpu() - guided).abs().mean(dim=1)[0].numpy()
        fig = Figure(figsize=(12.5, 2.9), layout="constrained")
        axes = fig.subplots(1, 5)
        panels = [(x.cpu()[0], "input x"), (small[0], f"x0_small (t_s={t_s})"), (big[0], f"x0_big (t_b={t_b})"),
                  (guided[0], f"x0_guided (w={w:g})")]
        for ax, (img, title) in zip(axes, panels):
            ax.imshow(viz.as_image(img))
            ax.set_title(title, fontsize=9)
        axes[4].imshow(diff, cmap="magma", vmin=0.0, vmax=max(0.25, float(diff.max())))
        if m.any():
            axes[4].contour(m, levels=[0.5], colors="c", linewidths=0.8)
        axes[4].set_title(f"|x - x0_g|: in {err.inside:.3f}, out {err.outside:.3f}", fontsize=9)
        for ax in axes:
            ax.set_axis_off()
        return fig, {"error_inside": err.inside, "error_outside": err.outside}

    controls = {
        "t_s": wd.IntSlider(value=t_s, min=0, max=T - 1, step=10, description="t_s", continuous_update=False),
        "t_b": wd.IntSlider(value=t_b, min=0, max=T - 1, step=10, description="t_b", continuous_update=False),
        "w": wd.FloatSlider(value=w, min=0.0, max=5.0, step=0.25, description="w", continuous_update=False),
    }
    return _make_explorer("guidance_explorer", controls, draw, check)


# --------------------------------------------------------------------------- 5. thresholds


def _decimals(step: float) -> int:
    """Decimals that show a value to the precision of a slider ``step`` (at least 2)."""
    return max(2, -math.floor(math.log10(step))) if step > 0 else 2


def _default_threshold(m: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the map M; when ties at the top make ``M > q`` flag nothing, the next
    smaller value of M, so the first picture always shows some pixels (none only for a constant M)."""
    q = float(np.quantile(m, quantile))
    if not (m > q).any():
        below = m[m < q]
        q = float(below.max()) if below.size else q
    return q


def threshold_explorer(
    image: ArrayLike,
    amap: ArrayLike,
    mask: Optional[ArrayLike] = None,
    *,
    threshold: Optional[float] = None,
    quantile: float = 0.99,
    stretch: bool = True,
) -> Any:
    """Slider over a threshold on an anomaly map M: overlay, the binary map M > threshold, truth.

    The slider covers the map's own range [min M, max M] (a threshold outside it flags all
    pixels or none) and starts at its ``quantile``, so the first picture flags about 1 % of the
    pixels whatever the map's scale. A ``stretch`` check box switches the overlay's colours
    between the map's min / max (faint maps become readable) and the absolute [0, 1] scale
    (maps of different images become comparable); the colour bar shows the scale in use and the
    threshold on it.

    Args:
        image: (3, H, W) / (H, W, 3) in [0, 1].
        amap: anomaly map M (H, W) or (1, H, W) in [0, 1].
        mask: optional ground truth (H, W); then ``values`` also holds ``precision``,
            ``recall`` and ``iou`` of the binary map (NaN when undefined).
        threshold: initial threshold; None (default) takes the ``quantile`` of M. A value
            outside the map's range widens the slider to include it.
        quantile: the quantile of M the slider starts at when ``threshold`` is None.
        stretch: initial state of the stretch check box.

    Returns:
        The explorer; ``values`` holds ``threshold``, ``stretch`` and ``flagged`` (fraction of
        pixels above the threshold).
    """
    wd = _widgets()
    img = viz.as_image(image)
    m = viz.as_map(amap)
    if m.shape != img.shape[:2]:
        raise ValueError(f"anomaly map is {m.shape} but the image is {img.shape[:2]} (H, W)")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    truth = _mask_hw(mask, m.shape) if mask is not None else None
    lo, hi = float(m.min()), float(m.max())
    if threshold is None:
        threshold = _default_threshold(m, quantile)
    lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
    if not hi > lo:  # a constant map: any range shows the same (empty) picture
        hi = lo + 1.0
    step = (hi - lo) / 200
    digits = _decimals(step)
    cmap = "jet"

    def draw(threshold: float, stretch: bool) -> tuple[Figure, dict[str, float]]:
        pred = m > threshold
        numbers = {"flagged": float(pred.mean())}
        title = f"M > {threshold:.{digits}f}: {100 * numbers['flagged']:.1f} % of pixels"
        if truth is not None:
            tp = float(np.count_nonzero(pred & truth))
            fp = float(np.count_nonzero(pred & ~truth))
            fn = float(np.count_nonzero(~pred & truth))
            nan = float("nan")
            numbers["precision"] = tp / (tp + fp) if tp + fp else nan
            numbers["recall"] = tp / (tp + fn) if tp + fn else nan
            numbers["iou"] = tp / (tp + fp + fn) if tp + fp + fn else nan
            title += (f"\nprecision {numbers['precision']:.3f}, recall {numbers['recall']:.3f}, "
                      f"IoU {numbers['iou']:.3f}")
        vmin, vmax = (lo, hi) if stretch else (0.0, max(1.0, hi))
        n = 3 if truth is not None else 2
        fig = Figure(figsize=(3.0 * n + 0.6, 3.2), layout="constrained")
        axes = fig.subplots(1, n)
        axes[0].imshow(viz.overlay_anomaly_map(img, m, vmin=vmin, vmax=vmax, cmap=cmap))
        scale = "stretched to its range" if stretch else "fixed scale"
        axes[0].set_title(f"anomaly map M ({scale})", fontsize=9)
        bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), matplotlib.colormaps[cmap]), ax=axes[0],
                           fraction=0.046, pad=0.03)
        bar.ax.axhline(threshold, color="w", lw=3.5)  # the threshold on the colour scale
        bar.ax.axhline(threshold, color="k", lw=1.5)
        bar.ax.tick_params(labelsize=7)
        axes[1].imshow(pred, cmap="gray", vmin=0, vmax=1)
        axes[1].set_title(title, fontsize=9)
        if truth is not None:
            axes[2].imshow(truth, cmap="gray", vmin=0, vmax=1)
            axes[2].set_title("ground truth", fontsize=9)
        for ax in axes:
            ax.set_axis_off()
        return fig, numbers

    controls = {
        "threshold": wd.FloatSlider(value=float(threshold), min=lo, max=hi, step=step, description="threshold",
                                    readout_format=f".{digits}f", continuous_update=False),
        "stretch": wd.Checkbox(value=stretch, description="stretch colours", indent=False),
    }
    return _make_explorer("threshold_explorer", controls, draw)


# --------------------------------------------------------------------------- 4. live training curves


class LiveLossCurves:
    """A ``fit(..., callback=...)`` callback: collects the logged records and redraws the loss
    curves (:func:`diffad_core.viz.plot_loss_curves`) in one notebook output, every ``every``
    records and once more at :meth:`close`.

    The curves are drawn with point markers, and each axes is scaled to the data with a margin,
    so the very first record already shows as a point at its value. With ``total_steps`` the
    x axis spans the whole run from the first update and the curves grow along it.

    Attributes: ``records`` (the log so far), ``figure`` (the last drawn figure).
    """

    def __init__(self, every: int = 1, smoothing: float = 0.0, *, total_steps: Optional[int] = None) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be >= 1 or None, got {total_steps}")
        self.every = every
        self.smoothing = smoothing
        self.total_steps = total_steps
        self.records: list[dict[str, float]] = []
        self.figure: Optional[Figure] = None
        self._handle: Any = None

    def __call__(self, record: Mapping[str, float]) -> None:
        self.records.append(dict(record))
        if len(self.records) % self.every == 0:
            self._draw()

    def _scale(self, fig: Figure) -> None:
        """Markers on the curves and limits from the data: y over [min, max] plus a margin of
        10 % of the spread (5 % of the value for a single point or a flat curve), x from 0 to
        ``total_steps`` or the last step."""
        for ax in fig.axes:
            if not ax.lines:
                continue
            ys = np.concatenate([np.asarray(line.get_ydata(), dtype=np.float64) for line in ax.lines])
            xs = np.concatenate([np.asarray(line.get_xdata(), dtype=np.float64) for line in ax.lines])
            ys, xs = ys[np.isfinite(ys)], xs[np.isfinite(xs)]
            if ys.size == 0:
                continue
            main = ax.lines[-1]  # plot_loss_curves draws the (smoothed) curve last
            main.set_marker("o")
            main.set_markersize(3 if len(main.get_xdata()) <= 50 else 0)
            y0, y1 = float(ys.min()), float(ys.max())
            pad = 0.1 * (y1 - y0) if y1 > y0 else 0.05 * abs(y0) or 1e-3
            ax.set_ylim(y0 - pad, y1 + pad)
            x1 = float(self.total_steps) if self.total_steps is not None else float(xs.max())
            ax.set_xlim(0.0, max(x1, float(xs.max()), 1.0) * 1.02)

    def _draw(self) -> None:
        from IPython.display import display

        self.figure = viz.plot_loss_curves(self.records, smoothing=self.smoothing)
        self._scale(self.figure)
        if self._handle is None:
            self._handle = display(self.figure, display_id=True)
        else:
            self._handle.update(self.figure)

    def close(self) -> Optional[Figure]:
        """Draw the final curves (if any record arrived) and return the figure."""
        if self.records:
            self._draw()
        return self.figure
