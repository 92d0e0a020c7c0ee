"""Reconcile one RayService: observe, decide (pure), then small ``ensure`` steps.

The order matters and each step is idempotent:

1. observe: the RayService, the clusters it owns (an index, by owner), where
   its serve Service sends traffic, and the Serve state of the active and
   pending clusters' heads (their dashboards);
2. decide: ``decisions.rayservice.decide`` returns the plan;
3. act: delete clusters, build one, submit serve configs, move the stable
   Services, record deletion times and health clocks on the clusters, copy
   worker group sizes, flip head pods' ``ray.io/serve`` label, record the last
   good config;
4. status: computed purely, written only when it changed.

Everything the next pass needs is on the objects (annotations, status), so a
restarted operator continues where this one stopped; what is kept in memory
(steady-poll counters, a refused config) only saves work.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from raykube import metrics
from raykube.adapters.dashboard import DashboardClient, DashboardError, Head
from raykube.adapters.kube import PODS, RAYCLUSTERS, RAYSERVICES, SECRETS, SERVICES, ApiError
from raykube.builders import labels
from raykube.builders.pods import random_suffix
from raykube.builders.rayservice import build_cluster, build_head_service, build_serve_service
from raykube.decisions import rayservice_health as health
from raykube.decisions.cluster_status import differs
from raykube.decisions.conditions import Cond, merge
from raykube.decisions.pods import PodView
from raykube.decisions.rayservice import (
    Observed,
    Plan,
    decide,
    initializing_timeout,
    roles_of,
    submitted_notes,
)
from raykube.decisions.rayservice_config import ServeGoal, parse_serve_config
from raykube.decisions.rayservice_status import (
    Serving,
    StatusInputs,
    compute_status,
    new_warnings,
)
from raykube.decisions.rayservice_upgrade import UpgradeState, cluster_config_hash
from raykube.decisions.rayservice_view import (
    UNREACHABLE,
    ClusterView,
    ServeSnapshot,
    cluster_view,
    snapshot,
)
from raykube.handlers.runtime import IndexLike, Runtime
from raykube.handlers.workqueue import Key, WorkQueue
from raykube.models.clusterspec import ManagedBy
from raykube.models.rayservice import RayService, parse_rayservice
from raykube.timefmt import format_time

log = logging.getLogger(__name__)
KIND = "RayService"
#: Look again this soon while anything is changing (KubeRay polls every 2 s).
BUSY_SECONDS = 2.0
#: When nothing changes, look again after 5 s, 10 s, ... up to this.
STEADY_MAX_SECONDS = 60.0
STEADY_FIRST_SECONDS = 5.0
#: Two reconciles this close reuse one dashboard answer (events come in bursts).
MIN_POLL_INTERVAL = 1.0


@dataclass
class ServiceRuntime:
    """What the RayService controller keeps besides the shared ``Runtime``."""

    rt: Runtime
    dashboard: DashboardClient
    #: Owned RayClusters as ``ClusterView`` by (namespace, RayService name).
    clusters: IndexLike
    queue: WorkQueue
    known: set[Key] = field(default_factory=set)
    #: Consecutive steady passes per RayService: the poll back-off.
    steady: dict[Key, int] = field(default_factory=dict)
    #: (namespace, cluster) -> (serve config hash, Ray's words) for a refused PUT.
    rejected: dict[Key, tuple[str, str]] = field(default_factory=dict)
    #: (namespace, cluster) -> (monotonic time, snapshot) of the last poll.
    polls: dict[Key, tuple[float, ServeSnapshot]] = field(default_factory=dict)
    #: (namespace, cluster) -> (namespace, RayService): routes head pod events.
    owners: dict[Key, Key] = field(default_factory=dict)

    def forget(self, key: Key) -> None:
        self.steady.pop(key, None)
        self.queue.forget(key)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def reconcile(srt: ServiceRuntime, key: Key) -> float | None:
    started = time.monotonic()
    metrics.RECONCILES.labels(KIND).inc()
    try:
        return await _reconcile(srt, key)
    except ApiError as err:
        if err.status == 403 and "being terminated" in err.message:
            return None  # the namespace is going away, and this object with it
        metrics.RECONCILE_ERRORS.labels(KIND, type(err).__name__).inc()
        raise
    except Exception as exc:
        metrics.RECONCILE_ERRORS.labels(KIND, type(exc).__name__).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(KIND).observe(time.monotonic() - started)


@dataclass
class Pass:
    """One reconcile: the object as read, and what happened so far."""

    srt: ServiceRuntime
    key: Key
    obj: dict[str, Any]
    rs: RayService
    goal: ServeGoal
    now: datetime
    created: ClusterView | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def rt(self) -> Runtime:
        return self.srt.rt

    def event(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))


async def _reconcile(srt: ServiceRuntime, key: Key) -> float | None:
    await srt.rt.indexed.wait()
    obj = await srt.rt.kube.get(RAYSERVICES, *key)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        srt.forget(key)  # owned clusters and Services go with it (owner references)
        return None
    try:
        rs = parse_rayservice(obj)
    except ValidationError as err:
        await _report_invalid(srt, key, obj, err)
        return None
    if rs.spec.managed_by == ManagedBy.MULTIKUEUE:
        return None
    p = Pass(srt, key, obj, rs, parse_serve_config(rs.spec.serve_config_v2), now_utc())
    _, problem = initializing_timeout(rs)
    if problem and (key, "InvalidAnnotation", problem) not in srt.rt.warned:
        srt.rt.warned.add((key, "InvalidAnnotation", problem))
        p.event("Warning", "InvalidAnnotation", problem)
    obs = await observe(p)
    plan = decide(obs)
    await act(p, obs, plan)
    status = await ensure_status(p, obs, plan)
    for kind, reason, message in p.events:
        await p.rt.kube.event(obj, kind, reason, message, p.rt.settings.operator_name)
    return next_look(p, obs, plan, status)


async def _report_invalid(
    srt: ServiceRuntime, key: Key, obj: dict[str, Any], err: ValidationError
) -> None:
    """A spec the CRD let through but the models refuse: say so once, never retry."""
    message = "; ".join(
        f"spec.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in err.errors()[:5]
    )
    rt = srt.rt
    if (key, "InvalidRayServiceSpec", message) not in rt.warned:
        rt.warned.add((key, "InvalidRayServiceSpec", message))
        name = rt.settings.operator_name
        await rt.kube.event(obj, "Warning", "InvalidRayServiceSpec", message, name)
    status = dict(obj.get("status") or {})
    wanted = [Cond("Ready", False, "ValidationFailed", message)]
    generation = obj["metadata"].get("generation")
    now = format_time(now_utc())
    status["conditions"] = merge(status.get("conditions"), wanted, generation, now)
    await _write_status(rt, key, obj, status)


# --- observe ---------------------------------------------------------------------------


async def observe(p: Pass) -> Observed:
    rs, rt = p.rs, p.rt
    ns = p.key[0]
    goal_hash = cluster_config_hash(rs.spec.ray_cluster_config)
    traffic = await _traffic(p)
    clusters = await _owned_clusters(p)
    roles = roles_of(rs, clusters, traffic, goal_hash)
    members = [c for c in (roles.active, roles.pending) if c is not None]
    heads = {c.name: h for c in members if (h := _head_pod(rt, ns, c.name)) is not None}
    polls = (_poll(p, c, c.name in heads and heads[c.name].ready) for c in members)
    snaps = await asyncio.gather(*polls)
    live = {c.name for c in clusters if not c.terminating}
    gone = bool(traffic) and traffic not in live
    lingering = gone and (
        any(c.name == traffic for c in clusters) or bool(rt.pods_of((ns, traffic)))
    )
    notes = rs.metadata.annotations
    rejected = {name: h for (n, name), (h, _) in p.srt.rejected.items() if n == ns}
    return Observed(
        service=rs,
        goal=p.goal,
        goal_hash=goal_hash,
        roles=roles,
        now=p.now,
        serve={c.name: s for c, s in zip(members, snaps, strict=True)},
        heads=heads,
        active_gone=gone,
        lingering=lingering,
        replacements=health.Replacements.from_json(notes.get(labels.REPLACEMENTS)),
        rejected=rejected,
        last_good=notes.get(labels.LAST_GOOD_SERVE_CONFIG, ""),
    )


def _serve_service_name(rs: RayService) -> str:
    override = (rs.spec.serve_service or {}).get("metadata") or {}
    return str(override.get("name") or labels.rayservice_serve_service_name(rs.metadata.name))


async def _traffic(p: Pass) -> str:
    """The cluster the serve Service selects now ("" before the first switch)."""
    svc = await p.rt.kube.get(SERVICES, p.key[0], _serve_service_name(p.rs))
    selector = ((svc or {}).get("spec") or {}).get("selector") or {}
    return str(selector.get(labels.CLUSTER, ""))


async def _owned_clusters(p: Pass) -> list[ClusterView]:
    """Owned clusters from the index; a name the status holds but the index does
    not yet show (created a moment ago) is read from the API server."""
    index = p.srt.clusters
    found: dict[str, ClusterView] = {}
    if p.key in index:
        found = {c.name: c for c in index[p.key]}
    status = p.rs.status
    named = (
        [
            status.active_service_status.ray_cluster_name,
            status.pending_service_status.ray_cluster_name,
        ]
        if status
        else []
    )
    for name in filter(None, named):
        if name not in found:
            body = await p.rt.kube.get(RAYCLUSTERS, p.key[0], name)
            if body is not None and _owned_by(body, p.rs):
                found[name] = cluster_view(body)
    return list(found.values())


def _owned_by(body: dict[str, Any], rs: RayService) -> bool:
    refs = body["metadata"].get("ownerReferences") or []
    return any(r.get("uid") == rs.metadata.uid for r in refs)


def _head_pod(rt: Runtime, ns: str, cluster: str) -> PodView | None:
    heads = [p for p in rt.pods_of((ns, cluster)) if p.node_type == "head" and not p.terminating]
    return heads[0] if heads else None


def head_address(p: Pass, cluster: ClusterView, token: str = "") -> Head:
    ports = {str(x.get("name")): x.get("containerPort") for x in cluster.head_ports}
    honour = p.rt.settings.dashboard_url_annotations
    return Head(
        namespace=p.key[0],
        service=labels.head_service_name(cluster.name),
        dashboard_port=int(ports.get("dashboard") or 8265),
        serve_port=int(ports.get("serve") or 8000),
        dashboard_url=cluster.dashboard_url if honour else "",
        serve_url=cluster.serve_url if honour else "",
        token=token,
    )


async def _token(p: Pass) -> str:
    """The dashboard token of a cluster with token authentication, if any."""
    auth = p.rs.spec.ray_cluster_config.auth_options
    if auth is None or auth.mode == "disabled" or not auth.secret_name:
        return ""
    secret = await p.rt.kube.get(SECRETS, p.key[0], auth.secret_name)
    raw = ((secret or {}).get("data") or {}).get("auth_token", "")
    return base64.b64decode(raw).decode() if raw else ""


async def _poll(p: Pass, cluster: ClusterView, head_ready: bool) -> ServeSnapshot:
    if not head_ready:
        return ServeSnapshot(reachable=False, error="head pod not ready")
    cache_key = (p.key[0], cluster.name)
    cached = p.srt.polls.get(cache_key)
    if cached and time.monotonic() - cached[0] < MIN_POLL_INTERVAL:
        return cached[1]
    head = head_address(p, cluster, await _token(p))
    dashboard = p.srt.dashboard
    try:
        details, proxy = await asyncio.gather(
            dashboard.get_applications(head), dashboard.proxy_healthy(head)
        )
        snap = snapshot(details, proxy)
    except DashboardError as err:
        snap = ServeSnapshot(reachable=False, error=str(err))
    p.srt.polls[cache_key] = (time.monotonic(), snap)
    return snap


# --- act ------------------------------------------------------------------------------

DELETE_WHY = {
    "DeletionDelayElapsed": "it no longer serves and rayClusterDeletionDelaySeconds passed",
    "ClusterConfigChanged": "rayClusterConfig changed again before it served",
    "Recreate": "upgradeStrategy is Recreate: no traffic is served until its replacement is ready",
    "UpgradeStrategyNone": "upgradeStrategy is None: no cluster is prepared",
    "ReplacementTimedOut": "it replaced an unhealthy cluster but did not serve in time",
    "Suspended": "spec.suspend is true",
}
CREATE_WHY = {
    "Initial": "the first cluster of the service",
    "ClusterConfigChanged": "rayClusterConfig changed; traffic moves once it serves",
    "Unhealthy": "the serving cluster is unhealthy; traffic moves once this one serves",
    "ActiveClusterMissing": "the serving cluster is gone",
}


async def act(p: Pass, obs: Observed, plan: Plan) -> None:
    await ensure_deletions(p, plan)
    await ensure_new_cluster(p, obs, plan)
    await ensure_submissions(p, plan)
    await ensure_services(p, obs, plan)
    await ensure_deletion_times(p, plan)
    for cluster, notes in plan.notes:
        await _annotate(p, RAYCLUSTERS, cluster.name, dict(notes))
    await ensure_group_sizes(p, plan)
    await ensure_suspension(p, plan)
    await ensure_serve_labels(p, plan)
    await ensure_service_notes(p, plan)


async def ensure_deletions(p: Pass, plan: Plan) -> None:
    ns = p.key[0]
    for cluster, why in plan.clusters.delete:
        if await p.rt.kube.delete(RAYCLUSTERS, ns, cluster.name, uid=cluster.uid or None):
            kind = "Warning" if why == "Recreate" else "Normal"
            why_text = DELETE_WHY.get(why, why)
            p.event(
                kind, "DeletedRayCluster", f"Deleted RayCluster {ns}/{cluster.name}: {why_text}"
            )
        p.srt.polls.pop((ns, cluster.name), None)
        p.srt.rejected.pop((ns, cluster.name), None)


async def ensure_new_cluster(p: Pass, obs: Observed, plan: Plan) -> None:
    reason = plan.clusters.create
    if reason is None:
        return
    name = labels.rayservice_cluster_name(p.rs.metadata.name, random_suffix())
    created = await p.rt.kube.apply(build_cluster(p.rs, name, obs.goal_hash))
    p.created = cluster_view(created)
    why = CREATE_WHY.get(reason, reason)
    if plan.verdict is not None and reason == "Unhealthy":
        why += f" ({plan.verdict.message})"
    p.event("Normal", "CreatedRayCluster", f"Created RayCluster {p.key[0]}/{name}: {why}")


async def ensure_submissions(p: Pass, plan: Plan) -> None:
    ns, goal = p.key[0], p.goal
    token = await _token(p) if plan.submit else ""
    for cluster, why in plan.submit:
        try:
            await p.srt.dashboard.put_applications(
                head_address(p, cluster, token), dict(goal.config)
            )
        except DashboardError as err:
            if not err.rejected:
                log.warning("serve config for %s/%s not submitted: %s", ns, cluster.name, err)
                continue
            message = f"the head of RayCluster {cluster.name} refused serveConfigV2: {err.message}"
            p.srt.rejected[(ns, cluster.name)] = (goal.hash, message)
            p.event("Warning", "ServeConfigRejected", message)
            continue
        p.srt.rejected.pop((ns, cluster.name), None)
        p.srt.polls.pop((ns, cluster.name), None)
        await _annotate(p, RAYCLUSTERS, cluster.name, {**submitted_notes(goal, p.now)})
        apps = ", ".join(goal.app_names) or "no applications"
        message = f"Submitted serveConfigV2 ({apps}) to RayCluster {ns}/{cluster.name} ({why})"
        p.event("Normal", "SubmittedServeConfig", message)


def serving_after(obs: Observed, plan: Plan) -> ClusterView | None:
    """The cluster traffic goes to once this pass is done."""
    roles = obs.roles
    if plan.clusters.switch:
        return roles.pending
    return None if plan.deleted(roles.active) else roles.active


async def ensure_services(p: Pass, obs: Observed, plan: Plan) -> None:
    if plan.clusters.state == UpgradeState.SUSPENDED:
        await _delete_services(p)
        return
    target = serving_after(obs, plan)
    if target is None:
        return
    creator = p.rt.settings.operator_name
    wanted = [
        build_head_service(p.rs, target.name, target.head_ports, creator),
        build_serve_service(p.rs, target.name, target.head_ports, creator),
    ]
    for svc in wanted:
        have = await p.rt.kube.get(SERVICES, p.key[0], svc["metadata"]["name"])
        have_hash = ((have or {}).get("metadata", {}).get("annotations") or {}).get(
            labels.SPEC_HASH
        )
        if have_hash != svc["metadata"]["annotations"][labels.SPEC_HASH]:
            await p.rt.kube.apply(svc)
    if plan.clusters.switch:
        before = obs.roles.active.name if obs.roles.active else None
        names = " and ".join(s["metadata"]["name"] for s in wanted)
        was = f" (was {before})" if before else ""
        p.event("Normal", "SwitchedTraffic", f"Pointed {names} at RayCluster {target.name}{was}")


async def _delete_services(p: Pass) -> None:
    """While suspended the stable Services go too: they would select nothing."""
    ns = p.key[0]
    names = [labels.rayservice_head_service_name(p.rs.metadata.name), _serve_service_name(p.rs)]
    deleted = [name for name in names if await p.rt.kube.delete(SERVICES, ns, name)]
    if deleted:
        listed = " and ".join(f"{ns}/{name}" for name in deleted)
        p.event("Normal", "DeletedService", f"Deleted Service {listed}: spec.suspend is true")


async def ensure_deletion_times(p: Pass, plan: Plan) -> None:
    gave_up = plan.clusters.state == UpgradeState.INITIALIZING_TIMED_OUT
    for cluster, when in plan.clusters.schedule:
        await _annotate(p, RAYCLUSTERS, cluster.name, {labels.DELETE_AFTER: format_time(when)})
        why = (
            f"did not serve within {labels.INITIALIZING_TIMEOUT}" if gave_up else "no longer serves"
        )
        message = (
            f"RayCluster {p.key[0]}/{cluster.name} {why}; it will be deleted at {format_time(when)}"
        )
        p.event("Normal", "ScheduledRayClusterDeletion", message)
    for cluster in plan.clusters.unschedule:
        await _annotate(p, RAYCLUSTERS, cluster.name, {labels.DELETE_AFTER: None})


async def _patch_groups(p: Pass, cluster: ClusterView, ops: list[dict[str, Any]]) -> bool:
    """A JSON Patch guarded by ``test`` ops; False when a test failed (the groups
    moved under us: the next pass re-reads)."""
    try:
        await p.rt.kube.patch(RAYCLUSTERS, p.key[0], cluster.name, ops, patch_type="json")
    except ApiError as err:
        if err.status != 422:
            raise
        return False
    return True


async def ensure_group_sizes(p: Pass, plan: Plan) -> None:
    """Targeted JSON Patches: the autoscaler's fields are never rewritten wholesale."""
    key = labels.APPLIED_SCALING.replace("~", "~0").replace("/", "~1")
    for cluster, ops, record in plan.scaling:
        value = json.dumps(record, sort_keys=True)
        note = {"op": "add", "path": f"/metadata/annotations/{key}", "value": value}
        if not await _patch_groups(p, cluster, [*ops, note]):
            continue
        changed = [f"{o['path'].split('/')[-1]}={o['value']}" for o in ops if o["op"] == "replace"]
        if changed:
            message = f"Updated worker groups of RayCluster {cluster.name}: {', '.join(changed)}"
            p.event("Normal", "UpdatedRayCluster", message)


