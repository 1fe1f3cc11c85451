# One-command set-up: every target below creates .venv and installs the package itself.
# TORCH_SPEC pins the PyTorch wheel; the default is a release that exists for CPU and CUDA.
# Override it for another build, e.g.  make test TORCH_SPEC='torch>=2.3'
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.diffad-installed
DEMO_OUT ?= runs/demo
DEMO_MINUTES ?= 10

.PHONY: setup test unit nbval book demo lab bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

unit: setup
	$(PY) -m pytest -q tests

test: unit

demo: setup
	$(VENV)/bin/diffad demo --out $(DEMO_OUT) --minutes $(DEMO_MINUTES)

clean:
	rm -rf $(VENV) build book runs
