"""Owner references, written once for every kind that owns children.

Ownership is by UID: a child belongs to an object only when one of its
ownerReferences names that object's UID, never by name or label alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raykube.models.raycluster import RayCluster
from raykube.models.rayservice import RayService


def owner_reference(api_version: str, kind: str, name: str, uid: str | None) -> dict[str, Any]:
    """A controller reference: the garbage collector deletes the child with its owner."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(meta: Mapping[str, Any]) -> str:
    """The UID of the controller named in ``meta``'s owner references, or ""."""
    refs = meta.get("ownerReferences") or []
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return str(ref.get("uid") or "")
    return ""


def owned_by(child: Mapping[str, Any], uid: str | None) -> bool:
    """True when ``child``'s controller reference names ``uid``: the only
    objects the operator changes or deletes."""
    return bool(uid) and controller_uid(child.get("metadata") or {}) == uid


def of_raycluster(cluster: RayCluster) -> dict[str, Any]:
    meta = cluster.metadata
    return owner_reference(cluster.api_version, "RayCluster", meta.name, meta.uid)


def of_rayservice(rs: RayService) -> dict[str, Any]:
    return owner_reference(rs.api_version, "RayService", rs.metadata.name, rs.metadata.uid)