async def ensure_suspension(p: Pass, plan: Plan) -> None:
    for cluster, ops in plan.suspension:
        if not await _patch_groups(p, cluster, ops):
            continue
        changed = [
            f"{o['path'].removeprefix('/spec/').replace('/', '.')}={json.dumps(o['value'])}"
            for o in ops
            if o["op"] == "add"
        ]
        message = f"Updated RayCluster {cluster.name}: {', '.join(changed)}"
        p.event("Normal", "UpdatedRayCluster", message)


async def ensure_serve_labels(p: Pass, plan: Plan) -> None:
    for pod, serving in plan.serve_labels:
        patch = {"metadata": {"labels": {labels.SERVE: "true" if serving else "false"}}}
        try:
            await p.rt.kube.patch(PODS, p.key[0], pod.name, patch)
        except ApiError as err:
            if not err.not_found:
                raise


async def ensure_service_notes(p: Pass, plan: Plan) -> None:
    notes: dict[str, str | None] = {}
    if plan.last_good is not None:
        notes[labels.LAST_GOOD_SERVE_CONFIG] = plan.last_good
    if plan.replacements is not None:
        notes[labels.REPLACEMENTS] = plan.replacements.to_json()
    if notes:
        await _annotate(p, RAYSERVICES, p.rs.metadata.name, notes)


