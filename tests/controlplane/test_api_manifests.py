"""KubeRay's own manifests against a real kube-apiserver with raykube's CRDs:
accepted as they are (client-side and server-side apply), stored without
losing a field, documented by ``kubectl explain`` and shown with columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.paths import manifest, manifest_files
from localcluster.controlplane import ControlPlane
from tests.kubehelpers import wait_for

pytestmark = pytest.mark.controlplane

FILES = manifest_files("*.yaml")
MODES = {"client-side": (), "server-side": ("--server-side",)}


def _ray_documents(path: Path) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all(path.read_text())
    return [d for d in docs if d and str(d.get("apiVersion", "")).startswith("ray.io/")]


def _missing(wrote: Any, stored: Any, path: str = "") -> list[str]:
    """Paths of what the user wrote that is absent or different in storage.

    Keys the server added (defaults, metadata) are allowed.
    """
    if isinstance(wrote, dict):
        if not isinstance(stored, dict):
            return [f"{path}: {stored!r} is not an object"]
        return [
            problem
            for key, value in wrote.items()
            for problem in (
                _missing(value, stored[key], f"{path}.{key}")
                if key in stored
                else [f"{path}.{key}: pruned"]
            )
        ]
    if isinstance(wrote, list):
        if not isinstance(stored, list) or len(stored) != len(wrote):
            return [f"{path}: list changed to {stored!r}"]
        return [
            p
            for i, (w, s) in enumerate(zip(wrote, stored, strict=True))
            for p in _missing(w, s, f"{path}[{i}]")
        ]
    return [] if wrote == stored else [f"{path}: {wrote!r} stored as {stored!r}"]


def _get(cp: ControlPlane, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    version = doc["apiVersion"].split("/")[1]
    resource = f"{doc['kind'].lower()}s.{version}.ray.io"
    out = cp.kubectl("get", resource, doc["metadata"]["name"], "-n", namespace, "-o", "json")
    stored: dict[str, Any] = json.loads(out.stdout)
    return stored


def _worker_groups(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]
    groups: list[dict[str, Any]] = (spec.get("rayClusterConfig") or spec).get(
        "workerGroupSpecs", []
    )
    return groups


def test_every_manifest_file_is_covered() -> None:
    assert len(FILES) == 12
    assert sum(len(_ray_documents(p)) for p in FILES) == 12


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_manifest_is_accepted_and_stored_intact(
    control_plane: ControlPlane, namespace: str, path: Path, mode: str
) -> None:
    result = control_plane.kubectl("apply", "-n", namespace, *MODES[mode], "-f", str(path))
    if "v1alpha1" in path.name:
        assert "deprecated" in result.stderr
    for doc in _ray_documents(path):
        stored = _get(control_plane, namespace, doc)
        assert _missing(doc, stored) == []
        for group in _worker_groups(stored):
            # Ray's autoscaler JSON-patches `replace` on these: they must exist.
            assert "replicas" in group and "scaleStrategy" in group
            assert {"minReplicas", "maxReplicas", "numOfHosts"} <= group.keys()


def test_autoscaler_patch_works_on_an_unmodified_manifest(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", str(manifest("ray-cluster.autoscaler.yaml"))
    )
    patch = [
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2},
        {
            "op": "replace",
            "path": "/spec/workerGroupSpecs/0/scaleStrategy",
            "value": {"workersToDelete": ["raycluster-autoscaler-small-group-worker-abcde"]},
        },
    ]
    control_plane.kubectl(
        "patch",
        "raycluster",
        "raycluster-autoscaler",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(patch),
    )
    group = _worker_groups(
        json.loads(
            control_plane.kubectl(
                "get", "raycluster", "raycluster-autoscaler", "-n", namespace, "-o", "json"
            ).stdout
        )
    )[0]
    assert group["replicas"] == 2
    assert group["scaleStrategy"]["workersToDelete"] == [
        "raycluster-autoscaler-small-group-worker-abcde"
    ]


def test_v1alpha1_object_reads_back_as_v1(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", str(manifest("ray_v1alpha1_rayservice.yaml"))
    )
    (doc,) = _ray_documents(manifest("ray_v1alpha1_rayservice.yaml"))
    as_v1 = _get(control_plane, namespace, {**doc, "apiVersion": "ray.io/v1"})
    assert as_v1["apiVersion"] == "ray.io/v1"
    assert _missing(doc["spec"], as_v1["spec"]) == []


def _explain(cp: ControlPlane, field: str) -> str:
    # The API server publishes a new CRD's OpenAPI a few seconds after it is
    # established; explain fails until then.
    def explained() -> str | None:
        result = cp.kubectl("explain", field, check=False)
        return result.stdout if result.returncode == 0 else None

    return wait_for(explained, timeout=60, interval=1, what=f"kubectl explain {field}")


def test_explain_documents_worker_groups(control_plane: ControlPlane) -> None:
    out = _explain(control_plane, "rayservice.spec.rayClusterConfig.workerGroupSpecs")
    assert "Groups of worker pods" in out
    for field in ("groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts"):
        assert field in out
    assert "Fewest replicas the autoscaler may leave" in out
    spec = _explain(control_plane, "rayservice.spec")
    for field in (
        "serveConfigV2",
        "rayClusterConfig",
        "upgradeStrategy",
        "rayClusterDeletionDelaySeconds",
        "serviceUnhealthySecondThreshold",
        "deploymentUnhealthySecondThreshold",
        "serveService",
        "excludeHeadPodFromServeSvc",
        "suspend",
    ):
        assert field in spec
    assert "raykube extension" in _explain(control_plane, "rayservice.spec.upgradeStrategy")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_get_shows_the_columns(control_plane: ControlPlane, namespace: str) -> None:
    for name in ("ray-cluster.sample.yaml", "ray-service.sample.yaml"):
        control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest(name)))
    cluster_status = {
        "desiredWorkerReplicas": 1,
        "availableWorkerReplicas": 1,
        "desiredCPU": "2",
        "desiredMemory": "6Gi",
        "desiredGPU": "0",
        "state": "ready",
    }
    service_status = {
        "serviceStatus": "Running",
        "numServeEndpoints": 2,
        "activeServiceStatus": {"rayClusterName": "rayservice-sample-abcde"},
        "pendingServiceStatus": {"rayClusterName": "rayservice-sample-fghij"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "NonZeroServeEndpoints",
                "message": "",
                "lastTransitionTime": _now(),
            }
        ],
    }
    for resource, status in (
        ("raycluster/raycluster-kuberay", cluster_status),
        ("rayservice/rayservice-sample", service_status),
    ):
        control_plane.kubectl(
            "patch",
            resource,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
    out = control_plane.kubectl("get", "rayservice,raycluster", "-n", namespace).stdout
    lines = out.splitlines()
    service_header = next(line for line in lines if line.startswith("NAME") and "SERVE" in line)
    for column in (
        "SERVICE STATUS",
        "SERVE ENDPOINTS",
        "ACTIVE CLUSTER",
        "PENDING CLUSTER",
        "READY",
        "AGE",
    ):
        assert column in service_header
    service_row = next(line for line in lines if line.startswith("rayservice.ray.io/"))
    for value in ("Running", "2", "rayservice-sample-abcde", "rayservice-sample-fghij", "True"):
        assert value in service_row.split()
    cluster_header = next(line for line in lines if line.startswith("NAME") and "CPUS" in line)
    for column in (
        "DESIRED WORKERS",
        "AVAILABLE WORKERS",
        "CPUS",
        "MEMORY",
        "GPUS",
        "STATUS",
        "AGE",
    ):
        assert column in cluster_header
    cluster_row = next(line for line in lines if line.startswith("raycluster.ray.io/"))
    assert cluster_row.split()[1:7] == ["1", "1", "2", "6Gi", "0", "ready"]
