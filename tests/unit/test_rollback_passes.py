"""A failing in-place serveConfigV2 edit, through whole RayService passes on the
in-memory API server and Ray dashboard: Ready turns False naming the app, the
last good config goes back to the head after the window, the cluster records
what failed, and that config is not sent again until the spec changes."""

from __future__ import annotations

from pathlib import Path

import yaml

from raykube.adapters.kube import RAYCLUSTERS, RAYSERVICES
from raykube.builders import labels
from tests.unit.harness import NS, Harness
from tests.unit.test_handlers_rayservice import conditions, serving


def edit_price(h: Harness, name: str, price: int) -> None:
    def change(rs: dict[str, object]) -> None:
        spec = rs["spec"]
        assert isinstance(spec, dict)
        config = yaml.safe_load(spec["serveConfigV2"])
        for app in config["applications"]:
            for dep in app.get("deployments") or []:
                if "user_config" in dep:
                    dep["user_config"]["price"] = price
        spec["serveConfigV2"] = yaml.safe_dump(config)

    h.kube.mutate(RAYSERVICES, NS, name, change)


def backdate_submission(h: Harness, cluster: str) -> None:
    """As if the failing config had been submitted long ago (the window passed)."""

    def change(rc: dict[str, object]) -> None:
        meta = rc["metadata"]
        assert isinstance(meta, dict)
        meta["annotations"][labels.SERVE_CONFIG_SUBMITTED_AT] = "2020-01-01T00:00:00Z"

    h.kube.mutate(RAYCLUSTERS, NS, cluster, change)


async def test_a_failing_edit_is_rolled_back_and_not_resubmitted(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name, cluster = await serving(h, manifests)
    await h.service_pass(name)  # records the last good config
    head = h.head(cluster)
    good = head.submitted[-1]

    head.status_after_put = "DEPLOY_FAILED"
    edit_price(h, name, 99)
    await h.service_pass(name)
    assert len(head.submitted) == 2  # the edit went to the serving cluster, in place
    head.set_status("DEPLOY_FAILED", "Traceback ...\nValueError: reconfigure refused")
    await h.service_pass(name)
    ready = conditions(h, name)["Ready"]
    assert ready == ("False", "ServeDeployFailed")
    message = next(
        c["message"] for c in h.rayservice(name)["status"]["conditions"] if c["type"] == "Ready"
    )
    assert "ValueError: reconfigure refused" in message

    head.status_after_put = "RUNNING"
    backdate_submission(h, cluster)
    await h.service_pass(name)
    assert head.submitted[-1] == good, "the last good config went back"
    notes = h.cluster(cluster)["metadata"]["annotations"]
    assert notes[labels.SERVE_CONFIG_ROLLED_BACK]
    assert "ValueError: reconfigure refused" in notes[labels.SERVE_CONFIG_ROLLBACK_CAUSE]
    conds = conditions(h, name)
    assert conds["ServeConfigApplied"] == ("False", "ServeConfigRolledBack")
    await h.events_posted()
    reasons = [e.reason for e in h.kube.events if e.type == "Warning"]
    assert "RollbackInProgress" in reasons and "ServeConfigRolledBack" in reasons

    for _ in range(3):
        await h.service_pass(name)
    assert len(head.submitted) == 3, "nothing more is sent: the failed config stays out"
    conds = conditions(h, name)
    assert conds["Ready"] == ("True", "NonZeroServeEndpoints")
    assert conds["RollbackInProgress"] == ("False", "RollbackComplete")

    edit_price(h, name, 7)  # a new spec: submitted, and the rollback is history
    await h.service_pass(name)
    assert len(head.submitted) == 4
    assert labels.SERVE_CONFIG_ROLLED_BACK not in h.cluster(cluster)["metadata"]["annotations"]
