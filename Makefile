# The README's commands. Every install step lives here so a fresh clone on a fresh machine works.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: serve test lint bench bench-smoke clean

# Server only: no torch, no test tools.
$(VENV)/.server: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[server]'
	touch $@

# Everything the suite needs. torch==2.13.0 first: it is the local CPU wheel, and the `torch>=2.1` range of
# the extra is then satisfied without pip reaching for a CUDA build.
$(VENV)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[server,torch,dev]'
	touch $@ $(VENV)/.server

serve: $(VENV)/.server
	mkdir -p data
	AUGSERVE_HOST=$(HOST) AUGSERVE_PORT=$(PORT) AUGSERVE_DATA_DIR=$(CURDIR)/data $(BIN)/augserve

lint: $(VENV)/.dev
	$(BIN)/ruff check .

test: $(VENV)/.dev lint
	$(BIN)/python -m pytest -q

# Benchmarks: side-by-side ratios in one run; results in bench/results/ (JSON, markdown, plot).
bench: $(VENV)/.dev
	$(BIN)/python bench/run.py

bench-smoke: $(VENV)/.dev
	$(BIN)/python bench/run.py --smoke --out $(CURDIR)/.bench-smoke

clean:
	rm -rf $(VENV) data .pytest_cache
