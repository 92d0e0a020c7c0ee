"""The Gateway, HTTPRoute and per-cluster serve Services of a RayService with
``clusterUpgradeOptions.gatewayClassName`` (an incremental upgrade that moves
traffic by the HTTPRoute's weights).

Nothing here runs, and no Gateway kind is watched or requested, while the
field is unset, so a cluster without the Gateway API CRDs costs nothing. The
Gateway and HTTPRoute are not watched at all: what this process applied is
remembered by its hash stamp (``ObjectState.applied``) and applied again only
when it changes, so a steady RayService sends no request for them; a restart
applies each once. Each cluster's serve Service is seen through the
RayService's Service index (it carries the RayService's labels).
"""

from __future__ import annotations

from typing import Any

from raykube.adapters.kube import ApiError
from raykube.builders import hashing, owners
from raykube.builders.gateway import (
    GROUP,
    build_cluster_serve_service,
    build_gateway,
    build_httproute,
    gateway_class,
)
from raykube.decisions.rayservice import Observed, Plan, pending_after, serving_after
from raykube.decisions.rayservice_gateway import route_backends
from raykube.decisions.rayservice_view import ClusterView
from raykube.handlers.children import ensure_owned
from raykube.handlers.rayservice_observe import Pass
from raykube.models import API_VERSION as RAY_API_VERSION

#: The Warning when the API server does not serve the Gateway API.
UNAVAILABLE = "GatewayAPIUnavailable"


async def ensure_gateway(p: Pass, obs: Observed, plan: Plan) -> None:
    """Each cluster's serve Service, then the Gateway, then the HTTPRoute with
    the weights this pass leaves on the clusters (the route never names a
    Service that is not there yet)."""
    class_name = gateway_class(p.rs)
    if class_name is None:
        return
    creator = p.rt.settings.operator_name
    clusters = [c for c in (serving_after(obs, plan), pending_after(obs, plan, p.created)) if c]
    for cluster in clusters:
        await _cluster_service(p, cluster, creator)
    try:
        await _apply_once(p, build_gateway(p.rs, class_name, creator))
        backends = route_backends(obs, plan, p.created)
        if backends:
            await _apply_once(p, build_httproute(p.rs, backends, creator))
    except ApiError as err:
        if not (err.not_found or err.forbidden):
            raise
        # 404 on a create: the API server does not serve the kind (no CRDs).
        message = (
            f"clusterUpgradeOptions.gatewayClassName is {class_name!r} but the API server "
            f"does not serve {GROUP}/v1 Gateways and HTTPRoutes to the operator "
            f"(HTTP {err.status}): "
            "install the Gateway API CRDs and a Gateway controller; traffic stays on "
            "the active cluster's serve Service meanwhile"
        )
        p.sc.ctl.warn_once(p.key, p.obj, UNAVAILABLE, message)


async def _apply_once(p: Pass, desired: dict[str, Any]) -> None:
    """Create or apply ``desired`` unless this process applied exactly it."""
    name = f"{desired['kind']}/{desired['metadata']['name']}"
    stamp = hashing.stamp_of(desired) or ""
    if p.record.applied.get(name) == stamp:
        return
    if await ensure_owned(p.sc.ctl, p.key, p.obj, desired) is not None:
        p.record.applied[name] = stamp


async def _cluster_service(p: Pass, cluster: ClusterView, creator: str) -> None:
    svc = build_cluster_serve_service(p.rs, cluster.name, cluster.uid, cluster.head_ports, creator)
    live = p.sc.stable_service(p.key, svc["metadata"]["name"])
    if live is not None and owners.owned_by(live, cluster.uid) and hashing.unchanged(svc, live):
        return
    # The cluster controls it: a name taken by someone else is reported on the
    # RayService and left alone.
    parent = {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayCluster",
        "metadata": {"name": cluster.name, "namespace": p.key[0], "uid": cluster.uid},
    }
    await ensure_owned(p.sc.ctl, p.key, parent, svc, live)
