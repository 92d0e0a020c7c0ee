"""The PVC of a RayCluster whose GCS state lives in RocksDB (backend rocksdb).

Created once, when absent, as KubeRay 1.7 does: owned by the cluster (deleted
with it) unless ``deletionPolicy: Retain``; never rewritten, since most of a
PVC's spec is immutable and its data is what a new head recovers from. A PVC
already there under that name is mounted as it is (KubeRay's way back to a
retained store), with a Warning when it is not the cluster's own or its
settings differ from ``storage``. PVCs are not watched: the claim is looked at
once per process and spec, and again whenever a head pod is to be created, so
a head is never made for a claim deleted meanwhile.
"""

from __future__ import annotations

from typing import Any

from raykube.adapters.kube import ApiError
from raykube.builders import gcs_storage, hashing, owners
from raykube.handlers.kit import Controller
from raykube.handlers.workqueue import Key
from raykube.models.raycluster import RayCluster

#: KubeRay's reason, for a PVC it cannot create and for one that differs from ``storage``.
FAILED = "FailedToCreatePVC"
#: The ``ObjectState.applied`` entry: the fingerprint of the PVC known to be there.
APPLIED = "gcs-pvc"


async def ensure_gcs_storage(
    ctl: Controller, key: Key, obj: dict[str, Any], cluster: RayCluster
) -> tuple[str, str] | None:
    """Why no pod may be created yet, if the cluster's store PVC cannot be had:
    a head naming a missing claim would stay Pending with nothing said."""
    desired = gcs_storage.build_pvc(cluster)
    if desired is None:
        return None
    record = ctl.seen(key)
    fingerprint = hashing.digest(desired)
    if record.applied.get(APPLIED) == fingerprint and _head_exists(ctl, key, obj):
        return None
    kube = ctl.rt.kube
    what = f"PersistentVolumeClaim {key[0]}/{desired['metadata']['name']}"
    try:
        live = await kube.get_object(desired)
        if live is None:
            try:
                live = await kube.create_object(desired)
            except ApiError as err:
                if not err.conflict:
                    raise
                live = await kube.get_object(desired)
    except ApiError as err:
        if not (err.forbidden or err.invalid):
            raise
        failure = (FAILED, f"{what} for the GCS store was not created: {err.message}")
        ctl.warn_once(key, obj, *failure)
        return failure
    if live is None:
        return (FAILED, f"{what} was deleted while being created; trying again")
    _warn_if_foreign(ctl, key, obj, cluster, desired, live, what)
    record.applied[APPLIED] = fingerprint
    return None


def _head_exists(ctl: Controller, key: Key, obj: dict[str, Any]) -> bool:
    pods = ctl.rt.pods_of(key, obj["metadata"].get("uid", ""))
    return any(p.node_type == "head" and not p.terminating for p in pods)


def _warn_if_foreign(
    ctl: Controller,
    key: Key,
    obj: dict[str, Any],
    cluster: RayCluster,
    desired: dict[str, Any],
    live: dict[str, Any],
    what: str,
) -> None:
    scope = f"{obj['metadata'].get('generation', '')}/{what}"
    if not gcs_storage.retained(cluster) and not owners.owned_by(live, obj["metadata"].get("uid")):
        message = (
            f"{what} exists and is not controlled by this RayCluster; the head mounts it as it "
            "is (its data is reopened) and it is not deleted with the cluster"
        )
        ctl.warn_once(key, obj, FAILED, message, once_per="foreign/" + scope)
    changed = gcs_storage.drift(desired, live)
    if changed:
        message = (
            f"{what} differs from gcsFaultToleranceOptions.storage ({', '.join(changed)}) and "
            "cannot be reconfigured in place; delete it to have it created anew (its data is lost)"
        )
        ctl.warn_once(key, obj, FAILED, message, once_per="drift/" + scope)
