"""The status of a RayService, computed from what was observed and done (pure).

Conditions ``Ready`` and ``UpgradeInProgress`` carry KubeRay's reasons;
raykube adds ``ServeConfigApplied`` (is the config submitted and running, or
why not) and ``ServingClusterHealthy`` (the unhealthy thresholds). Messages
name times, never durations, so a steady service computes the same status
twice and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raykube.builders import labels
from raykube.decisions import conditions
from raykube.decisions.conditions import Cond
from raykube.decisions.rayservice_config import ServeGoal
from raykube.decisions.rayservice_health import Verdict
from raykube.decisions.rayservice_rollback import failing, last_line
from raykube.decisions.rayservice_upgrade import UpgradeState, keeps_timed_out
from raykube.decisions.rayservice_view import ClusterView, ServeSnapshot
from raykube.models.rayservice import RayService
from raykube.text import safe
from raykube.timefmt import format_time

READY = "Ready"
#: KubeRay's condition name; here True while a failed in-place serve config is
#: being replaced by the last good one (``rayservice_rollback``).
ROLLBACK_IN_PROGRESS = "RollbackInProgress"
ROLLED_BACK = "ServeConfigRolledBack"
NO_RUNNING_REPLICAS = "ServeNoRunningReplicas"
UPGRADE_IN_PROGRESS = "UpgradeInProgress"
UPGRADE_TIMED_OUT_REASON = "UpgradeTimedOut"
SERVE_CONFIG_APPLIED = "ServeConfigApplied"
SERVING_CLUSTER_HEALTHY = "ServingClusterHealthy"

#: KubeRay's Ready reason once ``ray.io/initializing-timeout`` passed.
INITIALIZING_TIMEOUT_REASON = "InitializingTimeout"
#: Reasons that are failures: each transition to one is also a Warning event.
WARNING_REASONS = frozenset(
    {
        UPGRADE_TIMED_OUT_REASON,
        "InvalidServeConfig",
        "ServeConfigRejected",
        "ServeDeployFailed",
        "ServeApplicationUnhealthy",
        NO_RUNNING_REPLICAS,
        ROLLED_BACK,
        "DashboardUnreachable",
        "ZeroServeEndpoints",
        "ValidationFailed",
        INITIALIZING_TIMEOUT_REASON,
    }
)
#: Ray's messages (a failed deployment's traceback) are copied into the status
#: for every application and deployment of both clusters. They share one
#: budget, so that many applications cannot take a status past what the API
#: server takes: 16 KiB of messages plus four conditions of 1 KiB keep a
#: status with up to 64 messages under 32 KiB. Each message gets an equal share,
#: at most 4 KiB (a traceback's start and end) and at least 256 characters.
APP_MESSAGES_BUDGET = 16 * 1024
MAX_APP_MESSAGE = 4096
MIN_APP_MESSAGE = 256


def app_message_limit(snaps: list[ServeSnapshot]) -> int:
    """How long each application or deployment message of these snapshots may be."""
    count = sum(
        bool(app.message) + sum(bool(dep.message) for dep in app.deployments.values())
        for snap in snaps
        if snap.reachable
        for app in snap.apps.values()
    )
    share = APP_MESSAGES_BUDGET // max(1, count)
    return max(MIN_APP_MESSAGE, min(MAX_APP_MESSAGE, share))


@dataclass(frozen=True)
class Serving:
    """One cluster of the service after this pass: what it is and what it serves."""

    cluster: ClusterView | None
    snap: ServeSnapshot
    rejected: str = ""

    @property
    def name(self) -> str:
        return self.cluster.name if self.cluster else ""


@dataclass(frozen=True)
class StatusInputs:
    service: RayService
    goal: ServeGoal
    active: Serving
    pending: Serving
    state: UpgradeState
    endpoints: int
    now: str
    verdict: Verdict | None = None
    #: Why the pending cluster exists (for the UpgradeInProgress message).
    upgrade_cause: str = ""
    #: NewClusterWithIncrementalUpgrade: each cluster's entry shows its
    #: targetCapacity, trafficRoutedPercent and lastTrafficMigratedTime.
    incremental: bool = False


def _previous(service: RayService) -> dict[str, Any]:
    if service.status is None:
        return {}
    return service.status.model_dump(mode="json", by_alias=True, exclude_none=True)


def _since(prev: Mapping[str, Any] | None, healthy: bool, good: str, now: str) -> str:
    """When the health of an app (or deployment) last changed."""
    if prev and (prev.get("status") == good) == healthy and prev.get("healthLastUpdateTime"):
        return str(prev["healthLastUpdateTime"])
    return now


def _apps(
    snap: ServeSnapshot, prev_apps: Mapping[str, Any], now: str, limit: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, app in sorted(snap.apps.items()):
        prev = prev_apps.get(name) or {}
        prev_deps = prev.get("serveDeploymentStatuses") or {}
        deps = {
            dep_name: {
                "status": dep.status,
                "message": safe(dep.message, limit),
                "healthLastUpdateTime": _since(
                    prev_deps.get(dep_name), dep.status == "HEALTHY", "HEALTHY", now
                ),
            }
            for dep_name, dep in sorted(app.deployments.items())
        }
        out[name] = {
            "status": app.status,
            "message": safe(app.message, limit),
            "healthLastUpdateTime": _since(prev, app.status == "RUNNING", "RUNNING", now),
            "serveDeploymentStatuses": deps,
        }
    return {k: {f: v for f, v in a.items() if v not in ("", {})} for k, a in out.items()}


def _shares(cluster: ClusterView, default: int) -> dict[str, Any]:
    """An incremental upgrade's numbers for one cluster (``default`` percent
    where nothing is recorded yet: 100 for the active cluster, 0 for the pending)."""
    entry: dict[str, Any] = {
        "targetCapacity": default if cluster.target_capacity is None else cluster.target_capacity,
        "trafficRoutedPercent": default if cluster.traffic is None else cluster.traffic,
    }
    if cluster.traffic_at is not None:
        entry["lastTrafficMigratedTime"] = format_time(cluster.traffic_at)
    return entry


def _cluster_entry(
    serving: Serving,
    previous: Mapping[str, Any],
    now: str,
    limit: int,
    shares: int | None = None,
) -> dict[str, Any]:
    if serving.cluster is None:
        return {}
    # The previous entry for this cluster, wherever it was (pending before a switch).
    before = next(
        (
            previous.get(k) or {}
            for k in ("activeServiceStatus", "pendingServiceStatus")
            if (previous.get(k) or {}).get("rayClusterName") == serving.name
        ),
        {},
    )
    prev_apps = before.get("applicationStatuses") or {}
    apps = _apps(serving.snap, prev_apps, now, limit) if serving.snap.reachable else prev_apps
    entry: dict[str, Any] = {"rayClusterName": serving.name}
    if apps:
        entry["applicationStatuses"] = apps
    cluster_status = {k: v for k, v in serving.cluster.status.items() if k != "lastUpdateTime"}
    if cluster_status:
        entry["rayClusterStatus"] = cluster_status
    if shares is not None:
        entry.update(_shares(serving.cluster, shares))
    return entry


def _app_problems(goal: ServeGoal, snap: ServeSnapshot) -> tuple[str, str] | None:
    failed = [(n, a) for n, a in sorted(snap.apps.items()) if a.status == "DEPLOY_FAILED"]
    sick = [(n, a) for n, a in sorted(snap.apps.items()) if a.status == "UNHEALTHY"]
    if not failed and not sick:
        return None
    reason = "ServeDeployFailed" if failed else "ServeApplicationUnhealthy"
    text = "; ".join(f"{n} {a.status}: {last_line(a.message)[:500]}" for n, a in failed + sick)
    return reason, text


SUSPENDED_MESSAGE = "spec.suspend is true: the RayClusters and Services of this service are deleted"


def _serve_condition(inp: StatusInputs) -> Cond:
    goal, target = inp.goal, inp.active if inp.active.cluster else inp.pending
    if not goal.valid:
        return Cond(SERVE_CONFIG_APPLIED, False, "InvalidServeConfig", goal.error)
    if not goal.hash:
        return Cond(SERVE_CONFIG_APPLIED, True, "NotManaged", "serveConfigV2 is not set")
    if inp.state == UpgradeState.SUSPENDED:
        return Cond(SERVE_CONFIG_APPLIED, False, "Suspended", SUSPENDED_MESSAGE)
    if target.cluster is None:
        return Cond(SERVE_CONFIG_APPLIED, False, "WaitingForCluster", "no RayCluster yet")
    where = f"RayCluster {target.name}"
    cluster = target.cluster
    if cluster.rolled_back == goal.hash:
        msg = (
            f"serveConfigV2 {goal.hash} failed on {where} ({cluster.rollback_cause}); the last "
            f"good config ({cluster.serve_hash}) was submitted there again. {goal.hash} is not "
            "submitted again until serveConfigV2 changes"
        )
        return Cond(SERVE_CONFIG_APPLIED, False, ROLLED_BACK, msg)
    if target.rejected:
        return Cond(SERVE_CONFIG_APPLIED, False, "ServeConfigRejected", target.rejected)
    if target.cluster.serve_hash != goal.hash:
        msg = f"waiting for the head of {where} to accept the config"
        return Cond(SERVE_CONFIG_APPLIED, False, "Submitting", msg)
    problems = _app_problems(goal, target.snap)
    if problems is not None:
        return Cond(SERVE_CONFIG_APPLIED, False, problems[0], f"{where}: {problems[1]}")
    apps = target.snap.apps
    if target.snap.reachable and target.snap.running(goal.app_names):
        return Cond(SERVE_CONFIG_APPLIED, True, "ApplicationsRunning", f"{where}: all running")
    states = ", ".join(f"{n} {apps[n].status if n in apps else 'absent'}" for n in goal.app_names)
    return Cond(SERVE_CONFIG_APPLIED, False, "Deploying", f"{where}: {states}")


def _upgrade_condition(inp: StatusInputs) -> Cond:
    active, pending = inp.active.name, inp.pending.name
    match inp.state:
        case UpgradeState.TIMED_OUT:
            timeout = inp.service.spec.upgrade_strategy.timeout_seconds
            if not pending:
                fate = "it was deleted"
            elif keeps_timed_out(inp.service):
                fate = f"{pending} is kept for inspection ({labels.KEEP_TIMED_OUT_CLUSTER})"
            else:
                fate = f"{pending} is deleted after rayClusterDeletionDelaySeconds"
            msg = (
                f"the new RayCluster {pending} did not serve every application within "
                f"{timeout}s; traffic stays on {active}, {fate}, and no new cluster is built "
                "until the spec changes"
            )
            return Cond(UPGRADE_IN_PROGRESS, False, UPGRADE_TIMED_OUT_REASON, msg)
        case UpgradeState.DISABLED:
            msg = (
                f"rayClusterConfig differs from RayCluster {active}, but upgradeStrategy.type "
                "is None: the change is not applied"
            )
            return Cond(UPGRADE_IN_PROGRESS, False, "UpgradeDisabled", msg)
        case UpgradeState.SUSPENDED:
            return Cond(UPGRADE_IN_PROGRESS, False, "Suspended", SUSPENDED_MESSAGE)
        case UpgradeState.RECREATING:
            msg = (
                "upgradeStrategy.type is Recreate: the old RayCluster is deleted before "
                f"{pending or 'the new one'} is built; no traffic is served meanwhile"
            )
            return Cond(UPGRADE_IN_PROGRESS, True, "Recreating", msg)
    if active and pending:
        msg = f"{pending} is prepared to replace {active}" + (
            f": {inp.upgrade_cause}" if inp.upgrade_cause else ""
        )
        return Cond(UPGRADE_IN_PROGRESS, True, "BothActivePendingClustersExist", msg)
    if active:
        return Cond(UPGRADE_IN_PROGRESS, False, "NoPendingCluster", f"{active} serves")
    return Cond(UPGRADE_IN_PROGRESS, False, "Initializing", "no RayCluster serves yet")


def _ready_condition(inp: StatusInputs, previous: Mapping[str, Any]) -> Cond:
    svc = labels.serve_service_name(inp.service)
    if inp.state == UpgradeState.SUSPENDED:
        return Cond(READY, False, "Suspended", SUSPENDED_MESSAGE)
    if inp.state == UpgradeState.INITIALIZING_TIMED_OUT:
        meta = inp.service.metadata
        msg = (
            f"no RayCluster served within {labels.INITIALIZING_TIMEOUT}="
            f"{meta.annotations.get(labels.INITIALIZING_TIMEOUT)!r}; its RayCluster is deleted "
            "after rayClusterDeletionDelaySeconds and none is built until the spec changes"
        )
        return Cond(READY, False, INITIALIZING_TIMEOUT_REASON, msg)
    if inp.active.cluster is not None and inp.endpoints > 0:
        msg = f"{inp.endpoints} pod(s) of {inp.active.name} serve through {svc}"
        snap = inp.active.snap
        # Endpoints are not answers: an application that failed does not answer
        # through them, whatever the proxy's health check says.
        down = failing(tuple(snap.apps), snap) if snap.reachable else []
        if down:
            return Cond(
                READY, False, _not_answering_reason(snap, down), f"{msg}, but {'; '.join(down)}"
            )
        return Cond(READY, True, "NonZeroServeEndpoints", msg)
    if not conditions.is_true(previous.get("conditions"), READY) and not inp.active.cluster:
        prev = conditions.find(previous.get("conditions"), READY)
        # Back from a suspension or a timed-out start is a start from nothing,
        # not an outage.
        fresh = ("Initializing", "Suspended", INITIALIZING_TIMEOUT_REASON)
        if prev is None or prev.get("reason") in fresh:
            return Cond(READY, False, "Initializing", "waiting for a RayCluster to serve")
    return Cond(READY, False, "ZeroServeEndpoints", f"no pod serves through {svc}")


def _not_answering_reason(snap: ServeSnapshot, down: list[str]) -> str:
    states = {app.status for app in snap.apps.values()}
    if "DEPLOY_FAILED" in states:
        return "ServeDeployFailed"
    if "UNHEALTHY" in states:
        return "ServeApplicationUnhealthy"
    return NO_RUNNING_REPLICAS


def _rollback_condition(inp: StatusInputs) -> Cond | None:
    """Only while the serving cluster runs the last good config in place of the goal."""
    cluster, snap = inp.active.cluster, inp.active.snap
    if cluster is None or not inp.goal.hash or cluster.rolled_back != inp.goal.hash:
        return None
    done = (
        snap.reachable
        and bool(snap.apps)
        and all(app.status == "RUNNING" for app in snap.apps.values())
    )
    if done:
        msg = f"{cluster.name} runs the last good serveConfigV2 ({cluster.serve_hash}) again"
        return Cond(ROLLBACK_IN_PROGRESS, False, "RollbackComplete", msg)
    msg = (
        f"the last good serveConfigV2 ({cluster.serve_hash}) was submitted to {cluster.name} "
        f"again: {inp.goal.hash} failed there ({cluster.rollback_cause})"
    )
    return Cond(ROLLBACK_IN_PROGRESS, True, "RollingBack", msg)


def _health_condition(inp: StatusInputs) -> Cond | None:
    cluster = inp.active.cluster
    if cluster is None:
        return None
    verdict = inp.verdict
    if verdict is not None:
        # Before its threshold the clock is a warning: still healthy, and why not quite.
        return Cond(SERVING_CLUSTER_HEALTHY, not verdict.over, verdict.reason, verdict.message)
    return Cond(SERVING_CLUSTER_HEALTHY, True, "Healthy", f"{cluster.name} is within thresholds")


def compute_status(inp: StatusInputs) -> dict[str, Any]:
    previous = _previous(inp.service)
    wanted = [
        _ready_condition(inp, previous),
        _upgrade_condition(inp),
        _serve_condition(inp),
    ]
    for extra in (_health_condition(inp), _rollback_condition(inp)):
        if extra is not None:
            wanted.append(extra)
    limit = app_message_limit([s.snap for s in (inp.active, inp.pending) if s.cluster])
    status: dict[str, Any] = {
        "numServeEndpoints": inp.endpoints,
        "activeServiceStatus": _cluster_entry(
            inp.active, previous, inp.now, limit, 100 if inp.incremental else None
        ),
        "pendingServiceStatus": _cluster_entry(
            inp.pending, previous, inp.now, limit, 0 if inp.incremental else None
        ),
        "conditions": conditions.merge(
            previous.get("conditions"), wanted, inp.service.metadata.generation, inp.now
        ),
        "observedGeneration": inp.service.metadata.generation or 0,
    }
    if wanted[0].status:
        status["serviceStatus"] = "Running"
    return status


def new_warnings(
    previous: Mapping[str, Any] | None, computed: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(reason, message) of conditions that just turned to a failure reason; one
    per reason (Ready and ServeConfigApplied may tell of the same failed app)."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    out: list[tuple[str, str]] = []
    for cond in computed.get("conditions") or []:
        old = before.get(cond["type"]) or {}
        if (
            cond["reason"] in WARNING_REASONS
            and cond["reason"] not in {r for r, _ in out}
            and (old.get("reason") != cond["reason"] or old.get("message") != cond["message"])
        ):
            out.append((cond["reason"], cond["message"]))
    return out
