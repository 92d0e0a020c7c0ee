"""Deploys Serve applications through the dashboard's REST API, as the operator does.

`PUT /api/serve/applications/` replaces the whole set of applications and
answers before the deploy finishes; the state comes from polling
`GET /api/serve/applications/?api_type=declarative`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
import yaml

APPS_PATH = "/api/serve/applications/"


class DeployFailed(RuntimeError):
    pass


def put_applications(dashboard_url: str, config: dict[str, Any], timeout_s: float = 30) -> None:
    response = httpx.put(dashboard_url + APPS_PATH, json=config, timeout=timeout_s)
    if response.status_code != 200:
        raise DeployFailed(f"PUT {APPS_PATH} answered {response.status_code}: {response.text}")


def get_applications(dashboard_url: str, timeout_s: float = 10) -> dict[str, Any]:
    response = httpx.get(
        dashboard_url + APPS_PATH, params={"api_type": "declarative"}, timeout=timeout_s
    )
    response.raise_for_status()
    details: dict[str, Any] = response.json()
    return details


def app_statuses(details: dict[str, Any]) -> dict[str, str]:
    return {name: app["status"] for name, app in (details.get("applications") or {}).items()}


def wait_running(
    dashboard_url: str, names: Iterable[str], timeout_s: float = 180, poll_s: float = 0.5
) -> dict[str, Any]:
    """Polls until every named app is RUNNING; DeployFailed if one fails."""
    wanted = set(names)
    deadline = time.monotonic() + timeout_s
    details: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            details = get_applications(dashboard_url)
        except httpx.HTTPError:
            time.sleep(poll_s)  # Serve's controller may still be starting
            continue
        statuses = app_statuses(details)
        failed = {n: s for n, s in statuses.items() if n in wanted and s == "DEPLOY_FAILED"}
        if failed:
            messages = {n: details["applications"][n].get("message", "") for n in failed}
            raise DeployFailed(f"applications failed: {messages}")
        if all(statuses.get(n) == "RUNNING" for n in wanted):
            return details
        time.sleep(poll_s)
    raise TimeoutError(f"not RUNNING after {timeout_s}s: {app_statuses(details)}")


def replicas(details: dict[str, Any], app: str, deployment: str) -> list[dict[str, Any]]:
    """The live replicas (id, actor_id, pid, state, ...) of one deployment."""
    found: list[dict[str, Any]] = details["applications"][app]["deployments"][deployment][
        "replicas"
    ]
    return found


def serve_config_from_manifest(manifest: Any) -> dict[str, Any]:
    """The RayService's serveConfigV2 as the JSON the REST API takes.

    Drops `runtime_env.working_dir` from every application (and only that):
    the apps are baked into the image, and the manifests' URLs point to the
    internet.
    """
    documents = list(yaml.safe_load_all(manifest))
    service = next(d for d in documents if d and d.get("kind") == "RayService")
    config: dict[str, Any] = yaml.safe_load(service["spec"]["serveConfigV2"])
    for app in config.get("applications", []):
        runtime_env = app.get("runtime_env")
        if isinstance(runtime_env, dict):
            runtime_env.pop("working_dir", None)
            if not runtime_env:
                del app["runtime_env"]
    return config


def on_loopback(config: dict[str, Any], serve_port: int) -> dict[str, Any]:
    """The config with Serve's HTTP proxy on 127.0.0.1:serve_port, head node only."""
    http = dict(config.get("http_options") or {}, host="127.0.0.1", port=serve_port)
    return {**config, "http_options": http, "proxy_location": "HeadOnly"}
