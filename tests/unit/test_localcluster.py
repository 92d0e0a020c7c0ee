"""Pure parts of the local cluster: the throwaway go.mod and kwok nodes."""

from __future__ import annotations

from localcluster import build, kwok, versions

KUBERNETES_GOMOD = """module k8s.io/kubernetes

go 1.24.0

require (
\tgithub.com/x/y v1.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""


def test_throwaway_gomod_maps_every_staging_module_to_its_release() -> None:
    text = build.throwaway_gomod(KUBERNETES_GOMOD)
    assert f"require k8s.io/kubernetes {versions.KUBERNETES}" in text
    assert f"\tk8s.io/api => k8s.io/api {versions.STAGING}" in text
    assert f"\tk8s.io/client-go => k8s.io/client-go {versions.STAGING}" in text
    assert "github.com/x/y" not in text


def test_staging_version_follows_kubernetes_release() -> None:
    assert versions.KUBERNETES.startswith("v1.")
    assert "v0." + versions.KUBERNETES[3:] == versions.STAGING


def test_gpu_node_advertises_gpus_and_is_tainted() -> None:
    node = kwok.node_manifest("kwok-gpu-0", kwok.NodePlan(gpus_per_node=8), gpu=True)
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert node["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    assert node["metadata"]["annotations"][kwok.MANAGED_ANNOTATION] == "fake"


def test_cpu_node_has_no_gpu_and_no_taint_unless_asked() -> None:
    node = kwok.node_manifest("kwok-cpu-0", kwok.NodePlan(), gpu=False)
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
    assert node["spec"] == {}
    tainted = kwok.node_manifest("kwok-cpu-0", kwok.NodePlan(taint_all=True), gpu=False)
    assert tainted["spec"]["taints"][0]["key"] == kwok.MANAGED_ANNOTATION
