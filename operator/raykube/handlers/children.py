"""Children the operator creates when absent and changes only when it controls them.

A forced server-side apply would take over any object of the right name: add
our owner reference (so the garbage collector deletes it with our object),
rewrite its fields and, for a Service, its selector. Names of children are
predictable (``<cluster>-head-svc``) or user-chosen (``serveService``), so an
object someone else created must block the child, visibly, never be adopted.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from raykube.adapters.kube import ROLE_BINDINGS, ApiError
from raykube.builders import owners
from raykube.handlers.kit import Body, Controller
from raykube.handlers.workqueue import Key

#: The Warning's reason on the parent when a child's name is taken.
NOT_OWNED = "ObjectNotOwned"


class Live(Enum):
    """``live`` for ``ensure_owned`` when the caller has no cache of the child."""

    UNKNOWN = "unknown"


async def ensure_owned(
    ctl: Controller,
    key: Key,
    parent: Body,
    desired: Body,
    live: Mapping[str, Any] | Live | None = Live.UNKNOWN,
    update: bool = True,
) -> Mapping[str, Any] | None:
    """Create ``desired`` when absent, apply it when ``parent`` controls the live
    object; otherwise post a Warning on ``parent`` naming the object in the way
    and return None (the caller decides what that blocks).

    ``update=False``: a live object ``parent`` controls is returned as it is
    (a generated token must never be replaced by a fresh one).

    ``live`` is the child as a watch cache holds it (None: not in the cache);
    an object missing from the cache may still exist (not ours, so not
    watched, or the cache is behind), which the create finds out.
    """
    kube = ctl.rt.kube
    uid = parent["metadata"].get("uid")
    if live is Live.UNKNOWN:
        live = await kube.get_object(desired)
    if live is None:
        try:
            return await kube.create_object(desired)
        except ApiError as err:
            if not err.conflict:
                raise
        live = await kube.get_object(desired)
        if live is None:
            # Deleted between our create and our read: the next pass creates it.
            raise ApiError(409, "Conflict", f"{_what(desired)} changed while being created")
    if owners.owned_by(live, uid):
        if not update:
            return live
        if _role_ref_changed(live, desired):
            # A RoleBinding's roleRef cannot change (the operator's
            # --autoscaler-cluster-role did): ours is replaced, never patched.
            meta = live["metadata"]
            await kube.delete(ROLE_BINDINGS, meta.get("namespace"), meta["name"],
                              uid=meta.get("uid"))  # fmt: skip
            return await kube.create_object(desired)
        return await kube.apply(desired)
    message = (
        f"{_what(desired)} exists and is not controlled by {parent.get('kind', 'this object')} "
        f"{parent['metadata'].get('name')}; it is left alone (delete or rename it)"
    )
    scope = f"{parent['metadata'].get('generation', '')}/{_what(desired)}"
    ctl.warn_once(key, parent, NOT_OWNED, message, once_per=scope)
    return None


def _role_ref_changed(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    return (
        desired["kind"] == "RoleBinding"
        and "roleRef" in live
        and live["roleRef"] != desired.get("roleRef")
    )


def _what(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"
