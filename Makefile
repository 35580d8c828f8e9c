# The README's commands. Every install step lives here so a fresh clone on a fresh machine works.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# `make serve PORT=8011` and `AUGSERVE_PORT=8011 make serve` both work: a make variable, else the environment's.
HOST   ?= $(or $(AUGSERVE_HOST),127.0.0.1)
PORT   ?= $(or $(AUGSERVE_PORT),8000)
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: serve test lint bench bench-smoke clean container-test

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

# Debian's nginx for tests/deploy, which run the real docker/nginx.conf. Skipped when nginx is there already
# (/usr/sbin is not on a non-root PATH). Package `nginx`: bookworm's `nginx-light` is only nginx plus the echo
# module. The tests run it with their own prefix and ports, never as the system service.
.PHONY: system-deps
system-deps:
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx)
	# Debian's Chromium for tests/test_playground.py: playwright drives it (never `playwright install`, which
	# downloads a browser).
	test -x /usr/bin/chromium || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)

serve: $(VENV)/.server
	mkdir -p data
	$(BIN)/augserve serve --host $(HOST) --port $(PORT) --data-dir $(CURDIR)/data

lint: $(VENV)/.dev
	$(BIN)/ruff check .

test: $(VENV)/.dev lint system-deps
	$(BIN)/python -m pytest -q

# Benchmarks: side-by-side ratios in one run; results in bench/results/ (JSON, markdown, plot). The replicas
# section's nginx row runs Debian's nginx (`make system-deps`); where it is missing the row is left out, saying so.
bench: $(VENV)/.dev
	$(BIN)/python -m bench.run

bench-smoke: $(VENV)/.dev
	$(BIN)/python -m bench.run --smoke --out $(CURDIR)/.bench-smoke

# The soak (issue 15): 16 trainers, uploads and augment calls against two replicas for 10 minutes, one replica
# killed (SIGKILL) and restarted midway. Bounded: it stops by itself, and fails if a check fails. Not part of
# `make test`, which runs its 60 s version (tests/test_soak.py). Results in bench/results/soak.json and soak.md.
.PHONY: soak
soak: $(VENV)/.dev
	$(BIN)/python -m bench.soak

# The image and the compose stack built and run for real (docs/deploy.md, "The container test"): podman with runc
# instead of a Docker engine, a Debian base made with debootstrap instead of a pulled one. Minutes, not seconds, so
# not part of `make test`. Skipped, saying why, where podman cannot be installed (not root, no apt-get).
CONTAINER_PACKAGES := podman runc catatonit netavark aardvark-dns iptables debootstrap curl
.PHONY: container-deps
container-deps:
	@if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then \
		echo "container-deps: not root, or no apt-get: podman is not installed"; \
	elif ! dpkg -s $(CONTAINER_PACKAGES) >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(CONTAINER_PACKAGES)) || echo "container-deps: apt-get could not install $(CONTAINER_PACKAGES)"; \
	fi

container-test: $(VENV)/.dev container-deps
	$(BIN)/pip install -q 'podman-compose==1.6.0'
	$(BIN)/python tests/deploy/run_containers.py

clean:
	rm -rf $(VENV) data .pytest_cache
