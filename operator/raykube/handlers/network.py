"""A RayCluster's network children: the head Ingress and the NetworkPolicies.

Both are read from watch caches (labelled ``ray.io/cluster``), so a pass in
which nothing changed sends nothing. Each child is created while the cluster
asks for it, applied while the cluster controls it (``ensure_owned``: one of
the same name that someone else controls is left alone, with a Warning), and
deleted, ours only, when the cluster stops asking for it. Deleting the
cluster takes them with it (their owner reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raykube.adapters.kube import INGRESSES, NETWORK_POLICIES, ApiError
from raykube.builders import hashing, owners
from raykube.builders.ingress import build_head_ingress, wants_ingress
from raykube.builders.network_policy import build_network_policies
from raykube.builders.pods import BuildContext
from raykube.handlers.children import ensure_owned
from raykube.handlers.kit import Controller
from raykube.handlers.workqueue import Key
from raykube.models.raycluster import RayCluster

#: Warning reasons when the API server refuses a child (user rules it judges invalid).
FAILED = {"Ingress": "FailedCreateIngress", "NetworkPolicy": "FailedCreateNetworkPolicy"}
DELETED = {"Ingress": "DeletedIngress", "NetworkPolicy": "DeletedNetworkPolicy"}


def desired_network(cluster: RayCluster, ctx: BuildContext) -> list[dict[str, Any]]:
    wanted = [build_head_ingress(cluster, ctx)] if wants_ingress(cluster) else []
    return [hashing.stamped(c) for c in wanted + build_network_policies(cluster, ctx)]


def _ident(child: Mapping[str, Any]) -> tuple[str, str]:
    return str(child["kind"]), str(child["metadata"]["name"])


async def ensure_network(
    ctl: Controller, key: Key, obj: dict[str, Any], cluster: RayCluster, ctx: BuildContext
) -> None:
    """Never blocks the pods: a refused child is reported and retried when the spec changes."""
    uid = obj["metadata"].get("uid")
    live = {_ident(c): c for c in ctl.rt.network_children_of(key)}
    desired = desired_network(cluster, ctx)
    record = ctl.seen(key)
    for child in desired:
        got = live.get(_ident(child))
        if got is not None and owners.owned_by(got, uid) and hashing.unchanged(child, got):
            continue
        kind, name = _ident(child)
        refused = f"refused:{kind}/{name}"
        if record.applied.get(refused) == hashing.stamp_of(child):
            continue
        try:
            await ensure_owned(ctl, key, obj, child, got)
        except ApiError as err:
            if not err.invalid:
                raise
            record.applied[refused] = hashing.stamp_of(child) or ""
            message = f"{kind} {key[0]}/{name} rejected by the API server: {err.message}"
            ctl.warn_once(key, obj, FAILED[kind], message)
    wanted = {_ident(c) for c in desired}
    for (kind, name), found in live.items():
        if (kind, name) in wanted or not owners.owned_by(found, uid):
            continue
        child_uid = found["metadata"].get("uid") or None
        if kind == "Ingress":
            gone = await ctl.rt.kube.delete(INGRESSES, key[0], name, uid=child_uid)
        else:
            gone = await ctl.rt.kube.delete(NETWORK_POLICIES, key[0], name, uid=child_uid)
        if gone:
            ctl.event(obj, "Normal", DELETED[kind], f"Deleted {kind} {key[0]}/{name}")
