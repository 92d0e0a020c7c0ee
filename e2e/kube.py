"""kubectl, as a user types it, and what the e2e flows read from the cluster."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import yaml

from localcluster import processes
from localcluster.controlplane import ControlPlane

T = TypeVar("T")
SERVE_PORT = 8000


@dataclass(frozen=True)
class Kubectl:
    """kubectl against the local cluster, in one namespace."""

    cp: ControlPlane
    namespace: str

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = self.cp.kubectl("-n", self.namespace, *args, input=input, check=check)
        return proc.stdout

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self.run("get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def items(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        found: list[dict[str, Any]] = json.loads(self.run(*args))["items"]
        return found

    def apply(self, doc: dict[str, Any]) -> str:
        return self.run("apply", "-f", "-", input=yaml.safe_dump(doc, sort_keys=False))


def eventually(check: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    """``processes.wait_until`` at the e2e flows' pace (once a second)."""
    return processes.wait_until(what, check, timeout=timeout, interval=every)


def live(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if not o["metadata"].get("deletionTimestamp")]


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            found: dict[str, Any] = c
            return found
    return {}


def is_ready(rs: dict[str, Any] | None) -> bool:
    return condition(rs, "Ready").get("status") == "True"


def app_statuses(rs: dict[str, Any] | None, which: str = "activeServiceStatus") -> dict[str, str]:
    apps = (((rs or {}).get("status") or {}).get(which) or {}).get("applicationStatuses") or {}
    return {name: str(app.get("status", "?")) for name, app in apps.items()}


def clusters_of(k: Kubectl, rayservice: str) -> list[dict[str, Any]]:
    selector = f"ray.io/originated-from-cr-name={rayservice}"
    return live(k.items("rayclusters", selector))


def summary(k: Kubectl, rayservice: str) -> str:
    """One line: clusters, pods, apps, the Ready condition."""
    rs = k.get("rayservice", rayservice)
    parts = []
    for cluster in clusters_of(k, rayservice):
        name = cluster["metadata"]["name"]
        pods = live(k.items("pods", f"ray.io/cluster={name}"))
        ready = sum(pod_ready(p) for p in pods)
        parts.append(f"{name}: {ready}/{len(pods)} pods ready")
    apps = _apps_text(rs)
    cond = condition(rs, "Ready")
    state = f"Ready={cond.get('status', '?')} ({cond.get('reason', 'no status yet')})"
    return "; ".join([*(parts or ["no RayCluster yet"]), apps, state])


def _apps_text(rs: dict[str, Any] | None) -> str:
    """The serving cluster's apps, else the pending (or first) cluster's."""
    for which, label in (("activeServiceStatus", ""), ("pendingServiceStatus", " (pending)")):
        apps = app_statuses(rs, which)
        if apps:
            return ", ".join(f"{a} {s}" for a, s in sorted(apps.items())) + label
    return "no apps yet"


def serve_url(k: Kubectl, rayservice: str) -> str:
    """``http://<ClusterIP of <rs>-serve-svc>:<serve port>``, routed to the node."""
    svc = k.get("service", f"{rayservice}-serve-svc")
    if svc is None:
        raise AssertionError(f"Service {rayservice}-serve-svc does not exist")
    ports = svc["spec"].get("ports") or []
    port = next((p["port"] for p in ports if p.get("name") == "serve"), SERVE_PORT)
    return f"http://{svc['spec']['clusterIP']}:{port}"


def post(url: str, path: str, body: Any, timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=timeout)


def wait_routed(
    url: str,
    path: str,
    body: Any,
    programmed: Callable[[], bool] | None = None,
    timeout: float = 120,
) -> Any:
    """The first 200 answer through a Service, once kube-proxy routes it.

    A Service whose endpoints are ready may not be in the node's iptables yet
    (kube-proxy syncs a moment later); until then a connection to its ClusterIP
    fails. ``programmed()`` (e.g. ``stack.service_programmed``) is awaited
    before the first request, so no packet ever reaches the node untranslated."""
    if programmed is not None:
        eventually(programmed, timeout, f"kube-proxy rules for {url}", every=0.5)

    def routed() -> Any:
        try:
            response = post(url, path, body, timeout=5)
        except httpx.HTTPError:
            return None
        return response if response.status_code == 200 else None

    response = eventually(routed, timeout, f"{url}{path} to answer", every=0.5)
    try:
        return response.json()
    except ValueError:
        return response.text


def answers(url: str, path: str, body: Any, want: Any) -> bool:
    """True once ``POST path body`` answers 200 with ``want`` (for ``eventually``)."""
    try:
        response = post(url, path, body, timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json() == want
