"""Reconcile one RayCluster: an ordered list of small ``ensure`` steps.

Each step is idempotent; the first error stops the pass and the work queue
retries with back-off. Status is computed by a pure function and written
only when it changed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from raykube import metrics
from raykube.adapters.kube import PODS, RAYCLUSTERS, ApiError
from raykube.builders import hashing, labels, owners
from raykube.builders.autoscaler import autoscaler_rbac
from raykube.builders.env import redis_fault_tolerant
from raykube.builders.pods import (
    BuildContext,
    ReplicaPlace,
    build_head_pod,
    build_worker_pod,
    random_suffix,
)
from raykube.builders.services import (
    build_head_service,
    build_headless_service,
    keeping_cluster_ip,
    needs_headless_service,
)
from raykube.decisions import cluster_status, pods, status_patch
from raykube.decisions.scaling import (
    RECREATE,
    ClusterIntent,
    Deletion,
    PodPlan,
    intent_of,
    plan_pods,
    still_building,
    workers_to_create,
)
from raykube.handlers.auth_secret import ensure_auth_secret
from raykube.handlers.children import ensure_owned
from raykube.handlers.gcs_storage import ensure_gcs_storage
from raykube.handlers.kit import Controller
from raykube.handlers.network import ensure_network
from raykube.handlers.redis_cleanup import ensure_finalizer, finish_deletion, has_finalizer
from raykube.handlers.runtime import Runtime
from raykube.handlers.workqueue import Key, WorkQueue
from raykube.models.base import validation_message
from raykube.models.clusterspec import ManagedBy
from raykube.models.raycluster import RayCluster, parse_raycluster
from raykube.timefmt import now_iso

log = logging.getLogger(__name__)
KIND = "RayCluster"
#: While pods are starting, look again this often even without events.
PROGRESS_RECHECK_SECONDS = 10.0
#: Worker pods created concurrently per reconcile step.
CREATE_BATCH = 8
#: Pods created by one pass. replicas may say two billion: each pass creates a
#: bounded share, building each batch only as it is sent, and asks to run again
#: soon for the rest (its own creations also bring it back through the watch).
MAX_CREATES_PER_PASS = 200
#: How soon a pass that stopped at MAX_CREATES_PER_PASS runs again.
MORE_PODS_RECHECK_SECONDS = 1.0
HEAD_SERVICE_FAILED = "FailedCreateHeadService"
#: Status changes written at once; the rest (pod counts, head IP, HeadPodReady
#: while pods start) at most once per STATUS_PACE_SECONDS, so a starting
#: cluster costs a status write or two instead of one per pod transition.
STATUS_URGENT = ("state", "observedGeneration", "reason", "desiredWorkerReplicas")
STATUS_URGENT_CONDITIONS = (cluster_status.REPLICA_FAILURE, cluster_status.SUSPENDED)
STATUS_PACE_SECONDS = 1.0
#: A rejected pod template is retried slowly: only a spec change can fix it.
FAILURE_RECHECK_SECONDS = 60.0


#: The states the gauge reports, zero included.
STATES = ("ready", "provisioning", "suspending", "suspended", "failed")


def controller(rt: Runtime, queue: WorkQueue) -> Controller:
    ctl = Controller(KIND, rt, queue, on_summary=_gauge)
    ctl.on_forget.append(rt.expectations.forget)
    return ctl


def _gauge(counts: Counter[tuple[str, str]]) -> None:
    for state in STATES:
        metrics.RAYCLUSTERS_BY_STATE.labels(state).set(counts[("state", state)])


def build_context(rt: Runtime, obj: dict[str, Any]) -> BuildContext:
    owned_by_service = any(
        ref.get("kind") == "RayService" for ref in obj["metadata"].get("ownerReferences", [])
    )
    return BuildContext(
        created_by=rt.settings.operator_name,
        cluster_domain=rt.settings.cluster_domain,
        autoscaler_cluster_role=rt.settings.autoscaler_cluster_role,
        serve_readiness=owned_by_service,
    )


async def reconcile(ctl: Controller, key: Key) -> float | None:
    return await ctl.run(key, lambda k: _reconcile(ctl, k))


async def _reconcile(ctl: Controller, key: Key) -> float | None:
    rt = ctl.rt
    await rt.indexed.wait()
    # The watch cache is complete once indexed: a cluster missing from it is
    # gone, and the pod and Service events of a deleted cluster must not each
    # cost a GET answered 404.
    obj = (
        rt.cached_cluster(key)
        if rt.cluster_objects is not None
        else await rt.kube.get(RAYCLUSTERS, *key)
    )
    if obj is not None and obj["metadata"].get("deletionTimestamp") and has_finalizer(obj):
        ctl.seen(key)
        return await finish_deletion(ctl, key, obj, build_context(rt, obj))
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        ctl.forget(key)
        return None
    ctl.seen(key)
    obj = ctl.current(key, obj)
    try:
        cluster = parse_raycluster(obj)
    except ValidationError as err:
        await _report_invalid(ctl, key, obj, validation_message(err))
        return None
    if cluster.spec.managed_by == ManagedBy.MULTIKUEUE:
        return None  # Kueue's MultiKueue runs it on a worker cluster; nothing to do here
    # Backend rocksdb keeps nothing in Redis: its PVC goes with the cluster.
    if await ensure_finalizer(ctl, key, obj, redis_fault_tolerant(cluster)):
        return None  # the watch brings the changed object back
    ctx = build_context(rt, obj)
    if cluster.spec.enable_in_tree_autoscaling:
        await ensure_autoscaler_rbac(ctl, key, obj, cluster, ctx)
    await ensure_network(ctl, key, obj, cluster, ctx)
    head_service, failure = await ensure_head_service(ctl, key, obj, cluster, ctx)
    # crash_point: where a test may stop the process (handlers/crashpoints.py).
    rt.crash_point("raycluster.after-head-service")
    if failure is None:
        failure = await ensure_auth_secret(ctl, key, obj, cluster)
    if failure is None:
        failure = await ensure_gcs_storage(ctl, key, obj, cluster)
    if failure is None and needs_headless_service(cluster):
        await ensure_headless_service(ctl, key, obj, cluster)
    # The intent hashes the pod templates: worked out once per pass.
    intent = intent_of(cluster)
    if failure is None:
        failure = await ensure_pods(ctl, key, obj, cluster, ctx, intent)
    rt.crash_point("raycluster.after-pods")
    observed = cluster_status.Observed(
        rt.pods_of(key, obj["metadata"].get("uid", "")), head_service, failure
    )
    status = cluster_status.compute_status(cluster, intent, observed, now_iso())
    await _write_status(ctl, key, obj, status, failure)
    rt.crash_point("raycluster.after-status")
    if failure is not None:
        return FAILURE_RECHECK_SECONDS
    settled = status.get("state") in ("ready", "suspended")
    return None if settled else PROGRESS_RECHECK_SECONDS


async def _write_status(
    ctl: Controller,
    key: Key,
    obj: dict[str, Any],
    status: dict[str, Any],
    failure: tuple[str, str] | None,
) -> None:
    stored = obj.get("status")
    record = ctl.seen(key)
    changed = status_patch.differs(stored, status)
    hold = status_patch.pace(
        stored,
        status,
        STATUS_URGENT,
        STATUS_URGENT_CONDITIONS,
        record.status_written,
        time.monotonic(),
        STATUS_PACE_SECONDS,
    )
    if changed and hold > 0:
        ctl.queue.add_after(key, hold)
        return
    if not await ctl.write_status(RAYCLUSTERS, key, obj, status):
        return
    if changed:
        record.status_written = time.monotonic()
    state = status.get("state") or ("failed" if failure else "provisioning")
    if state != (stored or {}).get("state"):
        log.info("RayCluster %s/%s status: %s", key[0], key[1], state)
    ctl.summarise(key, [("state", state)])


async def _report_invalid(ctl: Controller, key: Key, obj: dict[str, Any], message: str) -> None:
    generation = obj["metadata"].get("generation")
    status = cluster_status.invalid_status(obj.get("status"), message, generation, now_iso())
    await ctl.report_invalid(RAYCLUSTERS, key, obj, cluster_status.INVALID_SPEC, message, status)
    ctl.summarise(key, [("state", "failed")])


async def ensure_autoscaler_rbac(
    ctl: Controller, key: Key, obj: dict[str, Any], cluster: RayCluster, ctx: BuildContext
) -> None:
    items = autoscaler_rbac(cluster, ctx.created_by, ctx.autoscaler_cluster_role)
    fingerprint = hashing.digest(items)
    record = ctl.seen(key)
    if record.applied.get("rbac") == fingerprint:
        return
    # Not watched, so each is read once per process and content.
    written = [await ensure_owned(ctl, key, obj, item) for item in items]
    if all(w is not None for w in written):
        record.applied["rbac"] = fingerprint


async def ensure_head_service(
    ctl: Controller, key: Key, obj: dict[str, Any], cluster: RayCluster, ctx: BuildContext
) -> tuple[Mapping[str, Any] | None, tuple[str, str] | None]:
    """The head Service as written, or why there is none: pods wait for it, as
    workers would join whatever another Service of that name selects."""
    built = build_head_service(cluster, ctx)
    live = ctl.rt.head_service_of(key, built["metadata"]["name"])
    desired = hashing.stamped(keeping_cluster_ip(built, live))
    if (
        live is not None
        and owners.owned_by(live, obj["metadata"].get("uid"))
        and hashing.unchanged(desired, live)
    ):
        return live, None
    what = f"Service {key[0]}/{desired['metadata']['name']}"
    try:
        written = await ensure_owned(ctl, key, obj, desired, live)
    except ApiError as err:
        if not err.invalid:
            raise
        # headService merges user fields the API server may refuse (a bad clusterIP).
        failure = (HEAD_SERVICE_FAILED, f"{what} rejected by the API server: {err.message}")
        ctl.warn_once(key, obj, *failure)
        return None, failure
    if written is None:
        message = (
            f"{what} exists and is not controlled by this RayCluster; no pod is created "
            "until it is removed"
        )
        return None, (HEAD_SERVICE_FAILED, message)
    return written, None


async def ensure_headless_service(
    ctl: Controller, key: Key, obj: dict[str, Any], cluster: RayCluster
) -> None:
    """The Service the hosts of a slice resolve each other by; pods do not
    wait for it (a name someone else holds gets a Warning, as any child's)."""
    desired = hashing.stamped(build_headless_service(cluster))
    live = ctl.rt.head_service_of(key, desired["metadata"]["name"])
    if live is not None and hashing.unchanged(desired, live):
        return
    await ensure_owned(ctl, key, obj, desired, live)


def _templates(cluster: RayCluster) -> list[Any]:
    """What a dry-run judges: templates and start params, not replica counts."""
    head = cluster.spec.head_group_spec
    return [head.template, head.ray_start_params] + [
        [g.group_name, g.template, g.ray_start_params] for g in cluster.spec.worker_group_specs
    ]


async def _dry_run_templates(
    rt: Runtime, cluster: RayCluster, ctx: BuildContext
) -> tuple[str, str] | None:
    """Let the API server judge every pod template before anything is created."""
    # A fixed suffix keeps the server's message identical from one pass to the next.
    candidates = [("FailedCreateHeadPod", build_head_pod(cluster, ctx, suffix="dryrun"))]
    candidates += [
        ("FailedCreateWorkerPod", build_worker_pod(cluster, g, ctx, suffix="dryrun"))
        for g in cluster.spec.worker_group_specs
    ]
    for reason, pod in candidates:
        try:
            await rt.kube.create_object(pod, dry_run=True)
        except ApiError as err:
            if err.invalid:
                return (
                    reason,
                    f"pod {pod['metadata']['name']} rejected by the API server: {err.message}",
                )
            # A pod of that name exists: the server judged the template valid
            # before it looked for the name.
            if not err.conflict:
                raise
    return None


async def ensure_pods(
    ctl: Controller,
    key: Key,
    obj: dict[str, Any],
    cluster: RayCluster,
    ctx: BuildContext,
    intent: ClusterIntent,
) -> tuple[str, str] | None:
    """Create and delete pods per the plan; return a creation failure, if any."""
    rt = ctl.rt
    record = ctl.seen(key)
    observed = rt.pods_of(key, obj["metadata"].get("uid", ""))
    plan = plan_pods(intent, observed, record.building)
    record.building = frozenset(u.name for u in plan.unfinished)
    if plan.empty:
        return None
    if plan.create_head or plan.create_workers:
        # Templates are judged once per content and namespace (admission may
        # differ by namespace), across clusters: a hundred clusters of one
        # template cost one pair of dry-runs, not a hundred.
        fingerprint = hashing.digest([key[0], _templates(cluster)])
        failure = await rt.judge(fingerprint, lambda: _dry_run_templates(rt, cluster, ctx))
        if failure is not None:
            ctl.warn_once(key, obj, *failure)
            return failure
    await _delete_pods(ctl, key, obj, plan)
    rt.crash_point("raycluster.after-pods-deleted")
    return await _create_pods(ctl, key, obj, cluster, ctx, plan, intent)


#: The event reason of a pod deleted because upgradeStrategy Recreate replaces it.
DELETED_FOR_RECREATE = "DeletedPodForRecreate"


def _deletion_event(namespace: str, victim: Deletion) -> tuple[str, str]:
    message = f"Deleted pod {namespace}/{victim.name} ({victim.reason}"
    if victim.reason == RECREATE:
        return DELETED_FOR_RECREATE, message + ": the pod templates changed)"
    if victim.replica:
        message += f"; with the rest of slice {victim.replica}"
    reason = "DeletedHeadPod" if victim.node_type == "head" else "DeletedWorkerPod"
    return reason, message + ")"


async def _delete_pods(ctl: Controller, key: Key, obj: dict[str, Any], plan: PodPlan) -> None:
    rt = ctl.rt
    for victim in plan.delete:
        if await rt.kube.delete(PODS, key[0], victim.name, uid=victim.uid):
            rt.expectations.deleted(key, victim.uid)
            metrics.PODS_DELETED.labels(victim.node_type, victim.reason).inc()
            ctl.event(obj, "Normal", *_deletion_event(key[0], victim))


async def _create(
    ctl: Controller, key: Key, obj: dict[str, Any], pod: dict[str, Any], node_type: str
) -> tuple[str, str] | None:
    ok, fail = (
        ("CreatedHeadPod", "FailedCreateHeadPod")
        if node_type == "head"
        else ("CreatedWorkerPod", "FailedCreateWorkerPod")
    )
    try:
        created = await ctl.rt.kube.create_object(pod)
    except ApiError as err:
        if err.invalid or err.forbidden:
            message = f"Failed to create pod {key[0]}/{pod['metadata']['name']}: {err.message}"
            ctl.warn_once(key, obj, fail, message)
            return fail, message
        raise
    ctl.rt.expectations.created(key, pods.view(created))
    metrics.PODS_CREATED.labels(node_type).inc()
    ctl.event(obj, "Normal", ok, f"Created pod {key[0]}/{pod['metadata']['name']}")
    return None


async def _create_pods(
    ctl: Controller,
    key: Key,
    obj: dict[str, Any],
    cluster: RayCluster,
    ctx: BuildContext,
    plan: PodPlan,
    intent: ClusterIntent,
) -> tuple[str, str] | None:
    budget = MAX_CREATES_PER_PASS
    stamp = intent.template_hash
    if plan.create_head:
        head = build_head_pod(cluster, ctx, template_hash=stamp)
        failure = await _create(ctl, key, obj, head, "head")
        if failure:
            return failure
        ctl.rt.crash_point("raycluster.after-head-pod")
        budget -= 1
    groups = {g.group_name: g for g in cluster.spec.worker_group_specs}
    pending = workers_to_create(plan, _slice_name)
    todo = list(itertools.islice(pending, max(0, budget)))
    following = next(pending, None)
    if following is not None:
        ctl.queue.add_after(key, MORE_PODS_RECHECK_SECONDS)
    ctl.seen(key).building = still_building(plan, todo, following)
    # Worker pods are independent: create a bounded batch at a time, built when sent.
    for first in range(0, len(todo), CREATE_BATCH):
        batch = [
            build_worker_pod(
                cluster,
                groups[w.group],
                ctx,
                place=ReplicaPlace(w.replica_index, w.replica_name, w.host_index),
                template_hash=stamp,
            )
            for w in todo[first : first + CREATE_BATCH]
        ]
        results = await asyncio.gather(*(_create(ctl, key, obj, p, "worker") for p in batch))
        failure = next((r for r in results if r), None)
        if failure:
            return failure
        ctl.rt.crash_point("raycluster.after-worker-batch")
    return None


def _slice_name(group: str) -> str:
    return labels.replica_name(group, random_suffix())
