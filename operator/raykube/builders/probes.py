"""Liveness and readiness probes for Ray containers, without ``wget``.

Ray >= 2.53 serves ``/api/healthz`` on the dashboard agent port, so a plain
httpGet probe works. Older Ray only has ``/api/local_raylet_healthz`` (agent)
and ``/api/gcs_healthz`` (dashboard, head only): those are checked by a short
Python command, since every Ray image has Python but not every one has wget.
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


def _timing(liveness: bool) -> dict[str, int]:
    if liveness:
        return {
            "initialDelaySeconds": 30,
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "successThreshold": 1,
            "failureThreshold": 120,
        }
    return {
        "initialDelaySeconds": 10,
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "successThreshold": 1,
        "failureThreshold": 10,
    }


def ray_probe(node_type: NodeType, ray_version: str | None, liveness: bool) -> dict[str, Any]:
    if has_http_healthz(ray_version):
        action: dict[str, Any] = {"httpGet": {"path": "/api/healthz", "port": DASHBOARD_AGENT_PORT}}
    else:
        urls = [f"http://localhost:{DASHBOARD_AGENT_PORT}/api/local_raylet_healthz"]
        if node_type == "head":
            urls.append(f"http://localhost:{DASHBOARD_PORT}/api/gcs_healthz")
        action = {"exec": {"command": python_http_check(urls)}}
    return {**action, **_timing(liveness)}


def serve_readiness_probe() -> dict[str, Any]:
    """A worker of a RayService is ready only once its Serve proxy answers."""
    return {
        "httpGet": {"path": "/-/healthz", "port": SERVE_PORT},
        **_timing(liveness=False),
        "failureThreshold": 1,
    }
