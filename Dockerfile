# syntax=docker/dockerfile:1
# The tagops image: the prediction API (`tagops serve`, uvicorn or Ray Serve), and the environment the team
# stack's MLflow server and a KubeRay cluster run in (Ray and MLflow are tagops dependencies). How to build,
# bake a model in and run it: docs/deployment.md, "Container image and compose".
#
#   docker build -t ghcr.io/tagops/tagops:0.1.0 .
#   docker build --network host --build-arg MODEL_URI=models:/tagops/7 \
#       --build-arg MLFLOW_TRACKING_URI=http://127.0.0.1:5000 -t ghcr.io/tagops/tagops:0.1.0-v7 .

# ------------------------------------------------------------------------------------------------ builder
FROM python:3.11-slim-bookworm AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# PyTorch's CPU wheels: the ordinary index serves the CUDA build on Linux, gigabytes this image never uses.
# Empty: pip's configured index.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src

# The dependencies first, from the pins alone, so that a change to the sources reuses this layer.
COPY docker/install.sh docker/constraints.txt docker/
RUN docker/install.sh --dependencies-only /opt/venv /src

# Then tagops itself, by the same script CI runs, as a wheel (not editable, no dev extras).
COPY pyproject.toml README.md ./
COPY src src
RUN docker/install.sh /opt/venv /src

# Optionally the model, baked in: the image then serves it without reaching the registry. MODEL_URI is
# best a version (models:/tagops/7): an alias is resolved when this layer is built, and a rebuild reuses
# the cached layer until MODEL_URI changes. Never pass registry credentials as build arguments (they stay
# in the image's history).
ARG MODEL_URI=""
ARG MLFLOW_TRACKING_URI=""
RUN mkdir -p /opt/tagops \
    && if [ -n "$MODEL_URI" ]; then \
        TAGOPS_HOME=/tmp/tagops-home /opt/venv/bin/tagops models pull "$MODEL_URI" \
            --output /opt/tagops/model > /opt/tagops/model-source.json \
        && rm -rf /tmp/tagops-home; \
    fi

# -------------------------------------------------------------------------------------------------- final
# Only the virtual environment comes over: no compilers, no build tools, no sources beyond the wheel's.
FROM python:3.11-slim-bookworm
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
LABEL org.opencontainers.image.title="tagops" \
      org.opencontainers.image.description="The tagops prediction API: tags ML projects with their topic." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"

# wget: KubeRay's default liveness and readiness probes run it in every Ray container
# (deploy/rayservice.yaml). Pinned: a new Debian release of it fails the build until the pin moves.
# A fixed uid, so volumes and a Kubernetes securityContext (runAsUser, runAsNonRoot) can name it. Its home
# is TAGOPS_HOME, the one folder it may write besides /tmp (model cache, prediction-log journal, logs);
# /mlartifacts is the compose MLflow server's artifact store, which a new volume takes its owner from.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget=1.21.3-1+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tagops \
    && useradd --system --uid 10001 --gid tagops --home-dir /var/lib/tagops --no-create-home \
        --shell /usr/sbin/nologin tagops \
    && install -d -o tagops -g tagops -m 0750 /var/lib/tagops \
    && install -d -o tagops -g tagops -m 0750 /mlartifacts

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/tagops /opt/tagops
COPY docker/start.sh docker/healthcheck.py /opt/tagops/docker/
COPY configs /opt/tagops/configs

ENV PATH=/opt/venv/bin:$PATH \
    TAGOPS_VENV=/opt/venv \
    TAGOPS_HOME=/var/lib/tagops \
    HOME=/var/lib/tagops \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /var/lib/tagops
EXPOSE 8000
# /healthz: the process answers (liveness). The start period covers a model download and Ray's start.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "/opt/tagops/docker/healthcheck.py"]
ENTRYPOINT ["/opt/tagops/docker/start.sh"]