async def _annotate(p: Pass, res: Any, name: str, notes: dict[str, str | None]) -> None:
    try:
        await p.rt.kube.patch(res, p.key[0], name, {"metadata": {"annotations": notes}})
    except ApiError as err:
        if not err.not_found:
            raise


# --- status and cadence ------------------------------------------------------------------


def _count_endpoints(p: Pass, cluster: ClusterView | None, plan: Plan) -> int:
    if cluster is None:
        return 0
    relabelled = {pod.name: serving for pod, serving in plan.serve_labels}
    pods = p.rt.pods_of((p.key[0], cluster.name))
    return sum(
        1
        for pod in pods
        if pod.ready and not pod.terminating and relabelled.get(pod.name, pod.serve_label)
    )


def _cause(
    obs: Observed, plan: Plan, active: ClusterView | None, pending: ClusterView | None
) -> str:
    if active is None or pending is None:
        return ""
    if pending.config_hash != active.config_hash:
        return "rayClusterConfig changed"
    verdict = plan.verdict
    return (
        f"{active.name} is unhealthy: {verdict.message}"
        if verdict
        else "replacing an unhealthy cluster"
    )


def _rejected(p: Pass, cluster: ClusterView | None) -> str:
    if cluster is None:
        return ""
    hash_, message = p.srt.rejected.get((p.key[0], cluster.name), ("", ""))
    return message if hash_ == p.goal.hash else ""


