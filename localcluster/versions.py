"""Pinned versions of everything the local cluster builds or installs.

Kubernetes 1.34 is the newest release whose kubelet still starts on cgroup v1
by default (1.35 flips ``failCgroupV1`` to true), and the test machines only
offer cgroup v1 controllers.
"""

from __future__ import annotations

import os
from pathlib import Path

KUBERNETES = "v1.34.4"
# Staging modules are published as v0.<minor>.<patch> of the same release.
STAGING = "v0." + KUBERNETES.removeprefix("v1.")
# etcd is built from the version that k8s.io/kubernetes itself requires, so
# one throwaway module resolves both without conflicts.
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
KWOK = "v0.7.0"
HELM = "v3.19.0"
# KubeRay's operator, built only as the parity tier's oracle (tests/parity):
# the newest release the Go module proxy serves as a plain `go install`.
KUBERAY = "v1.6.2"
KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"
# A Gateway API implementation for RayServices with a `gatewayClassName`
# (tests/e2e). Traefik 3.7 cannot be built from the proxy (its go.mod maps a
# nested module, github.com/traefik/traefik/dynamic/ext, to a directory that
# the module zip leaves out); 3.6 can. The Gateway API CRDs come from the
# release Traefik's go.mod requires, so the two agree on the API.
TRAEFIK = "v3.6.12"
TRAEFIK_MODULE = "github.com/traefik/traefik/v3"
GATEWAY_API = "v1.4.0"
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"

KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)


def cache_root() -> Path:
    """Where built binaries, images and cluster state live, outside the repo."""
    override = os.environ.get("RAYKUBE_CACHE")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "raykube"


def bin_dir() -> Path:
    """Binaries are keyed by every pinned version so a bump rebuilds."""
    key = f"k8s-{KUBERNETES}_kwok-{KWOK}_helm-{HELM}"
    return cache_root() / "bin" / key


def kuberay_dir() -> Path:
    """KubeRay's operator and its CRDs, keyed by KubeRay's version alone (a
    Kubernetes bump does not rebuild it, nor the other way round)."""
    return cache_root() / "bin" / f"kuberay-{KUBERAY}"


def gateway_dir() -> Path:
    """Traefik and the Gateway API CRDs, keyed by both versions."""
    return cache_root() / "bin" / f"traefik-{TRAEFIK}_gateway-api-{GATEWAY_API}"
