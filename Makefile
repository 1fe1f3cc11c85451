# One-command set-up: every target below creates .venv and installs the package itself.
# TORCH_SPEC pins the PyTorch wheel; the default is a release that exists for CPU and CUDA.
# Override it for another build, e.g.  make test TORCH_SPEC='torch>=2.3'
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
# Passive OpenMP waiting: with torch's default spinning threads, a second busy process on a small
# machine makes every step ~5x slower (README, Threads); passive waiting costs ~20 % when idle.
export OMP_WAIT_POLICY ?= PASSIVE
STAMP := $(VENV)/.diffad-installed
DEMO_OUT ?= runs/demo

.PHONY: setup test unit nbval book demo lab bench clean reliability

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

unit: setup
	$(PY) -m pytest -q tests

test: unit nbval book

# The notebooks run under nbval with the venv's kernel (its bin/ first in PATH) and are compared
# with their committed outputs; NB_THREADS=1 keeps them fast on a shared, loaded CPU.
NB_THREADS ?= 1
nbval: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" OMP_NUM_THREADS=$(NB_THREADS) $(PY) -m pytest -q --nbval --nbval-current-env \
		--nbval-cell-timeout=300 --nbval-sanitize-with nbval_sanitize.cfg notebooks

# The course as an mdBook: executed notebooks -> build/book_src (Markdown + PNG) -> book/ (HTML).
book: setup
	$(PY) tools/build_book.py

# JupyterLab on the course notebooks, with the venv's kernel and the project's settings
# (.jupyter/lab/user-settings: no Jupyter news pop-up), not those of ~/.jupyter. One torch thread
# per kernel, as the notebooks' stated run times assume (README, The course); root (containers)
# needs --allow-root.
lab: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" JUPYTERLAB_SETTINGS_DIR="$(abspath .jupyter/lab/user-settings)" \
		OMP_NUM_THREADS=$(NB_THREADS) $(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root,)

# Rerun the fuzz / fault / determinism suites, recording their counts, and re-render the README table.
RELIABILITY_TESTS := tests/test_fuzz_readers.py tests/test_fuzz_metrics.py tests/test_fuzz_cli.py tests/test_faults.py tests/test_determinism.py
reliability: setup
	rm -f tests/reliability_counts.json
	DIFFAD_RELIABILITY_COUNTS=tests/reliability_counts.json $(PY) -m pytest -q $(RELIABILITY_TESTS) \
		--deselect tests/test_faults.py::test_readme_reliability_table_is_rendered_from_the_committed_counts
	$(PY) tools/reliability_table.py --write
	$(PY) -m pytest -q tests/test_faults.py::test_readme_reliability_table_is_rendered_from_the_committed_counts

demo: setup
	$(VENV)/bin/diffad demo --out $(DEMO_OUT)$(if $(DEMO_MINUTES), --minutes $(DEMO_MINUTES))

clean:
	rm -rf $(VENV) build book runs
