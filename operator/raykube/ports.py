"""Ray's ports, by KubeRay's port names, and how container ports become
Service ports: written once for pods, head Services, RayService Services and
the dashboard client (a leaf module: it imports nothing of ours)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

GCS_PORT = 6379
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001
SERVE_PORT = 8000
METRICS_PORT = 8080
DASHBOARD_AGENT_PORT = 52365

#: Default container ports of the head, by KubeRay's port names.
DEFAULT_HEAD_PORTS: dict[str, int] = {
    "gcs-server": GCS_PORT,
    "dashboard": DASHBOARD_PORT,
    "client": CLIENT_PORT,
    "serve": SERVE_PORT,
    "metrics": METRICS_PORT,
}
#: Worker pods expose only the metrics port by default.
DEFAULT_WORKER_PORTS: dict[str, int] = {"metrics": METRICS_PORT}
#: What KubeRay writes as every head Service port's ``appProtocol``.
SERVICE_APP_PROTOCOL = "tcp"


def head_defaults(gcs_port: int = GCS_PORT) -> dict[str, int]:
    """The head's default container ports, the GCS on ``gcs_port`` (the head's
    ``rayStartParams.port``, where ``ray start --head`` really listens)."""
    return {**DEFAULT_HEAD_PORTS, "gcs-server": gcs_port}


def container_ports(
    container: Mapping[str, Any], defaults: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The container's ports plus each default whose name and number are both unused."""
    ports = [dict(p) for p in container.get("ports") or []]
    names = {p.get("name") for p in ports}
    numbers = {p.get("containerPort") for p in ports}
    for name, number in defaults.items():
        if name not in names and number not in numbers:
            ports.append({"name": name, "containerPort": number, "protocol": "TCP"})
    return ports


def service_ports(
    head_container_ports: Sequence[Mapping[str, Any]], gcs_port: int = GCS_PORT
) -> list[dict[str, Any]]:
    """Service ports for a head's named container ports, KubeRay's defaults filled in."""
    ports = container_ports({"ports": list(head_container_ports)}, head_defaults(gcs_port))
    return [
        {
            "name": p["name"],
            "port": p["containerPort"],
            "targetPort": p["containerPort"],
            "protocol": p.get("protocol", "TCP"),
            "appProtocol": SERVICE_APP_PROTOCOL,
        }
        for p in ports
        if p.get("name")
    ]


def named_port(ports: Sequence[Mapping[str, Any]], name: str) -> int:
    """The container port called ``name``, else Ray's default for that name."""
    for p in ports:
        number = p.get("containerPort")
        if p.get("name") == name and isinstance(number, int) and not isinstance(number, bool):
            return number
    return DEFAULT_HEAD_PORTS[name]
