"""Which RayClusters a RayService keeps, builds, promotes and deletes (pure).

- Same ``cluster_config_hash`` as the serving cluster: update in place.
- A different hash: ``NewCluster`` builds a pending cluster, promotes it once
  its head is ready and every Serve app RUNNING, and deletes the old cluster
  after ``rayClusterDeletionDelaySeconds``; ``Recreate`` deletes the serving
  cluster first and builds the new one once the old pods are gone (downtime
  accepted, two clusters never run at once); ``None`` never builds a cluster
  while one serves, and says so.
- A pending cluster whose hash no longer matches (the spec changed again) is
  replaced (reverted to the serving cluster's: dropped, nothing built). One
  not ready by the deadline is deleted after ``rayClusterDeletionDelaySeconds``
  (``raykube.ray.io/keep-timed-out-cluster: "true"`` keeps it for inspection),
  and none is built again until the spec changes: it would hold a second
  cluster's resources (GPUs included) for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from raykube.builders import hashing, labels
from raykube.decisions.rayservice_view import ClusterView
from raykube.models.clusterspec import RayClusterSpec
from raykube.models.rayservice import RayService, RayServiceSpec, RayServiceUpgradeType

# Fields that never ask for a new cluster: the autoscaler's, scheduling-only
# pod fields, and the operator's own switches.
GROUP_FIELDS_IGNORED = ("replicas", "minReplicas", "maxReplicas", "suspend")
POD_FIELDS_IGNORED = ("tolerations", "schedulingGates")
SPEC_FIELDS_IGNORED = ("upgradeStrategy", "suspend")


def _strip_template(template: Any) -> None:
    spec = template.get("spec") if isinstance(template, dict) else None
    if isinstance(spec, dict):
        for key in POD_FIELDS_IGNORED:
            spec.pop(key, None)


def cluster_config_hash(spec: RayClusterSpec) -> str:
    """Hash of ``rayClusterConfig`` without the fields that update in place."""
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key in SPEC_FIELDS_IGNORED:
        data.pop(key, None)
    _strip_template((data.get("headGroupSpec") or {}).get("template"))
    for group in data.get("workerGroupSpecs") or []:
        for key in GROUP_FIELDS_IGNORED:
            group.pop(key, None)
        (group.get("scaleStrategy") or {}).pop("workersToDelete", None)
        _strip_template(group.get("template"))
    return hashing.digest(data)


class UpgradeState(StrEnum):
    """Where the RayService stands with its clusters (drives UpgradeInProgress)."""

    INITIALIZING = "Initializing"
    STEADY = "Steady"
    IN_PROGRESS = "InProgress"
    TIMED_OUT = "TimedOut"
    DISABLED = "Disabled"
    RECREATING = "Recreating"
    SUSPENDED = "Suspended"
    #: ``ray.io/initializing-timeout`` passed before any cluster served.
    INITIALIZING_TIMED_OUT = "InitializingTimedOut"


class CreateReason(StrEnum):
    """Why a RayCluster is built; ``why`` is the sentence its event carries."""

    INITIAL = "Initial"
    CONFIG_CHANGED = "ClusterConfigChanged"
    UNHEALTHY = "Unhealthy"
    ACTIVE_MISSING = "ActiveClusterMissing"

    @property
    def why(self) -> str:
        return _CREATE_WHY[self]


_CREATE_WHY = {
    CreateReason.INITIAL: "the first cluster of the service",
    CreateReason.CONFIG_CHANGED: "rayClusterConfig changed; traffic moves once it serves",
    CreateReason.UNHEALTHY: "the serving cluster is unhealthy; traffic moves once this one serves",
    CreateReason.ACTIVE_MISSING: "the serving cluster is gone",
}


class DeleteReason(StrEnum):
    """Why a RayCluster is deleted; ``why`` is the sentence its event carries."""

    DELAY_ELAPSED = "DeletionDelayElapsed"
    CONFIG_CHANGED = "ClusterConfigChanged"
    RECREATE = "Recreate"
    UPGRADE_NONE = "UpgradeStrategyNone"
    REPLACEMENT_TIMED_OUT = "ReplacementTimedOut"
    SUSPENDED = "Suspended"

    @property
    def why(self) -> str:
        return _DELETE_WHY[self]

    @property
    def disruptive(self) -> bool:
        """The deletion takes away the cluster that serves: a Warning, not Normal."""
        return self is DeleteReason.RECREATE


_DELETE_WHY = {
    DeleteReason.DELAY_ELAPSED: "it no longer serves and rayClusterDeletionDelaySeconds passed",
    DeleteReason.CONFIG_CHANGED: "rayClusterConfig changed again before it served",
    DeleteReason.RECREATE: (
        "upgradeStrategy is Recreate: no traffic is served until its replacement is ready"
    ),
    DeleteReason.UPGRADE_NONE: "upgradeStrategy is None: no cluster is prepared",
    DeleteReason.REPLACEMENT_TIMED_OUT: (
        "it replaced an unhealthy cluster but did not serve in time"
    ),
    DeleteReason.SUSPENDED: "spec.suspend is true",
}


@dataclass(frozen=True)
class Roles:
    active: ClusterView | None
    pending: ClusterView | None
    stale: tuple[ClusterView, ...] = ()


def assign_roles(
    active_name: str, pending_name: str, clusters: Iterable[ClusterView], goal_hash: str
) -> Roles:
    """Active and pending clusters by name; a goal-hash cluster missing from the
    status (created just before a crash) is adopted as pending."""
    live = {c.name: c for c in clusters if not c.terminating}
    active = live.get(active_name) if active_name else None
    pending = live.get(pending_name) if pending_name and pending_name != active_name else None
    if pending is None:
        # Only a cluster newer than the serving one: an older cluster with the
        # goal hash is one that served before (it is on its way out).
        orphans = [
            c
            for c in live.values()
            if c is not active
            and c.config_hash == goal_hash
            and c.delete_after is None
            and (active is None or c.created > active.created)
        ]
        pending = max(orphans, key=lambda c: (c.created, c.name)) if orphans else None
    stale = tuple(c for c in live.values() if c is not active and c is not pending)
    return Roles(active, pending, stale)


@dataclass
class ClusterPlan:
    state: UpgradeState = UpgradeState.STEADY
    create: CreateReason | None = None
    switch: bool = False
    #: Deleted now, with the reason.
    delete: list[tuple[ClusterView, DeleteReason]] = field(default_factory=list)
    #: No longer serving: deleted once the time recorded on it has passed.
    schedule: list[tuple[ClusterView, datetime]] = field(default_factory=list)
    #: Serving again (a switch was interrupted): its deletion time is dropped.
    unschedule: list[ClusterView] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterInputs:
    spec: RayServiceSpec
    goal_hash: str
    roles: Roles
    now: datetime
    #: The pending cluster serves every app (head ready, apps RUNNING).
    ready: Callable[[ClusterView], bool]
    #: The serving cluster's verdict, when a replacement is wanted and allowed.
    replace_unhealthy: bool = False
    #: The cluster traffic last went to is gone (Recreate, or deleted by hand).
    active_gone: bool = False
    #: ... but its RayCluster or pods still exist (it is going away).
    lingering: bool = False
    #: ``ray.io/initializing-timeout`` in seconds, when set.
    initializing_timeout: float | None = None
    #: An earlier pass gave up initializing at this generation: build nothing.
    gave_up_initializing: bool = False
    #: An earlier pass gave up an upgrade at this generation: build nothing.
    gave_up_upgrading: bool = False
    #: Keep a pending cluster that missed the upgrade deadline.
    keep_timed_out: bool = False
    #: An incremental upgrade has traffic on the pending cluster: it is never
    #: deleted or timed out before that traffic has moved back.
    migrating: bool = False

    @property
    def recreate(self) -> bool:
        return self.spec.upgrade_strategy.type == RayServiceUpgradeType.RECREATE


def keeps_timed_out(service: RayService) -> bool:
    """``raykube.ray.io/keep-timed-out-cluster: "true"``: a pending cluster that
    missed the upgrade deadline stays for inspection."""
    notes = service.metadata.annotations
    return notes.get(labels.KEEP_TIMED_OUT_CLUSTER, "").strip().lower() == "true"


def older_than(cluster: ClusterView, seconds: float | None, now: datetime) -> bool:
    """The cluster was created at least ``seconds`` ago (never, without a limit)."""
    if not seconds or seconds <= 0:
        return False
    return now >= cluster.created + timedelta(seconds=seconds)


def timed_out(spec: RayServiceSpec, cluster: ClusterView, now: datetime) -> bool:
    return older_than(cluster, spec.upgrade_strategy.timeout_seconds, now)


def _tidy(inp: ClusterInputs, plan: ClusterPlan) -> None:
    """Old clusters: record when they go, and delete them once that time is past."""
    delay = timedelta(seconds=inp.spec.ray_cluster_deletion_delay_seconds)
    for c in inp.roles.stale:
        if c.delete_after is None:
            plan.schedule.append((c, inp.now + delay))
        elif inp.now >= c.delete_after:
            plan.delete.append((c, DeleteReason.DELAY_ELAPSED))
    active = inp.roles.active
    if active is not None and active.delete_after is not None:
        plan.unschedule.append(active)


def _follow_pending(inp: ClusterInputs, plan: ClusterPlan, pending: ClusterView) -> None:
    """A pending cluster built for the current spec: promote it, wait, or give up."""
    active = inp.roles.active
    if inp.ready(pending):
        plan.switch = True
        plan.state = UpgradeState.STEADY
        if active is not None:
            # Its deletion time is recorded in the same pass as the switch, so
            # the old cluster is never mistaken for a cluster still to serve.
            delay = timedelta(seconds=inp.spec.ray_cluster_deletion_delay_seconds)
            plan.schedule.append((active, inp.now + delay))
    elif active is None:
        recreating = inp.recreate and inp.active_gone
        plan.state = UpgradeState.RECREATING if recreating else UpgradeState.INITIALIZING
        if not recreating and older_than(pending, inp.initializing_timeout, inp.now):
            _give_up_initializing(inp, plan, pending)
    elif inp.migrating or not timed_out(inp.spec, pending, inp.now):
        plan.state = UpgradeState.IN_PROGRESS
    elif pending.config_hash == active.config_hash and inp.replace_unhealthy:
        # A replacement of an unhealthy cluster that failed: try afresh (back-off
        # decided by the caller).
        plan.delete.append((pending, DeleteReason.REPLACEMENT_TIMED_OUT))
        plan.create = CreateReason.UNHEALTHY
        plan.state = UpgradeState.IN_PROGRESS
    else:
        plan.state = UpgradeState.TIMED_OUT
        if not inp.keep_timed_out:
            _retire(inp, plan, pending)


def _retire(inp: ClusterInputs, plan: ClusterPlan, cluster: ClusterView) -> None:
    """Delete ``cluster`` after the deletion delay (kept that long for inspection)."""
    if cluster.delete_after is None:
        delay = timedelta(seconds=inp.spec.ray_cluster_deletion_delay_seconds)
        plan.schedule.append((cluster, inp.now + delay))
    elif inp.now >= cluster.delete_after:  # still named in the status: a lost write
        plan.delete.append((cluster, DeleteReason.DELAY_ELAPSED))


def _give_up_initializing(
    inp: ClusterInputs, plan: ClusterPlan, pending: ClusterView | None
) -> None:
    """No cluster served in time: the pending one leaves after the deletion delay
    (kept that long for inspection) and none is built until the spec changes."""
    plan.state = UpgradeState.INITIALIZING_TIMED_OUT
    if pending is not None:
        _retire(inp, plan, pending)


def _without_active(inp: ClusterInputs, plan: ClusterPlan) -> None:
    pending = inp.roles.pending
    if inp.lingering and inp.recreate:
        plan.state = UpgradeState.RECREATING  # wait until the old pods are gone
        return
    if inp.gave_up_initializing:
        _give_up_initializing(inp, plan, pending)
        return
    if pending is not None and pending.config_hash != inp.goal_hash:
        plan.delete.append((pending, DeleteReason.CONFIG_CHANGED))
        pending = None
    if pending is not None:
        _follow_pending(inp, plan, pending)
        return
    plan.create = CreateReason.ACTIVE_MISSING if inp.active_gone else CreateReason.INITIAL
    recreating = inp.recreate and inp.active_gone
    plan.state = UpgradeState.RECREATING if recreating else UpgradeState.INITIALIZING


def _recreate(inp: ClusterInputs, plan: ClusterPlan, active: ClusterView) -> None:
    plan.delete.append((active, DeleteReason.RECREATE))
    if inp.roles.pending is not None:
        plan.delete.append((inp.roles.pending, DeleteReason.RECREATE))
    plan.state = UpgradeState.RECREATING


def _suspend(inp: ClusterInputs, plan: ClusterPlan) -> None:
    """``spec.suspend``: every cluster goes now, whatever its role or delay."""
    roles = inp.roles
    for cluster in (roles.active, roles.pending, *roles.stale):
        if cluster is not None:
            plan.delete.append((cluster, DeleteReason.SUSPENDED))
    plan.state = UpgradeState.SUSPENDED


def plan_clusters(inp: ClusterInputs) -> ClusterPlan:
    plan = ClusterPlan()
    if inp.spec.suspend:
        _suspend(inp, plan)
        return plan
    _tidy(inp, plan)
    active, pending = inp.roles.active, inp.roles.pending
    if active is None:
        _without_active(inp, plan)
        return plan
    strategy = inp.spec.upgrade_strategy.type
    drifted = active.config_hash != inp.goal_hash
    if strategy == RayServiceUpgradeType.NONE:
        if pending is not None:
            plan.delete.append((pending, DeleteReason.UPGRADE_NONE))
        plan.state = UpgradeState.DISABLED if drifted else UpgradeState.STEADY
        return plan
    if strategy == RayServiceUpgradeType.RECREATE and (drifted or inp.replace_unhealthy):
        _recreate(inp, plan, active)
        return plan
    if pending is not None and pending.config_hash != inp.goal_hash:
        if inp.migrating:
            plan.state = UpgradeState.IN_PROGRESS  # its traffic moves back step by step first
            return plan
        plan.delete.append((pending, DeleteReason.CONFIG_CHANGED))
        pending = None
    if pending is not None:
        _follow_pending(inp, plan, pending)
    elif drifted and inp.gave_up_upgrading:
        plan.state = UpgradeState.TIMED_OUT  # its pending cluster is gone; none until a change
    elif drifted:
        plan.create, plan.state = CreateReason.CONFIG_CHANGED, UpgradeState.IN_PROGRESS
    elif inp.replace_unhealthy:
        plan.create, plan.state = CreateReason.UNHEALTHY, UpgradeState.IN_PROGRESS
    return plan


def group_sizes_patch(
    wanted: Mapping[str, list[int]], cluster: ClusterView
) -> tuple[list[dict[str, Any]], dict[str, list[int]]] | None:
    """JSON Patch ops copying changed worker group sizes onto a cluster.

    Only what changed in the RayService since it was last copied is written;
    while the autoscaler runs, ``replicas`` is its own and never written.
    Each write is guarded by a ``test`` of the group's name at that index.
    Returns the ops and the new record, or None when nothing changed.
    """
    applied = {k: list(v) for k, v in cluster.applied_scaling.items()}
    ops: list[dict[str, Any]] = []
    for index, have in enumerate(cluster.groups):
        want = wanted.get(have.name)
        last = applied.get(have.name)
        if want is None or last == want:
            continue
        base = f"/spec/workerGroupSpecs/{index}"
        changes = []
        for pos, key in enumerate(("replicas", "minReplicas", "maxReplicas")):
            if key == "replicas" and cluster.autoscaling:
                continue
            before = last[pos] if last else have.values()[pos]
            if want[pos] != before and want[pos] != have.values()[pos]:
                changes.append({"op": "replace", "path": f"{base}/{key}", "value": want[pos]})
        if changes:
            ops += [{"op": "test", "path": f"{base}/groupName", "value": have.name}, *changes]
        applied[have.name] = list(want)
    if applied == cluster.applied_scaling:
        return None
    return ops, applied


def suspend_patch(
    want_cluster: bool, want_groups: Mapping[str, bool], cluster: ClusterView
) -> list[dict[str, Any]]:
    """JSON Patch ops copying ``suspend`` (the cluster's and each group's) onto a
    running cluster. Left out of the hash, so a change never builds a new
    cluster; copied always, since a queue such as Kueue admits a RayService by
    turning ``rayClusterConfig.suspend`` off and the cluster must follow."""
    ops: list[dict[str, Any]] = []
    if want_cluster != cluster.suspended:
        ops.append({"op": "add", "path": "/spec/suspend", "value": want_cluster})
    for index, have in enumerate(cluster.groups):
        want = want_groups.get(have.name)
        if want is None or want == have.suspend:
            continue
        base = f"/spec/workerGroupSpecs/{index}"
        ops += [
            {"op": "test", "path": f"{base}/groupName", "value": have.name},
            {"op": "add", "path": f"{base}/suspend", "value": want},
        ]
    return ops
