"""Backend rocksdb against a real API server: the PVC the operator creates,
owned by the cluster, mounted by the head, and collected with the cluster (no
Redis cleanup finalizer holds the deletion)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e.paths import sample
from localcluster.controlplane import ControlPlane
from tests.kubehelpers import OperatorProcess, apply, get_json, wait_for

pytestmark = pytest.mark.controlplane


def _get(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    out = cp.kubectl("get", kind, name, "-n", ns, "-o", "json", "--ignore-not-found").stdout
    return yaml.safe_load(out) if out.strip() else None


def _head(cp: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    selector = f"ray.io/cluster={name},ray.io/node-type=head"
    pods: list[dict[str, Any]] = get_json(cp, "pods", "-n", ns, "-l", selector)["items"]
    return pods[0] if pods else None


def test_the_store_pvc_is_owned_mounted_and_collected_with_the_cluster(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    rc: dict[str, Any] = yaml.safe_load(sample("raycluster-rocksdb.yaml").read_text())
    name = rc["metadata"]["name"]
    apply(cp, ns, rc)
    claim = f"{name}-gcs-pvc"
    pvc = wait_for(lambda: _get(cp, ns, "pvc", claim), timeout=90, what=f"PVC {claim}")
    uid = get_json(cp, "raycluster", name, "-n", ns)["metadata"]["uid"]
    (owner,) = pvc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RayCluster", uid, True)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"

    head = wait_for(lambda: _head(cp, ns, name), timeout=90, what="head pod")
    volumes = head["spec"]["volumes"]
    assert {"name": "gcs-storage", "persistentVolumeClaim": {"claimName": claim}} in volumes
    env = {e["name"]: e.get("value") for e in head["spec"]["containers"][0]["env"]}
    assert env["RAY_gcs_storage"] == "rocksdb" and env["RAY_gcs_storage_path"] == "/data/gcs"
    cluster = get_json(cp, "raycluster", name, "-n", ns)
    assert not cluster["metadata"].get("finalizers")  # nothing to clean up in Redis

    cp.kubectl("delete", "raycluster", name, "-n", ns, "--wait=false")
    wait_for(
        lambda: _get(cp, ns, "pvc", claim) is None or None,
        timeout=120,
        what=f"PVC {claim} collected with its RayCluster",
    )
