"""Reconcile one RayService: observe, decide (pure), then small ``ensure`` steps.

The order matters and each step is idempotent:

1. observe (``rayservice_observe``): the RayService, the clusters it owns,
   where its serve Service sends traffic, and the Serve state of the active
   and pending clusters' heads (their dashboards);
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

import base64
import json
import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from raykube import metrics
from raykube.adapters.dashboard import DashboardClient, DashboardError
from raykube.adapters.kube import (
    PODS,
    RAYCLUSTERS,
    RAYSERVICES,
    SERVICES,
    ApiError,
    Resource,
)
from raykube.builders import hashing, labels, owners
from raykube.builders.pods import random_suffix
from raykube.builders.rayservice import build_cluster, build_head_service, build_serve_service
from raykube.decisions import rayservice as decisions
from raykube.decisions.conditions import Cond, merge
from raykube.decisions.rayservice import Observed, Plan, decide, initializing_timeout
from raykube.decisions.rayservice_cadence import next_look
from raykube.decisions.rayservice_config import ServeGoal, parse_serve_config
from raykube.decisions.rayservice_rollback import window as rollback_window
from raykube.decisions.rayservice_status import (
    Serving,
    StatusInputs,
    compute_status,
    new_warnings,
)
from raykube.decisions.rayservice_upgrade import CreateReason, DeleteReason, UpgradeState
from raykube.decisions.rayservice_view import (
    UNREACHABLE,
    ClusterView,
    ServeSnapshot,
    cluster_view,
    with_notes,
)
from raykube.handlers.children import ensure_owned
from raykube.handlers.kit import Controller
from raykube.handlers.rayservice_gateway import ensure_gateway
from raykube.handlers.rayservice_observe import (
    Pass,
    ServiceController,
    forget_clusters,
    head_address,
    observe,
    token,
)
from raykube.handlers.runtime import IndexLike, Runtime
from raykube.handlers.workqueue import Key, WorkQueue
from raykube.models.base import validation_message
from raykube.models.clusterspec import ManagedBy
from raykube.models.rayservice import parse_rayservice
from raykube.text import safe
from raykube.timefmt import format_time, now_utc

log = logging.getLogger(__name__)
KIND = "RayService"
INVALID_SPEC = "InvalidRayServiceSpec"
#: A head's error in a log line: enough to say what went wrong, never a whole page.
LOG_MESSAGE_LIMIT = 2000
#: The conditions the by-condition gauge counts.
GAUGED = ("Ready", "UpgradeInProgress", "ServeConfigApplied", "ServingClusterHealthy")


def controller(
    rt: Runtime,
    queue: WorkQueue,
    dashboard: DashboardClient,
    *,
    clusters: IndexLike,
    objects: IndexLike,
    services: IndexLike,
) -> ServiceController:
    ctl = Controller(KIND, rt, queue, on_summary=_gauge)
    return ServiceController(ctl, dashboard, clusters, objects, services)


def _gauge(counts: Counter[tuple[str, str]]) -> None:
    for condition in GAUGED:
        for status in ("True", "False"):
            value = counts[(condition, status)]
            metrics.RAYSERVICES_BY_CONDITION.labels(condition, status).set(value)


async def reconcile(sc: ServiceController, key: Key) -> float | None:
    return await sc.ctl.run(key, lambda k: _reconcile(sc, k))


async def _reconcile(sc: ServiceController, key: Key) -> float | None:
    rt, ctl = sc.rt, sc.ctl
    await rt.indexed.wait()
    # Complete once indexed: missing from the cache is gone (no GET for a 404).
    obj = sc.cached(key)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        ctl.forget(key)  # owned clusters and Services go with it (owner references)
        return None
    record = ctl.seen(key)
    # A pass right after a promotion must not read the old roles from a cache
    # that has not delivered the status write yet, and promote (and reschedule
    # the old cluster's deletion) again.
    obj = ctl.current(key, obj)
    try:
        rs = parse_rayservice(obj)
    except ValidationError as err:
        await _report_invalid(ctl, key, obj, validation_message(err))
        return None
    if rs.spec.managed_by == ManagedBy.MULTIKUEUE:
        return None
    p = Pass(sc, key, obj, rs, parse_serve_config(rs.spec.serve_config_v2), now_utc(), record)
    for problem in (initializing_timeout(rs)[1], rollback_window(rs)[1]):
        if problem:
            ctl.warn_once(key, obj, "InvalidAnnotation", problem, once_per=problem)
    obs = await observe(p)
    p.rt.crash_point("rayservice.after-observe")
    plan = decide(obs)
    await act(p, obs, plan)
    status = await ensure_status(p, obs, plan)
    p.rt.crash_point("rayservice.after-status")
    cadence = next_look(obs, plan, status, record.steady)
    record.steady = cadence.steady
    return cadence.delay


async def _report_invalid(ctl: Controller, key: Key, obj: dict[str, Any], message: str) -> None:
    """A spec the CRD let through but the models refuse: Ready=False, a Warning once."""
    status = dict(obj.get("status") or {})
    wanted = [Cond("Ready", False, "ValidationFailed", message)]
    generation = obj["metadata"].get("generation")
    status["conditions"] = merge(
        status.get("conditions"), wanted, generation, format_time(now_utc())
    )
    await ctl.report_invalid(RAYSERVICES, key, obj, INVALID_SPEC, message, status)
    ctl.summarise(key, [("Ready", "False")])


# --- act ------------------------------------------------------------------------------


async def act(p: Pass, obs: Observed, plan: Plan) -> None:
    # crash_point: where a test may stop the process (handlers/crashpoints.py).
    crash = p.rt.crash_point
    await ensure_deletions(p, obs, plan)
    crash("rayservice.after-deletions")
    await ensure_new_cluster(p, obs, plan)
    crash("rayservice.after-new-cluster")
    await ensure_submissions(p, plan)
    crash("rayservice.after-submissions")
    await ensure_resizes(p, plan)
    crash("rayservice.after-resizes")
    await ensure_rollback(p, plan)
    crash("rayservice.after-rollback")
    await ensure_traffic_labels(p, plan)
    crash("rayservice.after-traffic-labels")
    await ensure_gateway(p, obs, plan)
    crash("rayservice.after-gateway")
    await ensure_services(p, obs, plan)
    crash("rayservice.after-services")
    await ensure_deletion_times(p, plan)
    crash("rayservice.after-deletion-times")
    for cluster, notes in plan.notes:
        await _annotate(p, RAYCLUSTERS, cluster.name, dict(notes))
    crash("rayservice.after-cluster-notes")
    await ensure_group_sizes(p, plan)
    crash("rayservice.after-group-sizes")
    await ensure_suspension(p, plan)
    crash("rayservice.after-suspension")
    await ensure_serve_labels(p, plan)
    crash("rayservice.after-serve-labels")
    await ensure_service_notes(p, plan)
    crash("rayservice.after-service-notes")


async def ensure_deletions(p: Pass, obs: Observed, plan: Plan) -> None:
    ns = p.key[0]
    for cluster, why in plan.clusters.delete:
        if await p.rt.kube.delete(RAYCLUSTERS, ns, cluster.name, uid=cluster.uid or None):
            kind = "Warning" if why.disruptive else "Normal"
            message = f"Deleted RayCluster {ns}/{cluster.name}: {why.why}"
            p.event(kind, "DeletedRayCluster", message)
            if obs.roles.pending is not None and cluster.name == obs.roles.pending.name:
                _count_upgrade(_abandoned(why), None)
        forget_clusters(p.record, [cluster.name])


def _abandoned(why: DeleteReason) -> str:
    return "timed_out" if why is DeleteReason.REPLACEMENT_TIMED_OUT else "cancelled"


def _count_upgrade(outcome: str, seconds: float | None) -> None:
    metrics.UPGRADES.labels(outcome).inc()
    if seconds is not None:
        metrics.UPGRADE_SECONDS.observe(seconds)


async def ensure_new_cluster(p: Pass, obs: Observed, plan: Plan) -> None:
    reason = plan.clusters.create
    if reason is None:
        return
    name = labels.rayservice_cluster_name(p.rs.metadata.name, random_suffix())
    # The new cluster of an incremental upgrade grows with its target_capacity.
    small = decisions.incremental(p.rs) and obs.roles.active is not None
    created = await p.rt.kube.create_object(build_cluster(p.rs, name, obs.goal_hash, small))
    p.created = cluster_view(created)
    why = reason.why
    if plan.verdict is not None and reason == CreateReason.UNHEALTHY:
        why += f" ({plan.verdict.message})"
    p.event("Normal", "CreatedRayCluster", f"Created RayCluster {p.key[0]}/{name}: {why}")


async def ensure_submissions(p: Pass, plan: Plan) -> None:
    ns, goal = p.key[0], p.goal
    for cluster, why in plan.submit:
        capacity = plan.capacity.get(cluster.name)
        err = await _put_config(p, cluster, goal, capacity)
        if err is not None:
            if not err.rejected:
                detail = safe(str(err), LOG_MESSAGE_LIMIT)
                log.warning("serve config for %s/%s not submitted: %s", ns, cluster.name, detail)
                continue
            message = f"the head of RayCluster {cluster.name} refused serveConfigV2: {err.message}"
            p.record.rejected[cluster.name] = (goal.hash, message)
            p.event("Warning", "ServeConfigRejected", message)
            continue
        p.rt.crash_point("rayservice.after-submit-put")
        # Nothing the head refused before stands.
        p.record.rejected.pop(cluster.name, None)
        notes = decisions.submitted_notes(goal, p.now)
        if capacity is not None:
            notes[labels.TARGET_CAPACITY] = str(capacity)
        await _annotate(p, RAYCLUSTERS, cluster.name, {**notes})
        apps = ", ".join(goal.app_names) or "no applications"
        message = f"Submitted serveConfigV2 ({apps}) to RayCluster {ns}/{cluster.name} ({why})"
        if capacity is not None:
            message += f" with target_capacity {capacity}"
        p.event("Normal", "SubmittedServeConfig", message)


async def ensure_resizes(p: Pass, plan: Plan) -> None:
    """Send a cluster's new Serve target_capacity with the config it runs."""
    ns = p.key[0]
    for cluster, config in plan.resize:
        capacity = plan.capacity[cluster.name]
        err = await _put_config(p, cluster, config, capacity)
        if err is not None:
            detail = safe(str(err), LOG_MESSAGE_LIMIT)
            log.warning("target_capacity for %s/%s not sent: %s", ns, cluster.name, detail)
            continue
        p.rt.crash_point("rayservice.after-resize-put")
        await _annotate(p, RAYCLUSTERS, cluster.name, {labels.TARGET_CAPACITY: str(capacity)})
        was = 100 if cluster.target_capacity is None else cluster.target_capacity
        message = (
            f"Set Serve target_capacity of RayCluster {ns}/{cluster.name} to {capacity} (was {was})"
        )
        p.event("Normal", "UpdatedTargetCapacity", message)


