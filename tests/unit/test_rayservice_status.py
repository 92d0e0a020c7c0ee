"""Table tests: the RayService status, its conditions (KubeRay's reasons plus
raykube's) and which transitions are Warning events."""

from __future__ import annotations

from typing import Any

import pytest

from raykube.decisions.rayservice_config import parse_serve_config
from raykube.decisions.rayservice_health import Verdict
from raykube.decisions.rayservice_status import (
    Serving,
    StatusInputs,
    compute_status,
    new_warnings,
)
from raykube.decisions.rayservice_upgrade import UpgradeState
from raykube.decisions.rayservice_view import UNREACHABLE, ServeSnapshot
from raykube.models.rayservice import RayService, parse_rayservice

from .rayservice_helpers import RUNNING, SERVE, apps, at, cluster, service

NOW = "2026-01-01T12:00:00Z"
LATER = "2026-01-01T12:05:00Z"


def inputs(
    rs: RayService | None = None,
    active: Serving | None = None,
    pending: Serving | None = None,
    state: UpgradeState = UpgradeState.STEADY,
    endpoints: int = 2,
    now: str = NOW,
    **kw: Any,
) -> StatusInputs:
    rs = rs or service()
    return StatusInputs(
        service=rs,
        goal=parse_serve_config(rs.spec.serve_config_v2),
        active=active or Serving(cluster("rs-a", status={"state": "ready"}), RUNNING),
        pending=pending or Serving(None, UNREACHABLE),
        state=state,
        endpoints=endpoints,
        now=now,
        **kw,
    )


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_serving_service_status_matches_kuberay_shape() -> None:
    status = compute_status(inputs())
    assert status["serviceStatus"] == "Running"
    assert status["numServeEndpoints"] == 2
    active = status["activeServiceStatus"]
    assert active["rayClusterName"] == "rs-a"
    assert active["rayClusterStatus"] == {"state": "ready"}
    fruit = active["applicationStatuses"]["fruit_app"]
    assert fruit["status"] == "RUNNING" and fruit["healthLastUpdateTime"] == NOW
    assert fruit["serveDeploymentStatuses"]["D"]["status"] == "HEALTHY"
    assert status["pendingServiceStatus"] == {}
    assert conds(status) == {
        "Ready": ("True", "NonZeroServeEndpoints"),
        "UpgradeInProgress": ("False", "NoPendingCluster"),
        "ServeConfigApplied": ("True", "ApplicationsRunning"),
        "ServingClusterHealthy": ("True", "Healthy"),
    }


@pytest.mark.parametrize(
    ("kw", "upgrade"),
    [
        ({"state": UpgradeState.INITIALIZING, "active": Serving(None, UNREACHABLE)},
         ("False", "Initializing")),
        ({"pending": Serving(cluster("rs-p"), RUNNING), "state": UpgradeState.IN_PROGRESS},
         ("True", "BothActivePendingClustersExist")),
        ({"pending": Serving(cluster("rs-p"), RUNNING), "state": UpgradeState.TIMED_OUT},
         ("False", "UpgradeTimedOut")),
        ({"state": UpgradeState.DISABLED}, ("False", "UpgradeDisabled")),
        ({"state": UpgradeState.RECREATING, "active": Serving(None, UNREACHABLE)},
         ("True", "Recreating")),
    ],
)  # fmt: skip
def test_upgrade_in_progress_reasons(kw: dict[str, Any], upgrade: tuple[str, str]) -> None:
    assert conds(compute_status(inputs(**kw)))["UpgradeInProgress"] == upgrade


def test_timed_out_upgrade_says_where_traffic_is_and_how_to_retry() -> None:
    status = compute_status(
        inputs(pending=Serving(cluster("rs-p"), UNREACHABLE), state=UpgradeState.TIMED_OUT)
    )
    cond = next(c for c in status["conditions"] if c["type"] == "UpgradeInProgress")
    assert "traffic stays on rs-a" in cond["message"]
    assert "rs-p is deleted after rayClusterDeletionDelaySeconds" in cond["message"]
    assert "until the spec changes" in cond["message"]
    assert status["pendingServiceStatus"]["rayClusterName"] == "rs-p"


