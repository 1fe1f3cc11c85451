"""The package's public surface: lazy imports, every ``__all__`` name resolvable, no shadowing."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_lazy_and_every_public_name_resolves() -> None:
    code = ("import sys, diffad_core as d; assert 'torch' not in sys.modules; "
            "missing = [n for n in d.__all__ if getattr(d, n, None) is None]; print(missing)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_evaluate_stays_the_function_after_its_module_is_imported() -> None:
    code = ("import diffad_core.evaluate, diffad_core.pipeline; from diffad_core import evaluate; "
            "import diffad_core as d; print(callable(evaluate), callable(d.evaluate))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "True True"