async def ensure_traffic_labels(p: Pass, plan: Plan) -> None:
    """Label the pods the serve Service selects during an incremental upgrade
    (added before removed), and say when the split moved."""
    name = p.rs.metadata.name
    for pod, wanted in plan.traffic_labels:
        patch = {"metadata": {"labels": {labels.SERVE_TRAFFIC: name if wanted else None}}}
        try:
            await p.rt.kube.patch(PODS, p.key[0], pod.name, patch)
        except ApiError as err:
            if not err.not_found:
                raise
    shift = plan.shift
    if shift is None or not shift.step.traffic_moved(shift.inputs):
        return
    step, sel = shift.step, shift.selection
    back = "" if shift.inputs.forward and not step.retreat else " back"
    if step.retreat:
        back += f" ({step.retreat})"

    def part(share: int, cluster: str) -> str:
        pods = f", {sel.count(cluster)} serve endpoint(s)" if sel is not None else ""
        return f"{share}% to RayCluster {cluster}{pods}"

    message = (
        f"Moved traffic{back}: {part(step.pending.traffic, shift.pending.name)}, "
        f"{part(step.active.traffic, shift.active.name)}"
    )
    p.event("Normal", "TrafficShifted", message)


async def ensure_rollback(p: Pass, plan: Plan) -> None:
    """Send the last good serve config back to the serving cluster, and record
    on it which config failed there (never sent there again)."""
    rollback = plan.rollback
    if rollback is None:
        return
    cluster, ns = rollback.cluster, p.key[0]
    await _annotate(p, RAYCLUSTERS, cluster.name, rollback.intent())
    p.rt.crash_point("rayservice.after-rollback-intent")
    err = await _put_config(p, cluster, rollback.to)
    if err is not None:
        detail = safe(str(err), LOG_MESSAGE_LIMIT)
        log.warning("rollback of %s/%s not submitted: %s", ns, cluster.name, detail)
        return
    p.rt.crash_point("rayservice.after-rollback-put")
    metrics.SERVE_ROLLBACKS.inc()
    await _annotate(p, RAYCLUSTERS, cluster.name, rollback.notes(format_time(p.now)))
    message = (
        f"Submitted the last good serveConfigV2 ({rollback.to.hash}) to RayCluster "
        f"{ns}/{cluster.name} again: serveConfigV2 {rollback.rejected} failed there "
        f"({rollback.cause})"
    )
    p.event("Warning", "RollbackInProgress", message)