@pytest.mark.parametrize(
    ("kw", "ready"),
    [
        ({"active": Serving(None, UNREACHABLE), "endpoints": 0}, ("False", "Initializing")),
        ({"endpoints": 0}, ("False", "ZeroServeEndpoints")),
        ({"endpoints": 1}, ("True", "NonZeroServeEndpoints")),
    ],
)
def test_ready_follows_serve_endpoints(kw: dict[str, Any], ready: tuple[str, str]) -> None:
    status = compute_status(inputs(**kw))
    assert conds(status)["Ready"] == ready
    assert ("serviceStatus" in status) is (ready[0] == "True")


def test_ready_lost_after_serving_is_zero_endpoints_not_initializing() -> None:
    before = compute_status(inputs())
    rs = _with(service(), before)
    after = compute_status(inputs(rs, active=Serving(None, UNREACHABLE), endpoints=0))
    assert conds(after)["Ready"] == ("False", "ZeroServeEndpoints")


def _with(rs: RayService, status: dict[str, Any]) -> RayService:
    doc = rs.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["status"] = status
    return parse_rayservice(doc)


@pytest.mark.parametrize(
    ("rs", "active", "serve"),
    [
        (service(serveConfigV2="applications:\n  - name: a\n"), None,
         ("False", "InvalidServeConfig")),
        (service(serveConfigV2=None), None, ("True", "NotManaged")),
        (service(), Serving(cluster("rs-a", serve_hash="older"), RUNNING),
         ("False", "Submitting")),
        (service(), Serving(cluster("rs-a"), RUNNING, rejected="400: bad"),
         ("False", "ServeConfigRejected")),
        (service(), Serving(cluster("rs-a"), apps("DEPLOY_FAILED", "RUNNING")),
         ("False", "ServeDeployFailed")),
        (service(), Serving(cluster("rs-a"), apps("UNHEALTHY", "RUNNING")),
         ("False", "ServeApplicationUnhealthy")),
        (service(), Serving(cluster("rs-a"), apps("DEPLOYING", "RUNNING")),
         ("False", "Deploying")),
    ],
)  # fmt: skip
def test_serve_config_applied(
    rs: RayService, active: Serving | None, serve: tuple[str, str]
) -> None:
    assert conds(compute_status(inputs(rs, active=active)))["ServeConfigApplied"] == serve


def test_deploy_failure_names_the_app_and_the_exception() -> None:
    status = compute_status(inputs(active=Serving(cluster("rs-a"), apps("DEPLOY_FAILED"))))
    cond = next(c for c in status["conditions"] if c["type"] == "ServeConfigApplied")
    assert cond["message"] == "RayCluster rs-a: fruit_app DEPLOY_FAILED: ValueError: bad"


def test_invalid_config_names_the_key() -> None:
    rs = service(serveConfigV2=SERVE.replace("route_prefix: /calc", "route_prefix: calc"))
    cond = next(
        c for c in compute_status(inputs(rs))["conditions"] if c["type"] == "ServeConfigApplied"
    )
    assert "applications[1].route_prefix" in cond["message"]


def test_unhealthy_verdict_is_a_condition() -> None:
    verdict = Verdict("DashboardUnreachable", "the dashboard could not be reached since ...", at(0))
    assert conds(compute_status(inputs(verdict=verdict)))["ServingClusterHealthy"] == (
        "False",
        "DashboardUnreachable",
    )
    warning = Verdict("DashboardUnreachable", "not reached since ...", at(0), over=False)
    status = compute_status(inputs(verdict=warning))
    assert conds(status)["ServingClusterHealthy"] == ("True", "DashboardUnreachable")


def test_unchanged_world_computes_an_identical_status() -> None:
    first = compute_status(inputs())
    rs = _with(service(), first)
    second = compute_status(inputs(rs, now=LATER))
    assert second == first  # times kept: nothing to write
    assert new_warnings(first, second) == []


