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


def owned_by(child: Mapping[str, Any], uid: str | None) -> bool:
    """True when ``child`` names ``uid`` among its owner references."""
    if not uid:
        return False
    refs = (child.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(r, Mapping) and r.get("uid") == uid for r in refs)


def of_raycluster(cluster: RayCluster) -> dict[str, Any]:
    meta = cluster.metadata
    return owner_reference(cluster.api_version, "RayCluster", meta.name, meta.uid)


def of_rayservice(rs: RayService) -> dict[str, Any]:
    return owner_reference(rs.api_version, "RayService", rs.metadata.name, rs.metadata.uid)