async def _put_config(
    p: Pass, cluster: ClusterView, config: ServeGoal, capacity: int | None = None
) -> DashboardError | None:
    """PUT ``config`` to the cluster's head (with Serve's top-level
    ``target_capacity`` when given), counted; the error, if it failed."""
    head = head_address(p, cluster, await token(p, cluster))
    started = time.monotonic()
    error: DashboardError | None = None
    body = dict(config.config)
    if capacity is not None:
        body["target_capacity"] = capacity
    try:
        await p.sc.dashboard.put_applications(head, body)
    except DashboardError as err:
        error = err
    result = "accepted" if error is None else "rejected" if error.rejected else "error"
    metrics.SERVE_SUBMISSIONS.labels(result).inc()
    metrics.SERVE_SUBMIT_SECONDS.observe(time.monotonic() - started)
    if error is None:
        p.record.polls.pop(cluster.name, None)  # ask the head afresh next time
    return error


async def ensure_services(p: Pass, obs: Observed, plan: Plan) -> None:
    if plan.clusters.state == UpgradeState.SUSPENDED:
        await _delete_services(p)
        return
    target = decisions.serving_after(obs, plan)
    if target is None:
        return
    creator = p.rt.settings.operator_name
    wanted = [
        build_head_service(p.rs, target.name, target.head_ports, creator),
        build_serve_service(p.rs, target.name, target.head_ports, creator, plan.shared_serve),
    ]
    for svc in wanted:
        have = p.sc.stable_service(p.key, svc["metadata"]["name"])
        ours = have is not None and owners.owned_by(have, p.rs.metadata.uid)
        if not ours or hashing.stamp_of(have) != hashing.stamp_of(svc):
            try:
                await ensure_owned(p.sc.ctl, p.key, p.obj, svc, have)
            except ApiError as err:
                if not err.invalid:
                    raise
                # serveService merges user fields the API server may refuse.
                what = f"Service {p.key[0]}/{svc['metadata']['name']}"
                message = f"{what} rejected by the API server: {err.message}"
                p.sc.ctl.warn_once(p.key, p.obj, "FailedCreateService", message)
    if plan.clusters.switch:
        before = obs.roles.active
        names = " and ".join(s["metadata"]["name"] for s in wanted)
        was = f" (was {before.name})" if before else ""
        p.event("Normal", "SwitchedTraffic", f"Pointed {names} at RayCluster {target.name}{was}")
        if before is not None:
            _count_upgrade("completed", _since(target.created, p.now))


