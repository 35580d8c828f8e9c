# augserve server image. Build from the repository root:
#   docker build -t augserve:0.1.0 .
# PYTHON_IMAGE picks the base: the official slim Python image by default, or any Debian-like image with Python
# >= 3.10, venv and groupadd/useradd (make container-test builds from a local debootstrap base:
# --build-arg PYTHON_IMAGE=localhost/augserve-base:bookworm).
# Every knob is an AUGSERVE_* environment variable (see docs/deploy.md); the defaults below are for a container.

# Same base in both stages: the venv's interpreter is a link to the base's python3 (/usr/local/bin in the official
# image, /usr/bin in a Debian one), which must exist unchanged in the final stage.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: resolve and install the server extra into a self-contained venv -------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# python3, not python: a Debian base has no `python` command (the venv's bin/ provides one from here on).
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, in a layer of their own that only a change to pyproject.toml rebuilds: install the project
# with empty packages and an empty README (pulls every dependency), then drop that stub. An edit to the code or
# the README alone reuses the layer.
COPY pyproject.toml ./
RUN mkdir -p service/augserve clients/python/augserve_client \
    && touch README.md service/augserve/__init__.py clients/python/augserve_client/__init__.py \
    && /opt/venv/bin/pip install --no-cache-dir ".[server]" \
    && /opt/venv/bin/pip uninstall --yes augserve
# .dockerignore lets in only pyproject.toml, README.md and the two packages, so tests and venvs never leak in.
COPY . .
# Not editable: the final stage gets installed files, not a link back to /src. --no-deps: they are all there, and
# `pip check` proves it.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps ".[server]" \
    && /opt/venv/bin/pip check

# --- final: runtime only (no compilers, no test tools, no source tree) -------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="augserve" \
      org.opencontainers.image.description="Image data augmentation as a service" \
      org.opencontainers.image.licenses="MIT"

# NO_ALBUMENTATIONS_UPDATE: albumentations asks the package index for updates on import otherwise.
# AUGSERVE_HOST=0.0.0.0: the settings default is loopback, unreachable from outside a container.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    AUGSERVE_HOST=0.0.0.0 \
    AUGSERVE_PORT=8000 \
    AUGSERVE_DATA_DIR=/data

# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a numeric USER, and the same uid owns /data so
# a fresh named volume (which copies the image directory's owner) is writable by the service.
RUN groupadd --system --gid 10001 augserve \
    && useradd --system --uid 10001 --gid augserve --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin augserve \
    && mkdir -p /data \
    && chown augserve:augserve /data

# Owned by root and read-only to the service user: the running process cannot modify its own code.
COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

# Liveness only (/healthz). Python, because the slim base has no curl or wget; -I keeps the working directory
# off sys.path.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-I", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AUGSERVE_PORT', '8000'), timeout=4)"]

# `augserve serve` runs uvicorn with the augserve.app:create_app factory; every setting comes from AUGSERVE_*
# (AUGSERVE_WORKERS sets its process count). Named, not implied: a bare `augserve` serves only for compatibility.
CMD ["augserve", "serve"]
