"""The book converter: math for MathJax, and every executed notebook's figures in its chapter."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "tools" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bb = _load_builder()


def test_inline_and_display_math_become_mathjax_delimiters():
    src = "A $x_t$ and $$\\bar\\alpha_t$$ but `$HOME` stays.\n```python\nprice = '$5 $6'\n```\n$a*b$\n"
    out = bb.fix_math(src)
    assert "\\\\(x\\_t\\\\)" in out
    assert "\\\\[\\bar\\alpha\\_t\\\\]" in out
    assert "`$HOME`" in out and "price = '$5 $6'" in out
    assert "\\\\(a\\*b\\\\)" in out


def test_dollar_amounts_without_a_pair_are_left_alone():
    assert bb.fix_math("costs $5 only\n") == "costs $5 only\n"


def _png_count(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    n = sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
    state = nb.get("metadata", {}).get("widgets", {}).get(bb.WIDGET_STATE, {}).get("state", {})
    views = {o["data"][bb.WIDGET_VIEW]["model_id"] for c in nb["cells"] for o in c.get("outputs", [])
             if bb.WIDGET_VIEW in o.get("data", {})}
    return n, views, state


def test_there_are_five_executed_notebooks():
    assert len(NOTEBOOKS) == 5, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_has_its_figures(nb_path, tmp_path):
    n_png, views, _ = _png_count(nb_path)
    assert n_png >= 2, f"{nb_path.name} has {n_png} figures in its outputs: execute it before committing"
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    (nb_dir / nb_path.name).write_bytes(nb_path.read_bytes())
    chapters = bb.convert(nb_dir, tmp_path / "src")
    (chapter,) = chapters
    md = (tmp_path / "src" / f"{nb_path.stem}.md").read_text(encoding="utf-8")
    # every PNG output (plus one per widget, from its saved state) is a file linked from the chapter
    assert len(chapter.figures) >= n_png + len(views)
    for fig in chapter.figures:
        assert fig.is_file() and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({fig.relative_to(tmp_path / 'src').as_posix()})" in md
    summary = (tmp_path / "src" / "SUMMARY.md").read_text(encoding="utf-8")
    assert f"({nb_path.stem}.md)" in summary
    assert "$$" not in md.replace("```", "")  # display math was rewritten


def test_built_book_when_present_links_existing_figures():
    html_dir = ROOT / "book"
    if not (html_dir / "index.html").is_file():
        pytest.skip("book/ not built (make book)")
    for nb_path in NOTEBOOKS:
        page = html_dir / f"{nb_path.stem}.html"
        assert page.is_file(), page
        text = page.read_text(encoding="utf-8")
        figs = [s for s in text.split('src="')[1:] if s.startswith("figures/")]
        assert figs, f"{page.name} shows no figure"
        for s in figs:
            assert (html_dir / s.split('"')[0]).is_file()