def test_health_times_move_only_when_health_changes() -> None:
    first = compute_status(inputs())
    rs = _with(service(), first)
    sick = compute_status(
        inputs(rs, active=Serving(cluster("rs-a"), apps("UNHEALTHY", "RUNNING")), now=LATER)
    )
    apps_now = sick["activeServiceStatus"]["applicationStatuses"]
    assert apps_now["fruit_app"]["healthLastUpdateTime"] == LATER
    assert apps_now["math_app"]["healthLastUpdateTime"] == NOW


def test_pending_cluster_app_times_carry_over_the_switch() -> None:
    first = compute_status(
        inputs(pending=Serving(cluster("rs-p"), RUNNING), state=UpgradeState.IN_PROGRESS)
    )
    rs = _with(service(), first)
    after = compute_status(inputs(rs, active=Serving(cluster("rs-p"), RUNNING), now=LATER))
    times = after["activeServiceStatus"]["applicationStatuses"]["fruit_app"]
    assert times["healthLastUpdateTime"] == NOW


def test_unreachable_dashboard_keeps_the_last_known_app_statuses() -> None:
    first = compute_status(inputs())
    rs = _with(service(), first)
    silent = compute_status(inputs(rs, active=Serving(cluster("rs-a"), ServeSnapshot(False))))
    assert (
        silent["activeServiceStatus"]["applicationStatuses"]
        == (first["activeServiceStatus"]["applicationStatuses"])
    )


def test_warnings_are_emitted_on_transitions_only() -> None:
    ok = compute_status(inputs())
    bad = compute_status(
        inputs(
            _with(service(), ok), active=Serving(cluster("rs-a"), apps("DEPLOY_FAILED", "RUNNING"))
        )
    )
    assert [r for r, _ in new_warnings(ok, bad)] == ["ServeDeployFailed"]
    assert new_warnings(bad, bad) == []


def test_suspended_is_not_ready_and_says_why() -> None:
    suspended = inputs(
        service(suspend=True),
        active=Serving(None, UNREACHABLE),
        state=UpgradeState.SUSPENDED,
        endpoints=0,
    )
    status = compute_status(suspended)
    assert conds(status) == {
        "Ready": ("False", "Suspended"),
        "UpgradeInProgress": ("False", "Suspended"),
        "ServeConfigApplied": ("False", "Suspended"),
    }
    assert "spec.suspend" in status["conditions"][0]["message"]
    assert not status["activeServiceStatus"] and "serviceStatus" not in status
    assert not new_warnings(None, status)
    # Resumed: starting again from nothing is Initializing, not an outage.
    resumed = inputs(
        _with(service(), status), active=Serving(None, UNREACHABLE), endpoints=0,
        state=UpgradeState.INITIALIZING,
    )  # fmt: skip
    assert conds(compute_status(resumed))["Ready"] == ("False", "Initializing")


def test_initializing_timeout_is_a_warning_naming_the_annotation() -> None:
    doc = service().model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["metadata"]["annotations"] = {"ray.io/initializing-timeout": "10m"}
    timed_out = inputs(
        parse_rayservice(doc),
        active=Serving(None, UNREACHABLE),
        state=UpgradeState.INITIALIZING_TIMED_OUT,
        endpoints=0,
    )
    status = compute_status(timed_out)
    assert conds(status)["Ready"] == ("False", "InitializingTimeout")
    message = status["conditions"][0]["message"]
    assert "ray.io/initializing-timeout='10m'" in message and "until the spec changes" in message
    assert [r for r, _ in new_warnings(None, status)] == ["InitializingTimeout"]
    edited = inputs(
        _with(service(), status), active=Serving(None, UNREACHABLE), endpoints=0,
        state=UpgradeState.INITIALIZING,
    )  # fmt: skip
    assert conds(compute_status(edited))["Ready"] == ("False", "Initializing")
