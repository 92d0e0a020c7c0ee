"""Table tests: a failing in-place serve config is rolled back to the last good
one after its window; Ready is False while an application does not answer;
a config never reaches a cluster that is being replaced."""

from __future__ import annotations

from typing import Any

import pytest

from raykube.builders import labels
from raykube.decisions.rayservice import decide
from raykube.decisions.rayservice_config import parse_serve_config
from raykube.decisions.rayservice_rollback import DEFAULT_WINDOW_SECONDS, failing, window
from raykube.decisions.rayservice_status import Serving, StatusInputs, compute_status
from raykube.decisions.rayservice_upgrade import UpgradeState
from raykube.decisions.rayservice_view import AppView, DeploymentView, ServeSnapshot
from raykube.models.rayservice import RayService, parse_rayservice

from .rayservice_helpers import RUNNING, SERVE, apps, at, cluster, observe, service, with_status

GOOD = parse_serve_config(SERVE)
NEW_SERVE = SERVE.replace("price: 3", "price: 4")
NEW = parse_serve_config(NEW_SERVE)
FAILED = apps("DEPLOY_FAILED", "RUNNING")


def annotated(rs: RayService, **notes: str) -> RayService:
    doc = rs.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["metadata"].setdefault("annotations", {}).update(notes)
    return parse_rayservice(doc)


def edited(**notes: str) -> RayService:
    """Serving on rs-a, serveConfigV2 just edited in place."""
    return annotated(with_status(service(serveConfigV2=NEW_SERVE), active="rs-a"), **notes)


def failing_in_place(**kw: Any) -> dict[str, Any]:
    """rs-a runs NEW (submitted at t=0, never healthy) and fruit_app failed there."""
    return {
        "serve_hash": NEW.hash,
        "serve_submitted_at": at(0),
        "serve_healthy_hash": GOOD.hash,
        **kw,
    }


def test_a_failing_in_place_config_is_rolled_back_after_the_window() -> None:
    rs = edited()
    rsa = cluster("rs-a", **failing_in_place())
    early = decide(observe(rs, [rsa], serve={"rs-a": FAILED}, last_good=SERVE, now=at(14)))
    assert early.rollback is None
    plan = decide(
        observe(rs, [rsa], serve={"rs-a": FAILED}, last_good=SERVE, now=at(DEFAULT_WINDOW_SECONDS))
    )
    assert plan.rollback is not None
    assert plan.rollback.cluster.name == "rs-a"
    assert plan.rollback.to.hash == GOOD.hash and plan.rollback.rejected == NEW.hash
    assert plan.rollback.cause == "fruit_app DEPLOY_FAILED: ValueError: bad"
    assert not plan.submit
    notes = plan.rollback.notes("t")
    assert notes[labels.SERVE_CONFIG_HASH] == GOOD.hash
    assert notes[labels.SERVE_CONFIG_ROLLED_BACK] == NEW.hash


def test_a_rolled_back_config_is_not_submitted_again_until_the_spec_changes() -> None:
    rs = edited()
    rolled = cluster(
        "rs-a",
        **failing_in_place(serve_hash=GOOD.hash, rolled_back=NEW.hash, rollback_cause="x"),
    )
    plan = decide(observe(rs, [rolled], last_good=SERVE, now=at(600)))
    assert not plan.submit and plan.rollback is None
    # A new edit is a new config: it is submitted.
    third = SERVE.replace("price: 3", "price: 5")
    rs3 = with_status(service(serveConfigV2=third), active="rs-a")
    plan = decide(observe(rs3, [rolled], last_good=SERVE, now=at(601)))
    assert [(c.name, why) for c, why in plan.submit] == [("rs-a", "ServeConfigChanged")]


@pytest.mark.parametrize(
    ("case", "kw", "notes", "last_good"),
    [
        ("switched off", {}, {labels.AUTO_ROLLBACK: "false"}, SERVE),
        ("no last good config", {}, {}, ""),
        ("the config ran here before", {"serve_healthy_hash": NEW.hash}, {}, SERVE),
        ("the last good is the failing one", {}, {}, NEW_SERVE),
    ],
)
def test_no_rollback(case: str, kw: dict[str, Any], notes: dict[str, str], last_good: str) -> None:
    rs = edited(**notes)
    rsa = cluster("rs-a", **failing_in_place(**kw))
    plan = decide(observe(rs, [rsa], serve={"rs-a": FAILED}, last_good=last_good, now=at(300)))
    assert plan.rollback is None, case


def test_the_window_is_settable_and_a_bad_value_is_named() -> None:
    assert window(edited(**{labels.AUTO_ROLLBACK_AFTER: "1m"})) == (60.0, "")
    seconds, problem = window(edited(**{labels.AUTO_ROLLBACK_AFTER: "soon"}))
    assert seconds == DEFAULT_WINDOW_SECONDS and labels.AUTO_ROLLBACK_AFTER in problem
    assert window(edited(**{labels.AUTO_ROLLBACK: "false"}))[0] is None