async def ensure_status(p: Pass, obs: Observed, plan: Plan) -> dict[str, Any]:
    active = serving_after(obs, plan)
    roles = obs.roles
    pending = p.created or (
        None if plan.clusters.switch or plan.leaving(roles.pending) else roles.pending
    )

    def snap(cluster: ClusterView | None) -> ServeSnapshot:
        return obs.serve.get(cluster.name, UNREACHABLE) if cluster else UNREACHABLE

    inputs = StatusInputs(
        service=p.rs,
        goal=p.goal,
        active=Serving(active, snap(active), _rejected(p, active)),
        pending=Serving(pending, snap(pending), _rejected(p, pending)),
        state=plan.clusters.state,
        endpoints=_count_endpoints(p, active, plan),
        now=format_time(p.now),
        verdict=plan.verdict,
        upgrade_cause=_cause(obs, plan, active, pending),
    )
    status = compute_status(inputs)
    for reason, message in new_warnings(p.obj.get("status"), status):
        p.event("Warning", reason, message)
    await _write_status(p.rt, p.key, p.obj, status)
    return status


async def _write_status(rt: Runtime, key: Key, obj: dict[str, Any], status: dict[str, Any]) -> None:
    if not differs(obj.get("status"), status):
        return
    body = {**status, "lastUpdateTime": format_time(now_utc())}
    # The whole status is replaced: applications and clusters that went away
    # must disappear, which a merge patch would not do.
    patch = [{"op": "add", "path": "/status", "value": body}]
    await rt.kube.patch(RAYSERVICES, key[0], key[1], patch, subresource="status", patch_type="json")


