"""Table tests: unhealthy thresholds (clocks kept on the cluster), the
replacement they trigger, and its back-off."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from raykube.builders import labels
from raykube.decisions import rayservice_health as health
from raykube.decisions.rayservice import decide
from raykube.decisions.rayservice_upgrade import CreateReason, UpgradeState
from raykube.decisions.rayservice_view import HealthRecord, ServeSnapshot

from .rayservice_helpers import (
    DOWN,
    RUNNING,
    apps,
    at,
    cluster,
    head,
    observe,
    service,
    with_status,
)

FAILING = apps("UNHEALTHY", "RUNNING")


def step(record: HealthRecord, snap: ServeSnapshot, now: datetime, **kw: object) -> HealthRecord:
    c = cluster("rs-a", health=record, **kw)  # type: ignore[arg-type]
    return health.track(c, head_ready=True, snap=snap, now=now)


def test_unreachable_clock_starts_once_and_stops_when_the_dashboard_answers() -> None:
    c = cluster("rs-a")
    r1 = health.track(c, head_ready=True, snap=DOWN, now=at(0))
    assert r1.unreachable_since == at(0)
    r2 = health.track(c.with_(health=r1), head_ready=False, snap=RUNNING, now=at(50))
    assert r2.unreachable_since == at(0)  # head pod down counts as unreachable too
    assert health.track(c.with_(health=r2), True, RUNNING, at(60)).unreachable_since is None


def test_app_clock_survives_flapping_and_stops_after_a_steady_minute() -> None:
    r = step(HealthRecord(), FAILING, at(0))
    assert r.failing_since == at(0)
    r = step(r, RUNNING, at(20))  # a replacement replica came up...
    assert (r.failing_since, r.running_since) == (at(0), at(20))
    r = step(r, FAILING, at(40))  # ... and failed its health check again
    assert (r.failing_since, r.running_since) == (at(0), None)
    r = step(r, RUNNING, at(50))
    r = step(r, RUNNING, at(50 + health.RECOVERY_SECONDS - 1))
    assert r.failing_since == at(0)
    r = step(r, RUNNING, at(50 + health.RECOVERY_SECONDS))
    assert r == HealthRecord()


def test_app_clock_ignores_a_config_never_proven_on_the_cluster() -> None:
    r = step(
        HealthRecord(failing_since=at(0)),
        apps("DEPLOY_FAILED", "RUNNING"),
        at(10),
        serve_healthy_hash="",
    )
    assert r.failing_since is None


def test_app_clock_holds_while_the_dashboard_is_silent() -> None:
    r = step(HealthRecord(failing_since=at(0)), DOWN, at(10))
    assert r.failing_since == at(0) and r.unreachable_since == at(10)


@pytest.mark.parametrize(
    ("record", "now", "dash", "svc", "reason"),
    [
        (HealthRecord(unreachable_since=at(0)), 300, 300, 900, None),
        (HealthRecord(unreachable_since=at(0)), 301, 300, 900, health.DASHBOARD_UNREACHABLE),
        (HealthRecord(unreachable_since=at(0)), 10**6, 0, 900, None),  # 0 switches it off
        (HealthRecord(failing_since=at(0)), 900, 300, 900, None),
        (HealthRecord(failing_since=at(0)), 901, 300, 900, health.APPLICATION_UNHEALTHY),
        (HealthRecord(failing_since=at(0)), 10**6, 300, 0, None),
    ],
)
def test_verdict_thresholds(
    record: HealthRecord, now: int, dash: int, svc: int, reason: str | None
) -> None:
    spec = service(
        deploymentUnhealthySecondThreshold=dash, serviceUnhealthySecondThreshold=svc
    ).spec
    got = health.verdict(record, spec, at(now))
    assert (got.reason if got else None) == reason
    if got is not None:
        assert "Threshold" in got.message


def test_seconds_to_threshold_wakes_just_after_the_crossing() -> None:
    spec = service(deploymentUnhealthySecondThreshold=30).spec
    assert health.seconds_to_threshold(HealthRecord(unreachable_since=at(0)), spec, at(10)) == 21
    assert health.seconds_to_threshold(HealthRecord(), spec, at(10)) is None


def test_unhealthy_serving_cluster_is_replaced_and_the_attempt_recorded() -> None:
    rs = with_status(service(deploymentUnhealthySecondThreshold=30), active="rs-a")
    a = cluster("rs-a", health=HealthRecord(unreachable_since=at(0)))
    plan = decide(observe(rs, [a], serve={"rs-a": DOWN}, now=at(31)))
    assert plan.verdict is not None and plan.verdict.reason == health.DASHBOARD_UNREACHABLE
    assert plan.clusters.create is CreateReason.UNHEALTHY
    assert plan.clusters.state is UpgradeState.IN_PROGRESS
    assert not plan.clusters.delete  # traffic moves only once the new cluster serves
    assert plan.replacements == health.Replacements(health.DASHBOARD_UNREACHABLE, 1, at(31))


def test_clock_start_is_written_to_the_cluster() -> None:
    rs = with_status(service(), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a")], serve={"rs-a": DOWN}, now=at(5)))
    assert [(c.name, n) for c, n in plan.notes] == [
        ("rs-a", {labels.SERVE_HEALTH: HealthRecord(unreachable_since=at(5)).to_json()})
    ]


def test_unhealthy_cluster_under_strategy_none_is_only_reported() -> None:
    spec: dict[str, Any] = {
        "deploymentUnhealthySecondThreshold": 30,
        "upgradeStrategy": {"type": "None"},
    }
    rs = with_status(service(**spec), active="rs-a")
    a = cluster("rs-a", health=HealthRecord(unreachable_since=at(0)))
    plan = decide(observe(rs, [a], serve={"rs-a": DOWN}, now=at(31)))
    assert plan.verdict is not None and plan.clusters.create is None


def test_unhealthy_cluster_under_recreate_is_deleted_and_rebuilt() -> None:
    spec: dict[str, Any] = {
        "deploymentUnhealthySecondThreshold": 30,
        "upgradeStrategy": {"type": "Recreate"},
    }
    rs = with_status(service(**spec), active="rs-a")
    a = cluster("rs-a", rs, health=HealthRecord(unreachable_since=at(0)))
    plan = decide(observe(rs, [a], serve={"rs-a": DOWN}, now=at(31)))
    assert [(c.name, why) for c, why in plan.clusters.delete] == [("rs-a", "Recreate")]
    assert plan.replacements is not None and plan.replacements.attempts == 1


def test_replacements_failing_the_same_way_back_off() -> None:
    spec = service().spec  # upgrade deadline 1800 s: the first wait
    reason = health.DASHBOARD_UNREACHABLE
    r1 = health.after_attempt(health.Replacements(), reason, at(0))
    assert not health.may_replace(r1, reason, 1800, at(1799))
    assert health.may_replace(r1, reason, 1800, at(1800))
    assert health.may_replace(r1, health.APPLICATION_UNHEALTHY, 1800, at(1))  # another cause
    r2 = health.after_attempt(r1, reason, at(1800))
    assert r2.attempts == 2
    assert not health.may_replace(r2, reason, 1800, at(1800 + 3599))
    r9 = health.Replacements(reason, 9, at(0))
    assert health.backoff_seconds(9, 1800) == health.MAX_BACKOFF_SECONDS
    # A day later the count starts over.
    assert health.after_attempt(r9, reason, at(health.FORGET_AFTER_SECONDS)).attempts == 1
    assert spec.upgrade_strategy.timeout_seconds == 1800


def test_backoff_blocks_a_new_replacement_but_keeps_reporting() -> None:
    rs = with_status(service(deploymentUnhealthySecondThreshold=30), active="rs-a")
    a = cluster("rs-a", health=HealthRecord(unreachable_since=at(0)))
    recent = health.Replacements(health.DASHBOARD_UNREACHABLE, 1, at(0))
    plan = decide(observe(rs, [a], serve={"rs-a": DOWN}, now=at(60), replacements=recent))
    assert plan.verdict is not None and plan.clusters.create is None


def test_failed_replacement_past_its_deadline_is_retried_after_back_off() -> None:
    rs = with_status(service(deploymentUnhealthySecondThreshold=30), active="rs-a", pending="rs-p")
    a = cluster("rs-a", health=HealthRecord(unreachable_since=at(0)))
    p = cluster("rs-p", created=at(31))
    serve = {"rs-a": DOWN, "rs-p": DOWN}
    last = health.Replacements(health.DASHBOARD_UNREACHABLE, 1, at(31))
    kept = decide(observe(rs, [a, p], serve=serve, now=at(1000), replacements=last))
    assert kept.clusters.state is UpgradeState.IN_PROGRESS and not kept.clusters.delete
    timed = decide(observe(rs, [a, p], serve=serve, now=at(31 + 1800), replacements=last))
    assert [(c.name, w) for c, w in timed.clusters.delete] == [("rs-p", "ReplacementTimedOut")]
    assert timed.clusters.create is CreateReason.UNHEALTHY
    assert timed.replacements is not None and timed.replacements.attempts == 2
    heads = {"rs-a": head("rs-a", ready=False), "rs-p": head("rs-p", ready=False)}
    blocked = decide(
        observe(
            rs,
            [a, p],
            serve=serve,
            heads=heads,
            now=at(31 + 1800),
            replacements=health.Replacements(health.DASHBOARD_UNREACHABLE, 2, at(31)),
        )
    )
    assert blocked.clusters.state is UpgradeState.TIMED_OUT and not blocked.clusters.delete


def test_a_dashboard_only_the_operator_cannot_reach_keeps_the_cluster() -> None:
    """Head pod Ready, Serve proxy answering: only the operator's view is lost."""
    rs = with_status(service(deploymentUnhealthySecondThreshold=30), active="rs-a")
    a = cluster("rs-a", health=HealthRecord(unreachable_since=at(0)))
    cut = ServeSnapshot(reachable=False, error="timed out", proxy_healthy=True)
    heads = {"rs-a": head("rs-a", ready=True)}
    plan = decide(observe(rs, [a], serve={"rs-a": cut}, heads=heads, now=at(3600)))
    assert plan.verdict is not None and plan.verdict.kept and not plan.verdict.replaces
    assert "only the operator's view is lost" in plan.verdict.message
    assert plan.clusters.create is None and not plan.clusters.delete
    assert plan.replacements is None
    # The proxy stops answering as well: the head no longer serves, it is replaced.
    silent = ServeSnapshot(reachable=False, error="timed out", proxy_healthy=False)
    plan = decide(observe(rs, [a], serve={"rs-a": silent}, heads=heads, now=at(3600)))
    assert plan.clusters.create is CreateReason.UNHEALTHY


def test_an_unreachable_dashboard_is_reported_before_its_threshold() -> None:
    rs = with_status(service(deploymentUnhealthySecondThreshold=30), active="rs-a")
    a = cluster("rs-a", health=HealthRecord(unreachable_since=at(0)))
    plan = decide(observe(rs, [a], serve={"rs-a": DOWN}, now=at(10)))
    assert plan.verdict is not None and not plan.verdict.over
    assert plan.verdict.reason == health.DASHBOARD_UNREACHABLE
    assert "deploymentUnhealthySecondThreshold 30s" in plan.verdict.message
    assert plan.clusters.create is None and plan.replacements is None