def _since(then: datetime, now: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


async def _delete_services(p: Pass) -> None:
    """While suspended the stable Services go too: they would select nothing."""
    ns = p.key[0]
    names = [
        labels.rayservice_head_service_name(p.rs.metadata.name),
        labels.serve_service_name(p.rs),
    ]
    # Only ours, and only that incarnation: a Service of the same name that
    # someone else made is never deleted.
    owned = [
        svc
        for name in names
        if (svc := p.sc.stable_service(p.key, name)) is not None
        and owners.owned_by(svc, p.rs.metadata.uid)
    ]
    deleted = [
        svc["name"]
        for svc in owned
        if await p.rt.kube.delete(SERVICES, ns, svc["name"], uid=svc.get("uid") or None)
    ]
    if deleted:
        listed = " and ".join(f"{ns}/{name}" for name in deleted)
        p.event("Normal", "DeletedService", f"Deleted Service {listed}: spec.suspend is true")


async def ensure_deletion_times(p: Pass, plan: Plan) -> None:
    state = plan.clusters.state
    # The plan counts from the start of the pass, but the delay is promised from
    # the switch just written: an observation that waited on a silent dashboard or
    # proxy took seconds of it (CI saw an old cluster deleted 18 s after a 20 s
    # delay's switch).
    late = max(timedelta(0), now_utc() - p.now)
    for cluster, planned in plan.clusters.schedule:
        when = planned + late
        await _annotate(p, RAYCLUSTERS, cluster.name, {labels.DELETE_AFTER: format_time(when)})
        if state == UpgradeState.INITIALIZING_TIMED_OUT:
            why = f"did not serve within {labels.INITIALIZING_TIMEOUT}"
        elif state == UpgradeState.TIMED_OUT:
            why = "did not serve within upgradeStrategy's timeout"
        else:
            why = "no longer serves"
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
        p.record.written.setdefault(cluster.name, {})[labels.APPLIED_SCALING] = value
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
    if plan.replacements is not None:
        notes[labels.REPLACEMENTS] = plan.replacements.to_json()
    legacy = p.rs.metadata.annotations.get(labels.LAST_GOOD_SERVE_CONFIG)
    text = plan.last_good
    if text is None and legacy is not None and not p.record.last_good:
        text = legacy  # written by an older version: moved, not lost
    recorded = bool(p.record.last_good) and not p.record.last_good_taken
    if text is not None:
        recorded = await ensure_last_good(p, text)
    if legacy is not None and recorded:
        # The Secret holds it now; the annotation (readable by anyone who may read
        # the RayService, and kept past the user's edits) goes.
        notes[labels.LAST_GOOD_SERVE_CONFIG] = None
    if notes:
        await _annotate(p, RAYSERVICES, p.rs.metadata.name, notes)


async def ensure_last_good(p: Pass, text: str) -> bool:
    """Record ``text`` as the last good serve config, in the Secret the RayService
    owns; False when it could not be. It is a record for people, not something a
    pass needs: a Secret that cannot be written (someone else's of that name, too
    large, not allowed) is said once and the pass goes on."""
    ns, name = p.key[0], labels.last_good_serve_config_name(p.rs.metadata.name)
    if p.record.last_good_taken:
        why = "a Secret of that name exists and is not owned by this RayService"
    elif text == p.record.last_good:
        return True
    else:
        # Remembered whatever happens below: a config that cannot be recorded is
        # not tried again on every pass.
        p.record.last_good = text
        try:
            await p.rt.kube.apply(_last_good_secret(p, name, text))
            return True
        except ApiError as err:
            if not (err.invalid or err.forbidden):
                p.record.last_good = None  # read again next pass
                raise
            why = str(err)
    message = f"the last good serveConfigV2 is not recorded in Secret {ns}/{name}: {why}"
    p.sc.ctl.warn_once(p.key, p.obj, "LastGoodServeConfigNotRecorded", message, why)
    return False


def _last_good_secret(p: Pass, name: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": p.key[0],
            "labels": labels.rayservice_labels(p.rs.metadata.name),
            "ownerReferences": [owners.of_rayservice(p.rs)],
        },
        "data": {labels.LAST_GOOD_SERVE_CONFIG_KEY: base64.b64encode(text.encode()).decode()},
    }


