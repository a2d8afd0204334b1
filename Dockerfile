# One image for every part of Fita; the command chooses what a container runs:
#
#   fita api                                          the REST API on :8000 (the default command)
#   fita worker --queues gpu,cpu --device cuda:0      an RQ worker that trains on a GPU
#   fita worker --queues cpu --device cpu             an RQ worker that trains on the CPU
#
# CPU image (the default base):   docker build -t fita:cpu .
# GPU image (for GPU workers):    docker build -t fita:cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 --build-arg EXTRAS=cuda .
#
# The CUDA base must ship Python 3.11 or newer (Ubuntu 24.04 has 3.12; 22.04's 3.10 is too old). Only
# the package and its runtime extras are installed, never the dev extra (tests, torch).

ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Extras of pyproject.toml to install: "" (CPU) or "cuda" (CuPy for CUDA 12).
ARG EXTRAS=""

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A python:* base has Python; a CUDA base gets it from apt, plus the CUDA runtime headers that CuPy's
# kernel compiler (NVRTC) needs from CUDA 12.2 on (a runtime image has the libraries, not the headers).
RUN set -eux; \
    if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update; \
        apt-get install -y --no-install-recommends python3 python3-venv ca-certificates; \
        if [ -n "${CUDA_VERSION:-}" ]; then \
            apt-get install -y --no-install-recommends \
                "cuda-cudart-dev-$(echo "$CUDA_VERSION" | cut -d. -f1,2 | tr . -)"; \
        fi; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), f"Fita needs Python 3.11+, the base has {sys.version}"'; \
    python3 -m venv /opt/venv

WORKDIR /app
# What is copied is the allow-list in .dockerignore: pyproject.toml, README.md, engine/, workers/, api/,
# fita/, data/ (the text corpora) and configs/ (the example job specs).
COPY . /app

# Installed in place (editable) so that the code finds the corpora it ships under /app/data, as it does
# in a checkout; FITA_CORPUS_DIR says the same for code that reads it. A C compiler is there only for
# the install, which builds the engine's compiled parts (engine/_kernels.c, _pool.c, _cblas.c; setup.py).
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends gcc libc6-dev; \
    pip install --upgrade pip; \
    if [ -n "$EXTRAS" ]; then pip install -e ".[${EXTRAS}]"; else pip install -e .; fi; \
    apt-get purge -y --auto-remove gcc libc6-dev; \
    rm -rf /var/lib/apt/lists/*; \
    python -c 'import engine._native as n; assert n.ready, "the fused CPU kernels were not built"'; \
    python -c 'import engine._cblas'; \
    command -v fita

# Run as an unprivileged user; /data (artifacts, checkpoints, uploads) belongs to it, so a fresh named
# volume mounted there does too.
RUN set -eux; \
    (groupadd --system --gid 10001 fita || addgroup --system --gid 10001 fita); \
    (useradd --system --uid 10001 --gid 10001 --home-dir /home/fita --create-home --shell /usr/sbin/nologin fita \
        || adduser --system --uid 10001 --ingroup fita --home /home/fita fita); \
    mkdir -p /data; \
    chown fita:fita /data

ENV FITA_DATA_DIR=/data \
    FITA_CORPUS_DIR=/app/data \
    FITA_HOST=0.0.0.0 \
    FITA_PORT=8000

USER fita
EXPOSE 8000

# For the API (workers serve no HTTP; docker-compose.yml disables this check for them).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FITA_PORT', '8000'), timeout=4)"

CMD ["fita", "api"]
