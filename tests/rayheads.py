"""Real Ray heads on loopback, for the ray and control-plane tiers.

Each head is ``ray start --head --block`` with free ports and a private temp
dir, stopped by PID (``raykube_serve.localhead``), never with ``ray stop``.
Its workers import the walkthrough's apps (``serve_runtime``) and the test
apps that fail on purpose (``tests/ray/apps``).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from e2e.paths import REPO, manifest
from raykube_serve import dashboard
from raykube_serve.localhead import LocalRayHead

WALKTHROUGH = "ray_v1alpha1_rayservice.yaml"
PYTHONPATH = os.pathsep.join([str(REPO / "serve_runtime"), str(REPO / "tests" / "ray" / "apps")])


def start_head(num_cpus: int = 2, env: dict[str, str] | None = None) -> LocalRayHead:
    head = LocalRayHead(
        num_cpus=num_cpus, object_store_mb=80, env={"PYTHONPATH": PYTHONPATH, **(env or {})}
    )
    head.start(timeout_s=180)
    return head


def walkthrough_apps(*names: str) -> list[dict[str, Any]]:
    """The walkthrough's applications (its working_dir URLs removed: the apps are local)."""
    config = dashboard.serve_config_from_manifest(manifest(WALKTHROUGH).read_text())
    apps = config["applications"]
    return [copy.deepcopy(a) for a in apps if not names or a["name"] in names]


def on_head(apps: list[dict[str, Any]], head: LocalRayHead) -> dict[str, Any]:
    """A whole serve config for ``head``: its proxy on loopback, on the head only."""
    return dashboard.on_loopback({"applications": apps}, head.ports.serve_http)