async def _annotate(p: Pass, res: Resource, name: str, notes: dict[str, str | None]) -> None:
    try:
        await p.rt.kube.patch(res, p.key[0], name, {"metadata": {"annotations": notes}})
    except ApiError as err:
        if not err.not_found:
            raise
        return
    if res is RAYCLUSTERS:
        p.record.written.setdefault(name, {}).update(notes)


# --- status ---------------------------------------------------------------------------


def _rejected(p: Pass, cluster: ClusterView | None) -> str:
    if cluster is None:
        return ""
    hash_, message = p.record.rejected.get(cluster.name, ("", ""))
    return message if hash_ == p.goal.hash else ""


def _as_recorded(p: Pass, cluster: ClusterView | None) -> ClusterView | None:
    written = p.record.written.get(cluster.name) if cluster is not None else None
    return with_notes(cluster, written) if cluster is not None and written else cluster


async def ensure_status(p: Pass, obs: Observed, plan: Plan) -> dict[str, Any]:
    active = decisions.serving_after(obs, plan)
    pending = decisions.pending_after(obs, plan, p.created)
    rollback = plan.rollback
    if active is not None and rollback is not None and rollback.cluster.name == active.name:
        # What this pass wrote on it: the status tells of the rollback at once.
        active = with_notes(active, rollback.notes(format_time(p.now)))

    def snap(cluster: ClusterView | None) -> ServeSnapshot:
        return obs.serve.get(cluster.name, UNREACHABLE) if cluster else UNREACHABLE

    selection = plan.shift.selection if plan.shift is not None else None
    if selection is not None and plan.shared_serve:
        endpoints = sum(len(names) for names in selection.chosen.values())
    else:
        pods = p.rt.pods_of((p.key[0], active.name), active.uid) if active else []
        endpoints = decisions.count_endpoints(active, pods, plan)
    # What this pass recorded on them (target_capacity, traffic) shows at once.
    active, pending = _as_recorded(p, active), _as_recorded(p, pending)
    inputs = StatusInputs(
        service=p.rs,
        goal=p.goal,
        active=Serving(active, snap(active), _rejected(p, active)),
        pending=Serving(pending, snap(pending), _rejected(p, pending)),
        state=plan.clusters.state,
        endpoints=endpoints,
        now=format_time(p.now),
        verdict=plan.verdict,
        upgrade_cause=decisions.upgrade_cause(plan, active, pending),
        incremental=decisions.incremental(p.rs),
    )
    status = compute_status(inputs)
    for reason, message in new_warnings(p.obj.get("status"), status):
        p.event("Warning", reason, message)
    if await p.sc.ctl.write_status(RAYSERVICES, p.key, p.obj, status):
        summary = [(c["type"], c["status"]) for c in status.get("conditions") or []]
        p.sc.ctl.summarise(p.key, summary)
    return status
