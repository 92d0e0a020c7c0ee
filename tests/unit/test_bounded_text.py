"""What a RayService's users and Ray put in text (a 100 KiB traceback, a
``working_dir`` URL with a token in it) reaches the status, events and logs
bounded and without the credential: a status over the CRD's limits would be
refused (and the reconcile would loop), and events and logs are read by
people who may not read Secrets."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from raykube.adapters.dashboard import DashboardClient, Retry
from raykube.adapters.kube import RAYCLUSTERS, RAYSERVICES
from raykube.decisions.conditions import MAX_CONDITION_MESSAGE
from raykube.handlers.runtime import EVENT_MESSAGE_LIMIT
from tests.unit.harness import NS, Harness, load
from tests.unit.test_handlers_rayservice import SAMPLE, conditions

SECRET_URL = "https://user:secret@host/x.zip"
#: What Ray says when it cannot fetch a working_dir: the URL, then a long traceback.
RAY_ERROR = (
    f"Failed to set up runtime_env: could not download {SECRET_URL}\n"
    + "  File 'ray/_private/runtime_env/packaging.py', line 1, in download\n" * 1600
    + f"RuntimeError: fetching {SECRET_URL} failed (403)"
)
#: The CRD's maxLength of one condition message; the whole status is kept
#: under it too, so that no single text can take a status over any limit.
STATUS_BUDGET = 32 * 1024


def with_secret_uris(doc: dict[str, Any]) -> dict[str, Any]:
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    for app in config["applications"]:
        app["runtime_env"] = {"working_dir": SECRET_URL, "py_modules": [SECRET_URL]}
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    return doc


async def serving(h: Harness, doc: dict[str, Any]) -> tuple[str, str]:
    h.kube.put(doc)
    name: str = doc["metadata"]["name"]
    await h.service_pass(name)
    (rc,) = h.kube.all(RAYCLUSTERS, NS)
    cluster = rc["metadata"]["name"]
    await h.cluster_pass(cluster)
    h.all_pods_ready(cluster)
    await h.cluster_pass(cluster)
    for _ in range(5):
        await h.service_pass(name)
        if conditions(h, name).get("Ready") == ("True", "NonZeroServeEndpoints"):
            return name, cluster
    raise AssertionError(f"not serving: {conditions(h, name)}")


async def assert_clean(h: Harness, name: str, caplog: pytest.LogCaptureFixture) -> None:
    await h.events_posted()
    status = h.rayservice(name)["status"]
    written = json.dumps(status)
    assert "secret" not in written
    assert len(written) < STATUS_BUDGET
    for cond in status["conditions"]:
        assert len(cond["message"]) <= MAX_CONDITION_MESSAGE
    for event in h.kube.events:
        assert "secret" not in event.message, event
        assert len(event.message) <= EVENT_MESSAGE_LIMIT
    for record in caplog.records:
        assert "secret" not in record.getMessage(), record.getMessage()


async def test_a_huge_ray_error_with_a_credential_is_cut_and_masked(
    harness: Harness, manifests: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)
    name, cluster = await serving(h, with_secret_uris(load(manifests, SAMPLE, "RayService")))
    assert len(RAY_ERROR) > 100 * 1024
    h.head(cluster).set_status("DEPLOY_FAILED", RAY_ERROR)
    record = h.services.ctl.seen((NS, name))
    for _ in range(3):
        record.polls.clear()  # ask the head again now, not a second later
        await h.service_pass(name)
    assert conditions(h, name)["ServeConfigApplied"] == ("False", "ServeDeployFailed")
    await assert_clean(h, name, caplog)
    assert "ServeDeployFailed" in [e.reason for e in h.kube.events]


async def test_a_dashboard_error_with_a_credential_is_masked_in_logs_and_status(
    harness: Harness, manifests: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)
    name, _ = await serving(h, with_secret_uris(load(manifests, SAMPLE, "RayService")))

    def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text=f"upstream {SECRET_URL} failed: " + "e" * 30_000)

    broken = DashboardClient(
        transport=httpx.MockTransport(failing), retry=Retry(attempts=1, first_delay=0.0)
    )
    h.services.dashboard = broken
    try:
        # A new config: the pass submits it, and fails to.
        def change(rs: dict[str, Any]) -> None:
            rs["spec"]["serveConfigV2"] = rs["spec"]["serveConfigV2"].replace("/fruit", "/fruits")

        h.kube.mutate(RAYSERVICES, NS, name, change)
        for _ in range(3):
            await h.service_pass(name)
    finally:
        await broken.close()
    assert any("not submitted" in r.getMessage() for r in caplog.records)
    await assert_clean(h, name, caplog)
