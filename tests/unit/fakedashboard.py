"""Ray heads' dashboards and Serve proxies, in memory, for fast handler tests.

``FakeServe.client()`` is the operator's own ``DashboardClient`` with an
``httpx.MockTransport``: the requests it builds (URL, path, body, headers)
are the real ones; only the answers come from here. Each head (found by the
host of the URL, ``<service>.<namespace>.svc...``, or the explicit URL's
host) has an editable Serve state:

- ``PUT /api/serve/applications/`` stores the config and makes its
  applications report ``status_after_put`` (RUNNING unless a test says
  otherwise);
- ``GET /api/serve/applications/?api_type=declarative`` answers in Ray's
  declarative shape (applications, their deployments, the deployed config);
- ``GET /-/healthz`` on the Serve port answers 200 while ``proxy_healthy``.

A head that is not ``reachable`` refuses connections. Retries are kept but
do not wait, so a refused head costs no time.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from raykube.adapters.dashboard import (
    APPS_PATH,
    PROXY_HEALTH_PATH,
    TOKEN_HEADER,
    DashboardClient,
    Retry,
)

JSON = dict[str, Any]

_DEPLOYMENT_STATUS = {
    "RUNNING": "HEALTHY",
    "DEPLOYING": "UPDATING",
    "DEPLOY_FAILED": "UNHEALTHY",
    "UNHEALTHY": "UNHEALTHY",
}


@dataclass
class HeadState:
    """One head's Serve, as the tests see and change it."""

    reachable: bool = True
    proxy_healthy: bool = True
    #: What the applications report after a PUT.
    status_after_put: str = "RUNNING"
    #: Application name -> its entry in the GET answer (edit to change what Ray reports).
    applications: dict[str, JSON] = field(default_factory=dict)
    #: Every config PUT to this head, in order.
    submitted: list[JSON] = field(default_factory=list)
    #: Requests by ``"METHOD path"``.
    requests: Counter[str] = field(default_factory=Counter)
    #: The token header of every request ("" when none was sent).
    tokens: list[str] = field(default_factory=list)

    def set_status(self, status: str, message: str = "") -> None:
        """Every application (and its deployments) now reports ``status``."""
        for app in self.applications.values():
            app["status"], app["message"] = status, message
            for dep in app["deployments"].values():
                dep["status"] = _DEPLOYMENT_STATUS.get(status, status)

    def deploy(self, config: JSON) -> None:
        self.submitted.append(copy.deepcopy(config))
        self.applications = {}
        for app in config.get("applications", []):
            deployments = {
                d["name"]: {"name": d["name"], "status": "", "message": ""}
                for d in app.get("deployments", [])
            }
            self.applications[app["name"]] = {
                "name": app["name"],
                "route_prefix": app.get("route_prefix"),
                "status": "",
                "message": "",
                "deployments": deployments,
                "deployed_app_config": copy.deepcopy(app),
            }
        self.set_status(self.status_after_put)


class FakeServe:
    """Every head's Serve state, keyed by (namespace, service) or by URL host."""

    def __init__(self) -> None:
        self.heads: dict[tuple[str, str], HeadState] = {}

    def head(self, namespace: str, service: str) -> HeadState:
        return self.heads.setdefault((namespace, service), HeadState())

    def client(self, **kwargs: Any) -> DashboardClient:
        """The operator's client, answered from here (``kwargs`` as DashboardClient takes)."""
        kwargs.setdefault("retry", Retry(attempts=3, first_delay=0.0))
        return DashboardClient(transport=httpx.MockTransport(self.handle), **kwargs)

    def _head_of(self, url: httpx.URL) -> HeadState:
        parts = url.host.split(".")
        if len(parts) >= 3 and parts[2] == "svc":
            return self.head(parts[1], parts[0])
        return self.head("", f"{url.host}:{url.port}")

    def handle(self, request: httpx.Request) -> httpx.Response:
        head = self._head_of(request.url)
        path = request.url.path
        head.requests[f"{request.method} {path}"] += 1
        head.tokens.append(request.headers.get(TOKEN_HEADER, ""))
        if not head.reachable:
            raise httpx.ConnectError("connection refused (FakeServe)", request=request)
        if path == PROXY_HEALTH_PATH and request.method == "GET":
            return httpx.Response(200 if head.proxy_healthy else 503, text="success")
        if path != APPS_PATH:
            return httpx.Response(404, text=f"FakeServe: no route {request.method} {path}")
        if request.method == "GET":
            return httpx.Response(200, json={"applications": copy.deepcopy(head.applications)})
        if request.method == "PUT":
            try:
                config = json.loads(request.content)
            except ValueError:
                return httpx.Response(400, text="not JSON")
            if not isinstance(config, dict) or not isinstance(config.get("applications"), list):
                return httpx.Response(400, text="a config needs an 'applications' list")
            head.deploy(config)
            return httpx.Response(200)
        return httpx.Response(405, text=f"FakeServe: {request.method} not allowed")