def test_no_rollback_during_an_upgrade() -> None:
    """A config sent to a pending cluster never serves until it runs: nothing to roll back."""
    rs = with_status(service(serveConfigV2=NEW_SERVE, image="ray:2"), active="rs-a", pending="rs-p")
    clusters = [
        cluster("rs-a", config_hash="old", serve_hash=GOOD.hash),
        cluster("rs-p", rs, **failing_in_place()),
    ]
    serve = {"rs-a": RUNNING, "rs-p": FAILED}
    plan = decide(observe(rs, clusters, serve=serve, last_good=SERVE, now=at(300)))
    assert plan.rollback is None


# --- a config never reaches a cluster being replaced --------------------------------------------


def test_a_combined_change_goes_to_the_new_cluster_only() -> None:
    rs = with_status(service(serveConfigV2=NEW_SERVE, image="ray:2"), active="rs-a")
    old = cluster("rs-a", config_hash="old")  # runs GOOD
    plan = decide(observe(rs, [old]))
    assert plan.clusters.create is not None
    assert not plan.submit  # the old cluster keeps GOOD
    # The pending cluster exists: it gets NEW, the old cluster still nothing.
    rs2 = with_status(rs, active="rs-a", pending="rs-p")
    pending = cluster("rs-p", rs, serve_hash="", serve_healthy_hash="")
    plan = decide(observe(rs2, [old, pending]))
    assert [(c.name, why) for c, why in plan.submit] == [("rs-p", "FirstSubmission")]


def test_a_serve_change_alone_still_updates_in_place() -> None:
    rs = with_status(service(serveConfigV2=NEW_SERVE), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a")]))
    assert [(c.name, why) for c, why in plan.submit] == [("rs-a", "ServeConfigChanged")]


def test_with_upgrades_off_a_combined_change_updates_serve_in_place() -> None:
    rs = with_status(
        service(serveConfigV2=NEW_SERVE, image="ray:2", upgradeStrategy={"type": "None"}),
        active="rs-a",
    )
    plan = decide(observe(rs, [cluster("rs-a", config_hash="old")]))
    assert [c.name for c, _ in plan.submit] == ["rs-a"]


# --- Ready tells the truth ----------------------------------------------------------------------


def status_of(snap: ServeSnapshot, **kw: Any) -> dict[str, Any]:
    rs = with_status(service(), active="rs-a")
    inputs = StatusInputs(
        service=rs,
        goal=GOOD,
        active=Serving(cluster("rs-a", **kw), snap),
        pending=Serving(None, snap),
        state=UpgradeState.STEADY,
        endpoints=2,
        now="2026-01-01T00:00:00Z",
    )
    return compute_status(inputs)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def without_replicas() -> ServeSnapshot:
    dep = DeploymentView("UPDATING", running=0, target=2)
    app = AppView("RUNNING", deployments={"MangoStand": dep})
    return ServeSnapshot(reachable=True, apps={"fruit_app": app}, proxy_healthy=True)


@pytest.mark.parametrize(
    ("snap", "reason", "names"),
    [
        (apps("DEPLOY_FAILED", "RUNNING"), "ServeDeployFailed", "fruit_app DEPLOY_FAILED"),
        (apps("RUNNING", "UNHEALTHY"), "ServeApplicationUnhealthy", "math_app UNHEALTHY"),
        (without_replicas(), "ServeNoRunningReplicas", "no running replica of MangoStand"),
    ],
)
def test_ready_is_false_while_an_application_does_not_answer(
    snap: ServeSnapshot, reason: str, names: str
) -> None:
    status, why, message = conditions(status_of(snap))["Ready"]
    assert (status, why) == ("False", reason)
    assert names in message and "2 pod(s) of rs-a serve" in message
    assert "serviceStatus" not in status_of(snap)


def test_ready_with_every_application_answering() -> None:
    assert conditions(status_of(RUNNING))["Ready"][:2] == ("True", "NonZeroServeEndpoints")


def test_failing_lists_only_what_does_not_answer() -> None:
    scaled_to_zero = AppView(
        "RUNNING", deployments={"D": DeploymentView("HEALTHY", running=0, target=0)}
    )
    snap = ServeSnapshot(reachable=True, apps={"a": scaled_to_zero})
    assert failing(("a",), snap) == []


def test_the_rollback_conditions_tell_the_story() -> None:
    rolled = {
        "serve_hash": GOOD.hash,
        "rolled_back": GOOD.hash,  # the goal of status_of() is GOOD
        "rollback_cause": "fruit_app DEPLOY_FAILED: ValueError: bad",
    }
    during = conditions(status_of(apps("DEPLOYING", "RUNNING"), **rolled))
    assert during["RollbackInProgress"][:2] == ("True", "RollingBack")
    assert during["ServeConfigApplied"][:2] == ("False", "ServeConfigRolledBack")
    assert GOOD.hash in during["ServeConfigApplied"][2]
    assert "fruit_app DEPLOY_FAILED" in during["ServeConfigApplied"][2]
    after = conditions(status_of(RUNNING, **rolled))
    assert after["RollbackInProgress"][:2] == ("False", "RollbackComplete")
    assert after["Ready"][:2] == ("True", "NonZeroServeEndpoints")
    assert "RollbackInProgress" not in conditions(status_of(RUNNING))
