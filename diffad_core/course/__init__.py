"""The course layer: what the notebooks call that is not part of the method.

Kept out of the library core so that ``import diffad_core`` (and the CLI, training and
evaluation) never needs Jupyter: the core never imports this package, while this package uses
the core freely. It needs the ``course`` extra (``pip install 'diffad_core[course]'``: ipywidgets
and IPython); both are imported only inside the functions that display something, so importing
``diffad_core.course`` itself works without them.

* :mod:`diffad_core.course.helpers`: sample pickers (:func:`mini_examples`,
  :func:`rank_examples`), measurements (:func:`masked_errors`, :func:`anomaly_to_noise`,
  :func:`time_per_image`, :func:`compare_speed`) and the notebooks' model (:func:`course_model`, :func:`shipped_steps`);
* :mod:`diffad_core.course.widgets`: the ipywidgets explorers (:func:`noising_explorer`,
  :func:`guidance_explorer`, :func:`threshold_explorer`) and :class:`LiveLossCurves`.

The figures themselves are drawn by :mod:`diffad_core.viz`, which stays in the core (evaluation
writes its report figures with it).
"""

from __future__ import annotations

from .helpers import (
    RETRAIN_SECONDS_PER_STEP_CPU,
    Examples,
    MaskedError,
    RankedExamples,
    SpeedComparison,
    anomaly_to_noise,
    compare_speed,
    course_model,
    masked_errors,
    mini_examples,
    rank_examples,
    shipped_steps,
    time_per_image,
)
from .widgets import LiveLossCurves, guidance_explorer, noising_explorer, threshold_explorer

from . import helpers as _helpers, widgets as _widgets

__all__ = [*_helpers.__all__, *_widgets.__all__]
