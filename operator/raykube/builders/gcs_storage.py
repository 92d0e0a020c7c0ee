"""GCS fault tolerance on an embedded RocksDB store (backend rocksdb), pure.

Ray keeps the GCS tables in a RocksDB directory chosen by ``RAY_gcs_storage``
and ``RAY_gcs_storage_path`` (with a ``session_name`` marker file beside them,
read before the GCS is up). A head pod that comes back with the same volume
mounted there recovers the cluster's state, so its workers keep running, as
with Redis. The volume is a PersistentVolumeClaim: the user's (``claimName``),
or ``<cluster>-gcs-pvc`` created by the operator once and never rewritten
(most of a PVC's spec is immutable, and its data is the point).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from raykube.builders import labels, owners
from raykube.models import quantity
from raykube.models.clusterspec import (
    GCS_STORAGE_ENV,
    GCS_STORAGE_MOUNT,
    GCS_STORAGE_PATH_ENV,
    GCS_STORAGE_VOLUME,
    GcsBackend,
    GcsEmbeddedStorage,
    GcsStorageDeletionPolicy,
)
from raykube.models.raycluster import RayCluster

#: Ray's value of ``RAY_gcs_storage`` that selects the embedded store.
ROCKSDB = "rocksdb"
#: Size of a PVC the operator creates when ``storage.size`` is unset (KubeRay's).
DEFAULT_SIZE = "1Gi"
DEFAULT_ACCESS_MODES = ("ReadWriteOnce",)


def embedded(cluster: RayCluster) -> bool:
    """The cluster keeps its GCS state in RocksDB on a volume of the head."""
    ft = cluster.spec.gcs_fault_tolerance_options
    return ft is not None and ft.backend == GcsBackend.ROCKSDB


def _storage(cluster: RayCluster) -> GcsEmbeddedStorage:
    ft = cluster.spec.gcs_fault_tolerance_options
    return (ft.storage if ft is not None else None) or GcsEmbeddedStorage()


def claim_name(cluster: RayCluster) -> str:
    """The PVC the head mounts: the user's ``claimName``, else the operator's."""
    return _storage(cluster).claim_name or labels.gcs_storage_claim_name(cluster.metadata.name)


def head_env(cluster: RayCluster) -> dict[str, dict[str, Any]]:
    """The head's env vars that make its GCS open the store on the volume."""
    if not embedded(cluster):
        return {}
    return {GCS_STORAGE_ENV: {"value": ROCKSDB}, GCS_STORAGE_PATH_ENV: {"value": GCS_STORAGE_MOUNT}}


def add_head_volume(cluster: RayCluster, spec: dict[str, Any], container: dict[str, Any]) -> None:
    """Mount the store's PVC on the head's Ray container (admission refuses a
    template that has a volume or mount of that name or path already)."""
    if not embedded(cluster):
        return
    mount: dict[str, Any] = {"name": GCS_STORAGE_VOLUME, "mountPath": GCS_STORAGE_MOUNT}
    sub_path = _storage(cluster).sub_path
    if sub_path:
        mount["subPath"] = sub_path
    container["volumeMounts"] = [*(container.get("volumeMounts") or []), mount]
    claim = {"claimName": claim_name(cluster)}
    volume = {"name": GCS_STORAGE_VOLUME, "persistentVolumeClaim": claim}
    spec["volumes"] = [*(spec.get("volumes") or []), volume]


def retained(cluster: RayCluster) -> bool:
    """``deletionPolicy: Retain``: the created PVC has no owner, so it outlives
    the cluster and a cluster of the same name (or ``claimName``) reopens it."""
    return _storage(cluster).deletion_policy == GcsStorageDeletionPolicy.RETAIN


def build_pvc(cluster: RayCluster) -> dict[str, Any] | None:
    """The PVC the operator creates, or None when the user names their own."""
    if not embedded(cluster):
        return None
    storage = _storage(cluster)
    if storage.claim_name:
        return None
    spec: dict[str, Any] = {
        "accessModes": list(storage.access_modes or DEFAULT_ACCESS_MODES),
        "resources": {"requests": {"storage": storage.size or DEFAULT_SIZE}},
    }
    if storage.storage_class_name is not None:
        spec["storageClassName"] = storage.storage_class_name
    meta: dict[str, Any] = {
        "name": labels.gcs_storage_claim_name(cluster.metadata.name),
        "namespace": cluster.metadata.namespace,
        "labels": {labels.CLUSTER: cluster.metadata.name},
    }
    if not retained(cluster):
        meta["ownerReferences"] = [owners.of_raycluster(cluster)]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def _amount(size: Any) -> Decimal | None:
    # The API server writes quantities canonically (1024Mi reads back as 1Gi).
    try:
        return quantity.parse(size)
    except (ValueError, TypeError):
        return None


def drift(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """The settings of ``desired`` a live PVC does not have: a PVC is created
    once, so a changed ``storage`` shows here rather than in the volume."""
    want, have = desired.get("spec") or {}, live.get("spec") or {}
    found = []
    if list(want.get("accessModes") or []) != list(have.get("accessModes") or []):
        found.append("accessModes")
    size = (want.get("resources") or {}).get("requests", {}).get("storage")
    live_size = ((have.get("resources") or {}).get("requests") or {}).get("storage")
    if _amount(size) != _amount(live_size):
        found.append("size")
    if "storageClassName" in want and want["storageClassName"] != have.get("storageClassName"):
        found.append("storageClassName")
    return found
