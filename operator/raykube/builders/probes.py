"""Liveness and readiness probes for Ray containers, without ``wget``.

Ray >= 2.53 serves ``/api/healthz`` on the dashboard agent port, so a plain
httpGet probe works. Older Ray only has ``/api/local_raylet_healthz`` (agent)
and ``/api/gcs_healthz`` (dashboard, head only): those are checked by a short
Python command, since every Ray image has Python but not every one has wget.

Timing is KubeRay's: the head's probes wait 5 s for an answer (its dashboard
and GCS answer more slowly under load), a worker's 2 s. A worker of a
RayService is ready only while both its raylet and its Serve proxy (on the
container's ``serve`` port) answer.
"""

from __future__ import annotations

from typing import Any

from raykube.builders.labels import NodeType
from raykube.ports import DASHBOARD_AGENT_PORT, DASHBOARD_PORT, SERVE_PORT

HTTP_HEALTHZ_SINCE = (2, 53)


def _version(ray_version: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (ray_version or "").split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def has_http_healthz(ray_version: str | None) -> bool:
    """Unknown versions are assumed current."""
    if not ray_version:
        return True
    return _version(ray_version)[:2] >= HTTP_HEALTHZ_SINCE


def python_http_check(urls: list[str]) -> list[str]:
    """An exec probe that succeeds only if every URL answers 200."""
    checks = "; ".join(
        f"assert urllib.request.urlopen('{u}', timeout=2).status == 200" for u in urls
    )
    return ["python3", "-c", f"import urllib.request; {checks}"]


#: Seconds a probe waits for an answer: the head's, a worker's.
HEAD_TIMEOUT_SECONDS = 5
WORKER_TIMEOUT_SECONDS = 2


def _timing(liveness: bool, node_type: NodeType = "worker") -> dict[str, int]:
    timeout = HEAD_TIMEOUT_SECONDS if node_type == "head" else WORKER_TIMEOUT_SECONDS
    if liveness:
        return {
            "initialDelaySeconds": 30,
            "periodSeconds": 5,
            "timeoutSeconds": timeout,
            "successThreshold": 1,
            "failureThreshold": 120,
        }
    return {
        "initialDelaySeconds": 10,
        "periodSeconds": 5,
        "timeoutSeconds": timeout,
        "successThreshold": 1,
        "failureThreshold": 10,
    }


def raylet_url(agent_port: int = DASHBOARD_AGENT_PORT) -> str:
    return f"http://localhost:{agent_port}/api/local_raylet_healthz"


def ray_probe(
    node_type: NodeType,
    ray_version: str | None,
    liveness: bool,
    agent_port: int = DASHBOARD_AGENT_PORT,
    dashboard_port: int = DASHBOARD_PORT,
) -> dict[str, Any]:
    if has_http_healthz(ray_version):
        action: dict[str, Any] = {"httpGet": {"path": "/api/healthz", "port": agent_port}}
    else:
        urls = [raylet_url(agent_port)]
        if node_type == "head":
            urls.append(f"http://localhost:{dashboard_port}/api/gcs_healthz")
        action = {"exec": {"command": python_http_check(urls)}}
    return {**action, **_timing(liveness, node_type)}


def serve_readiness_probe(
    serve_port: int = SERVE_PORT, agent_port: int = DASHBOARD_AGENT_PORT
) -> dict[str, Any]:
    """A worker of a RayService is ready only while its raylet and its Serve
    proxy (``serve_port``: the container's ``serve`` port) both answer."""
    urls = [raylet_url(agent_port), f"http://localhost:{serve_port}/-/healthz"]
    return {
        "exec": {"command": python_http_check(urls)},
        **_timing(liveness=False),
        "failureThreshold": 1,
    }
