"""When a RayService is looked at again (pure): every 2 s while anything
changes, as KubeRay does (every second while a config just sent deploys),
and backing off to a minute while it is steady (to
a quarter of its shortest unhealthy threshold, when that is shorter), but
never later than the next deadline the plan or the clusters carry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from raykube.decisions import rayservice_health as health
from raykube.decisions.rayservice import Observed, Plan
from raykube.decisions.rayservice_status import SERVE_CONFIG_APPLIED
from raykube.decisions.rayservice_upgrade import UpgradeState
from raykube.decisions.rayservice_view import UNREACHABLE

#: Look again this soon while anything is changing (KubeRay polls every 2 s).
BUSY_SECONDS = 2.0
#: When nothing changes, look again after 5 s, 10 s, ... up to this.
STEADY_FIRST_SECONDS = 5.0
STEADY_MAX_SECONDS = 60.0
#: Steady looks per unhealthy threshold, at least (see ``_threshold_bound``).
THRESHOLD_LOOKS = 4
#: Never sooner than this, whatever a deadline says.
MIN_SECONDS = 0.5
#: While a config sent less than DEPLOY_WATCH_SECONDS ago is not RUNNING yet,
#: look this often: the first answer (and a switch of traffic) waits for the
#: pass that sees RUNNING, on average half the interval. One second is also
#: the shortest time a dashboard answer is reused (``MIN_POLL_INTERVAL``).
DEPLOYING_SECONDS = 1.0
DEPLOY_WATCH_SECONDS = 60.0

_BUSY_STATES = (UpgradeState.INITIALIZING, UpgradeState.IN_PROGRESS, UpgradeState.RECREATING)
#: Suspended or given up: nothing changes until the spec does (a new event).
_PARKED_STATES = (UpgradeState.SUSPENDED, UpgradeState.INITIALIZING_TIMED_OUT)


@dataclass(frozen=True)
class Cadence:
    #: Seconds until the next pass.
    delay: float
    #: Consecutive steady passes, this one included (0 when busy).
    steady: int


def deadlines(obs: Observed, plan: Plan) -> Iterable[float]:
    """Seconds until each moment at which the plan would change by itself."""
    now = obs.now
    for _, when in plan.clusters.schedule:
        yield (when - now).total_seconds()
    for cluster in (*obs.roles.stale, *([obs.roles.pending] if obs.roles.pending else [])):
        if cluster.delete_after is not None:
            yield (cluster.delete_after - now).total_seconds()
    pending, spec = obs.roles.pending, obs.service.spec
    if pending is not None and spec.upgrade_strategy.timeout_seconds > 0:
        due = pending.created + timedelta(seconds=spec.upgrade_strategy.timeout_seconds)
        yield (due - now).total_seconds()
    if plan.shift is not None and plan.shift.step.next_at is not None:
        yield (plan.shift.step.next_at - now).total_seconds()  # the next traffic step
    active = obs.roles.active
    if active is not None:
        wait = health.seconds_to_threshold(active.health, spec, now)
        if wait is not None:
            yield wait


def _busy(obs: Observed, plan: Plan, status: Mapping[str, Any]) -> bool:
    state = plan.clusters.state
    if state in _PARKED_STATES:
        return False
    conds = {c["type"]: c for c in status.get("conditions") or []}
    serve_ok = (conds.get(SERVE_CONFIG_APPLIED) or {}).get("status") == "True"
    active = obs.roles.active
    cp = plan.clusters
    return (
        state in _BUSY_STATES
        or bool(plan.submit or cp.create or cp.switch or cp.delete)
        or (not serve_ok and obs.goal.valid)
        or (active is not None and not obs.serve.get(active.name, UNREACHABLE).reachable)
    )


def _deploying(obs: Observed, plan: Plan) -> bool:
    """The goal config was just sent, or sent less than a minute ago to the
    cluster that is to serve it, and is not RUNNING there yet."""
    if plan.submit:
        return True
    target = obs.roles.pending or obs.roles.active
    goal = obs.goal
    if target is None or not goal.hash or target.serve_hash != goal.hash:
        return False
    sent = target.serve_submitted_at
    if sent is None or (obs.now - sent).total_seconds() >= DEPLOY_WATCH_SECONDS:
        return False
    return not obs.snap(target).running(goal.app_names)


def _threshold_bound(obs: Observed) -> float:
    """A steady service is looked at often enough for its unhealthy thresholds:
    a dashboard that stops answering is seen (one unanswered read takes ~10 s)
    and said in the status well before ``deploymentUnhealthySecondThreshold``
    passes, not up to a minute after."""
    spec = obs.service.spec
    thresholds = [
        t
        for t in (
            spec.deployment_unhealthy_second_threshold,
            spec.service_unhealthy_second_threshold,
        )
        if t > 0
    ]
    return (
        max(BUSY_SECONDS, min(thresholds) / THRESHOLD_LOOKS) if thresholds else STEADY_MAX_SECONDS
    )


def next_look(obs: Observed, plan: Plan, status: Mapping[str, Any], steady: int) -> Cadence:
    """``steady`` is the count of steady passes before this one."""
    if _busy(obs, plan, status):
        count = 0
        delay = DEPLOYING_SECONDS if _deploying(obs, plan) else BUSY_SECONDS
    else:
        count = steady + 1
        delay = min(STEADY_MAX_SECONDS, STEADY_FIRST_SECONDS * 2 ** min(count - 1, 16))
        delay = min(delay, _threshold_bound(obs))
    soonest = [d for d in deadlines(obs, plan) if d > 0]
    return Cadence(max(MIN_SECONDS, min([delay, *soonest])), count)
