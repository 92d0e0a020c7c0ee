"""GCS fault tolerance on embedded RocksDB (``gcsFaultToleranceOptions.backend:
rocksdb``): the head's env, volume and mount, the PVC the operator creates once,
KubeRay's rules, and no Redis cleanup finalizer."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from raykube.adapters.kube import PERSISTENT_VOLUME_CLAIMS, PODS, ApiError
from raykube.builders import gcs_storage, labels
from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.decisions.scaling import intent_of
from raykube.handlers.gcs_storage import FAILED
from raykube.models.raycluster import RayCluster, parse_raycluster
from tests.unit.harness import NS, Harness, load

RAYCLUSTER = "ray-cluster.sample.yaml"


def _body(ft: dict[str, Any] | None, head: dict[str, Any] | None = None) -> dict[str, Any]:
    container = {"name": "ray-head", "image": "rayproject/ray:2.60.0", **(head or {})}
    spec: dict[str, Any] = {
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}},
        "workerGroupSpecs": [
            {
                "groupName": "cpu",
                "replicas": 1,
                "rayStartParams": {},
                "template": {
                    "spec": {"containers": [{"name": "w", "image": "rayproject/ray:2.60.0"}]}
                },
            }
        ],
    }
    if ft is not None:
        spec["gcsFaultToleranceOptions"] = ft
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "rc", "namespace": NS, "uid": "uid-1"},
        "spec": spec,
    }


def _cluster(ft: dict[str, Any] | None, head: dict[str, Any] | None = None) -> RayCluster:
    return parse_raycluster(_body(ft, head))


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


ROCKSDB = {"backend": "rocksdb"}


def test_the_head_opens_rocksdb_on_the_claim_mounted_at_data_gcs() -> None:
    cluster = _cluster({"backend": "rocksdb", "storage": {"subPath": "clusters/rc"}})
    pod = build_head_pod(cluster, BuildContext(), suffix="aaaaa")
    ray = pod["spec"]["containers"][0]
    env = _env(ray)
    assert env["RAY_gcs_storage"] == "rocksdb"
    assert env["RAY_gcs_storage_path"] == "/data/gcs"
    # Redis' settings are for the other backend only.
    assert "RAY_external_storage_namespace" not in env and "RAY_REDIS_ADDRESS" not in env
    assert {"name": "gcs-storage", "mountPath": "/data/gcs", "subPath": "clusters/rc"} in ray[
        "volumeMounts"
    ]
    assert {"name": "gcs-storage", "persistentVolumeClaim": {"claimName": "rc-gcs-pvc"}} in pod[
        "spec"
    ]["volumes"]
    annotations = pod["metadata"]["annotations"]
    assert annotations[labels.FT_ENABLED] == "true"
    assert labels.EXTERNAL_STORAGE_NAMESPACE not in annotations


def test_workers_wait_for_the_head_and_get_no_volume() -> None:
    cluster = _cluster(ROCKSDB)
    group = cluster.spec.worker_group_specs[0]
    pod = build_worker_pod(cluster, group, BuildContext(), suffix="bbbbb")
    ray = pod["spec"]["containers"][0]
    env = _env(ray)
    assert env["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"
    assert "RAY_gcs_storage" not in env
    assert all(v["name"] != "gcs-storage" for v in pod["spec"].get("volumes") or [])
    # Workers outlive a head restart: the new head (same PVC) recovers the state.
    assert intent_of(cluster).fault_tolerant


def test_a_claim_of_ones_own_is_mounted_and_nothing_is_created() -> None:
    cluster = _cluster({"backend": "rocksdb", "storage": {"claimName": "mine"}})
    pod = build_head_pod(cluster, BuildContext(), suffix="aaaaa")
    assert {"name": "gcs-storage", "persistentVolumeClaim": {"claimName": "mine"}} in pod["spec"][
        "volumes"
    ]
    assert gcs_storage.build_pvc(cluster) is None


def test_the_created_pvc_has_kuberays_defaults_and_owner() -> None:
    pvc = gcs_storage.build_pvc(_cluster(ROCKSDB))
    assert pvc is not None
    assert pvc["metadata"]["name"] == "rc-gcs-pvc"
    assert pvc["metadata"]["labels"] == {labels.CLUSTER: "rc"}
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }


def test_the_created_pvc_honours_storage_and_retain_drops_the_owner() -> None:
    storage = {
        "size": "5Gi",
        "storageClassName": "ssd",
        "accessModes": ["ReadWriteMany"],
        "deletionPolicy": "Retain",
    }
    pvc = gcs_storage.build_pvc(_cluster({"backend": "rocksdb", "storage": storage}))
    assert pvc is not None
    assert "ownerReferences" not in pvc["metadata"]
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "ssd",
    }


def test_redis_clusters_are_unchanged() -> None:
    cluster = _cluster({"redisAddress": "redis:6379"})
    pod = build_head_pod(cluster, BuildContext(), suffix="aaaaa")
    env = _env(pod["spec"]["containers"][0])
    assert env["RAY_REDIS_ADDRESS"] == "redis:6379" and "RAY_gcs_storage" not in env
    assert pod["metadata"]["annotations"][labels.EXTERNAL_STORAGE_NAMESPACE] == "uid-1"
    assert gcs_storage.build_pvc(cluster) is None


def test_drift_compares_quantities_not_spellings() -> None:
    desired = gcs_storage.build_pvc(_cluster({"backend": "rocksdb", "storage": {"size": "1024Mi"}}))
    assert desired is not None
    live = copy.deepcopy(desired)
    live["spec"]["resources"]["requests"]["storage"] = "1Gi"
    assert gcs_storage.drift(desired, live) == []
    live["spec"]["resources"]["requests"]["storage"] = "2Gi"
    live["spec"]["accessModes"] = ["ReadWriteMany"]
    assert gcs_storage.drift(desired, live) == ["accessModes", "size"]


@pytest.mark.parametrize(
    ("ft", "head", "words"),
    [
        ({"backend": "rocksdb", "redisAddress": "r:6379"}, None, "cannot be set with backend"),
        ({"backend": "rocksdb", "externalStorageNamespace": "x"}, None, "cannot be set"),
        ({"redisAddress": "r:6379", "storage": {"size": "1Gi"}}, None, "only to backend rocksdb"),
        ({"backend": "rocksdb", "storage": {"claimName": "c", "size": "1Gi"}}, None, "excludes"),
        ({"backend": "rocksdb", "storage": {"size": "lots"}}, None, "size"),
        (ROCKSDB, {"env": [{"name": "RAY_gcs_storage_path", "value": "/x"}]}, "sets RAY_gcs"),
        (ROCKSDB, {"volumeMounts": [{"name": "d", "mountPath": "/data/gcs"}]}, "/data/gcs"),
    ],
)
def test_kuberays_rules_refuse_the_spec(
    ft: dict[str, Any], head: dict[str, Any] | None, words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        _cluster(ft, head)


def test_a_head_volume_of_that_name_is_refused() -> None:
    body = _body(ROCKSDB)
    body["spec"]["headGroupSpec"]["template"]["spec"]["volumes"] = [
        {"name": "gcs-storage", "emptyDir": {}}
    ]
    with pytest.raises(ValidationError, match="volume named gcs-storage"):
        parse_raycluster(body)


# --- whole reconcile passes on FakeKube ------------------------------------------------------


def _put(h: Harness, manifests: Path, ft: dict[str, Any]) -> str:
    doc = load(manifests, RAYCLUSTER, "RayCluster")
    doc["spec"]["gcsFaultToleranceOptions"] = ft
    h.kube.put(doc)
    name: str = doc["metadata"]["name"]
    return name


def _pvc_requests(h: Harness) -> list[str]:
    return [r.verb for r in h.kube.log if r.kind == "PersistentVolumeClaim"]


def _warnings(h: Harness) -> list[str]:
    return [e.message for e in h.kube.events if e.type == "Warning"]


async def test_the_pvc_is_created_once_before_the_head_and_no_finalizer(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name = _put(h, manifests, {"backend": "rocksdb", "storage": {"size": "2Gi"}})
    await h.cluster_pass(name)
    (pvc,) = h.kube.all(PERSISTENT_VOLUME_CLAIMS, NS)
    assert pvc["metadata"]["name"] == f"{name}-gcs-pvc"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == h.cluster(name)["metadata"]["uid"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    (head,) = h.pods(name, "head")
    claims = [v.get("persistentVolumeClaim") for v in head["spec"]["volumes"]]
    assert {"claimName": f"{name}-gcs-pvc"} in claims
    # Nothing of this cluster is in Redis: no cleanup finalizer, no Job on deletion.
    assert not h.cluster(name)["metadata"].get("finalizers")
    h.kube.reset_counts()
    await h.cluster_pass(name)
    assert _pvc_requests(h) == []  # looked at once per process while the head lives


async def test_a_deleted_claim_is_recreated_before_a_new_head(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name = _put(h, manifests, ROCKSDB)
    await h.cluster_pass(name)
    await h.kube.delete(PERSISTENT_VOLUME_CLAIMS, NS, f"{name}-gcs-pvc")
    for pod in h.pods(name, "head"):
        await h.kube.delete(PODS, NS, pod["metadata"]["name"])
    await h.cluster_pass(name)
    assert [p["metadata"]["name"] for p in h.kube.all(PERSISTENT_VOLUME_CLAIMS, NS)] == [
        f"{name}-gcs-pvc"
    ]
    assert len(h.pods(name, "head")) == 1


async def test_an_existing_claim_is_mounted_as_it_is_and_said(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name = _put(h, manifests, {"backend": "rocksdb", "storage": {"size": "5Gi"}})
    retained = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{name}-gcs-pvc", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    h.kube.put(copy.deepcopy(retained))
    await h.cluster_pass(name)
    await h.events_posted()
    (pvc,) = h.kube.all(PERSISTENT_VOLUME_CLAIMS, NS)
    assert "ownerReferences" not in pvc["metadata"]  # never adopted nor rewritten
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert len(h.pods(name, "head")) == 1
    warnings = _warnings(h)
    assert any("not controlled by this RayCluster" in w for w in warnings)
    assert any("differs from gcsFaultToleranceOptions.storage (size)" in w for w in warnings)


async def test_without_the_right_to_create_pvcs_no_pod_is_made(
    harness: Harness, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    name = _put(h, manifests, ROCKSDB)
    create = h.kube.create_object

    async def refuse(obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        if obj["kind"] == "PersistentVolumeClaim":
            raise ApiError(403, "Forbidden", "persistentvolumeclaims is forbidden")
        return await create(obj, dry_run=dry_run)

    monkeypatch.setattr(h.kube, "create_object", refuse)
    await h.cluster_pass(name)
    assert h.pods(name) == []
    conds = {c["type"]: c for c in h.cluster(name)["status"]["conditions"]}
    assert conds["ReplicaFailure"]["reason"] == FAILED
