"""One real Ray head for the whole runtime tier, with every app deployed once.

The head runs on loopback with free ports and a private temp dir, and is
stopped by PID at the end (never `ray stop`, which would kill other Rays on
the machine). Apps are deployed the way the operator deploys them: the
dashboard's REST API, `PUT /api/serve/applications/`, then polling `GET`.

Each test module imports ray at the top, so a missing Ray fails those tests
(collection errors) instead of skipping them, and leaves other tiers alone.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.paths import manifest

REPO = Path(__file__).resolve().parents[2]
SERVE_RUNTIME = REPO / "serve_runtime"
# Workers of the head import the apps, so the head gets the same path.
sys.path.insert(0, str(SERVE_RUNTIME))

from raykube_serve import dashboard  # noqa: E402
from raykube_serve.localhead import LocalRayHead  # noqa: E402

from .helpers import Deploy  # noqa: E402

WALKTHROUGH = manifest("ray_v1alpha1_rayservice.yaml")

# Apps beside the walkthrough's two, each on its own route.
EXTRA_APPS: list[dict[str, Any]] = [
    {
        "name": "embeddings",
        "import_path": "raykube_serve.embeddings:app",
        "route_prefix": "/embed",
        "deployments": [
            {
                "name": "Embedder",
                "num_replicas": 1,
                "user_config": {"max_batch_size": 8, "batch_wait_timeout_s": 0.05},
            }
        ],
    },
    {
        "name": "loadshed",
        "import_path": "raykube_serve.loadshed:app",
        "route_prefix": "/slow",
        "deployments": [{"name": "SlowDeployment", "user_config": {"delay_s": 2}}],
    },
    {
        "name": "canary",
        "import_path": "raykube_serve.canary:app",
        "route_prefix": "/canary",
        "deployments": [
            {
                "name": "TrafficSplitter",
                "num_replicas": 1,
                "user_config": {"weights": {"v1": 90, "v2": 10}},
            },
            {"name": "ModelV1", "num_replicas": 1, "user_config": {"version": "1.0"}},
            {"name": "ModelV2", "num_replicas": 1, "user_config": {"version": "2.0"}},
        ],
    },
]
APP_NAMES = ["fruit_app", "math_app", "embeddings", "loadshed", "canary"]


@pytest.fixture(scope="session")
def ray_head() -> Iterator[LocalRayHead]:
    existing = os.environ.get("PYTHONPATH")
    pythonpath = f"{SERVE_RUNTIME}{os.pathsep}{existing}" if existing else str(SERVE_RUNTIME)
    head = LocalRayHead(num_cpus=4, object_store_mb=100, env={"PYTHONPATH": pythonpath})
    head.start()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def base_config(ray_head: LocalRayHead) -> dict[str, Any]:
    """The walkthrough's serveConfigV2 (working_dir removed) plus our apps."""
    config = dashboard.serve_config_from_manifest(WALKTHROUGH.read_text())
    config["applications"].extend(copy.deepcopy(EXTRA_APPS))
    return dashboard.on_loopback(config, ray_head.ports.serve_http)


@pytest.fixture(scope="session")
def deploy(ray_head: LocalRayHead) -> Deploy:
    """PUTs a whole config and waits until every app is RUNNING."""

    def _deploy(config: dict[str, Any]) -> dict[str, Any]:
        dashboard.put_applications(ray_head.dashboard_url, config)
        names = [app["name"] for app in config["applications"]]
        return dashboard.wait_running(ray_head.dashboard_url, names, timeout_s=240)

    return _deploy


@pytest.fixture(scope="session")
def deployed(base_config: dict[str, Any], deploy: Deploy) -> dict[str, Any]:
    return deploy(base_config)


@pytest.fixture(scope="session")
def serve_url(ray_head: LocalRayHead, deployed: dict[str, Any]) -> str:
    return ray_head.serve_url


@pytest.fixture(scope="session")
def slow_url(serve_url: str) -> str:
    """The load-shedding app, warmed up once.

    The proxy learns a fresh app's replicas with its first request; until
    then requests wait outside the bounded queue, so the first burst after a
    deploy would not be shed exactly as the seed describes.
    """
    response = httpx.get(f"{serve_url}/slow/", timeout=30)
    assert response.status_code == 200, response.text
    return serve_url
