"""Exec-probe helpers against a real Ray head's health endpoints."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
import ray  # noqa: F401  (a missing Ray must fail this tier, not skip it)

from raykube_serve import health
from raykube_serve.localhead import LocalRayHead, free_port

pytestmark = pytest.mark.ray


def urls_for(ray_head: LocalRayHead, **kwargs: Any) -> list[str]:
    p = ray_head.ports
    return health.probe_urls(
        agent_port=p.agent_http, dashboard_port=p.dashboard, serve_port=p.serve_http, **kwargs
    )


def test_head_worker_and_serve_checks_pass(
    ray_head: LocalRayHead, deployed: dict[str, Any]
) -> None:
    p = ray_head.ports
    common = [f"--agent-port={p.agent_http}", f"--dashboard-port={p.dashboard}"]
    assert health.main(common) == 0  # worker: raylet only
    assert health.main([*common, "--head"]) == 0
    assert health.main([*common, "--head", "--serve", f"--serve-port={p.serve_http}"]) == 0


def test_module_runs_as_an_exec_probe(ray_head: LocalRayHead) -> None:
    p = ray_head.ports
    command = [sys.executable, "-m", "raykube_serve.health", "--head"]
    command += [f"--agent-port={p.agent_http}", f"--dashboard-port={p.dashboard}"]
    assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0


def test_inline_command_needs_only_the_standard_library(ray_head: LocalRayHead) -> None:
    command = health.inline_command(urls_for(ray_head, head=True), python=sys.executable)
    # -I: isolated mode, no site-packages and no serve_runtime on the path.
    isolated = [command[0], "-I", *command[1:]]
    assert subprocess.run(isolated, capture_output=True, timeout=30).returncode == 0


def test_unreachable_endpoint_fails_fast() -> None:
    dead = free_port()
    start = time.monotonic()
    code = health.main([f"--agent-port={dead}", "--timeout=1"])
    assert code == 1 and time.monotonic() - start < 2
    wrong_path = health.check([f"http://127.0.0.1:{dead}/api/healthz"], timeout=1)
    assert wrong_path == 1


def test_endpoints_on_the_wrong_port_are_unhealthy(ray_head: LocalRayHead) -> None:
    # GUIDE: each health path 404s on the other port; a probe must not pass.
    p = ray_head.ports
    swapped = health.probe_urls(agent_port=p.dashboard, dashboard_port=p.agent_http, head=True)
    assert health.check(swapped, timeout=2) == 1