def _deadlines(obs: Observed, plan: Plan) -> Iterable[float]:
    now = obs.now
    for _, when in plan.clusters.schedule:
        yield (when - now).total_seconds()
    for cluster in obs.roles.stale:
        if cluster.delete_after is not None:
            yield (cluster.delete_after - now).total_seconds()
    pending, spec = obs.roles.pending, obs.service.spec
    if pending is not None and spec.upgrade_strategy.timeout_seconds > 0:
        due = pending.created + timedelta(seconds=spec.upgrade_strategy.timeout_seconds)
        yield (due - now).total_seconds()
    active = obs.roles.active
    if active is not None:
        wait = health.seconds_to_threshold(active.health, spec, now)
        if wait is not None:
            yield wait


def next_look(p: Pass, obs: Observed, plan: Plan, status: dict[str, Any]) -> float:
    """Seconds until the next pass: fast while something changes, backing off when steady."""
    conds = {c["type"]: c for c in status.get("conditions") or []}
    active = obs.roles.active
    serve_ok = (conds.get("ServeConfigApplied") or {}).get("status") == "True"
    # Suspended or given up: nothing changes until the spec does (a new event).
    parked = plan.clusters.state in (UpgradeState.SUSPENDED, UpgradeState.INITIALIZING_TIMED_OUT)
    busy = not parked and (
        plan.clusters.state
        in (UpgradeState.INITIALIZING, UpgradeState.IN_PROGRESS, UpgradeState.RECREATING)
        or bool(plan.submit or plan.clusters.create or plan.clusters.switch or plan.clusters.delete)
        or (not serve_ok and p.goal.valid)
        or (active is not None and not obs.serve.get(active.name, UNREACHABLE).reachable)
    )
    if busy:
        p.srt.steady[p.key] = 0
        delay = BUSY_SECONDS
    else:
        count = p.srt.steady.get(p.key, 0) + 1
        p.srt.steady[p.key] = count
        delay = min(STEADY_MAX_SECONDS, STEADY_FIRST_SECONDS * 2 ** (count - 1))
    soonest = [d for d in _deadlines(obs, plan) if d > 0]
    return max(0.5, min([delay, *soonest]))
