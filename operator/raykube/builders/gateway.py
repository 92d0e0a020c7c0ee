"""The Gateway API objects of a RayService whose incremental upgrade moves
traffic through a Gateway (``clusterUpgradeOptions.gatewayClassName``), pure.

KubeRay's shapes: a Gateway ``<rs>-gateway`` of that class with one HTTP
listener ``http`` on port 80, an HTTPRoute ``<rs>-httproute`` attached to it
whose one rule (``PathPrefix /``) sends to each cluster's own serve Service
``<cluster>-serve-svc`` with that cluster's traffic percent as its weight.
The Gateway and the HTTPRoute are owned by the RayService, each cluster's
serve Service by its RayCluster (it goes with the cluster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raykube.builders import hashing, labels, owners
from raykube.models import API_VERSION as RAY_API_VERSION
from raykube.models.rayservice import RayService, RayServiceUpgradeType
from raykube.ports import named_port

GROUP = "gateway.networking.k8s.io"
API_VERSION = f"{GROUP}/v1"
#: KubeRay's listener (``GatewayListenerPortName``, ``DefaultGatewayListenerPort``).
LISTENER_NAME = "http"
LISTENER_PORT = 80


@dataclass(frozen=True)
class Backend:
    """One cluster behind the HTTPRoute: its serve port and traffic percent."""

    cluster: str
    port: int
    weight: int


def gateway_class(rs: RayService) -> str | None:
    """The GatewayClass an incremental upgrade goes through, or None (no Gateway)."""
    strategy = rs.spec.upgrade_strategy
    options = strategy.cluster_upgrade_options
    if strategy.type != RayServiceUpgradeType.INCREMENTAL or options is None:
        return None
    return options.gateway_class_name or None


def serve_port(head_ports: Sequence[Mapping[str, Any]]) -> int:
    return named_port(head_ports, "serve")


def _meta(rs: RayService, name: str, created_by: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": rs.metadata.namespace,
        "labels": {**labels.rayservice_labels(rs.metadata.name), labels.CREATED_BY: created_by},
        "ownerReferences": [owner],
    }


def build_gateway(rs: RayService, class_name: str, created_by: str) -> dict[str, Any]:
    name = labels.rayservice_gateway_name(rs.metadata.name)
    body = {
        "apiVersion": API_VERSION,
        "kind": "Gateway",
        "metadata": _meta(rs, name, created_by, owners.of_rayservice(rs)),
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": LISTENER_NAME, "protocol": "HTTP", "port": LISTENER_PORT}],
        },
    }
    return hashing.stamped(body)


def build_httproute(rs: RayService, backends: Sequence[Backend], created_by: str) -> dict[str, Any]:
    """The route through the Gateway: one backend per cluster, weighted by its
    traffic percent (a weight of 0 sends it nothing)."""
    ns, route = rs.metadata.namespace, labels.rayservice_httproute_name(rs.metadata.name)
    refs = [
        {
            "name": labels.cluster_serve_service_name(b.cluster),
            "namespace": ns,
            "port": b.port,
            "weight": b.weight,
        }
        for b in backends
    ]
    body = {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": _meta(rs, route, created_by, owners.of_rayservice(rs)),
        "spec": {
            "parentRefs": [
                {"name": labels.rayservice_gateway_name(rs.metadata.name), "namespace": ns}
            ],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": refs,
                }
            ],
        },
    }
    return hashing.stamped(body)


def build_cluster_serve_service(
    rs: RayService,
    cluster: str,
    cluster_uid: str,
    head_ports: Sequence[Mapping[str, Any]],
    created_by: str,
) -> dict[str, Any]:
    """One cluster's serve Service (its pods labelled ``ray.io/serve=true``),
    controlled by that RayCluster. No ``ray.io/cluster`` label on it: the
    RayCluster controller's own Services are found by that label."""
    port = serve_port(head_ports)
    owner = owners.owner_reference(RAY_API_VERSION, "RayCluster", cluster, cluster_uid or None)
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(rs, labels.cluster_serve_service_name(cluster), created_by, owner),
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "serve", "port": port, "targetPort": port, "protocol": "TCP"}],
            "selector": labels.serve_selector_labels(cluster),
        },
    }
    return hashing.stamped(body)
