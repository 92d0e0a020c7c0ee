"""Reconcile one RayCluster: an ordered list of small ``ensure`` steps.

Each step is idempotent; the first error stops the pass and the work queue
retries with back-off. Status is computed by a pure function and written
only when it changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from raykube import metrics
from raykube.adapters.kube import PODS, RAYCLUSTERS, ApiError
from raykube.builders import hashing
from raykube.builders.autoscaler import autoscaler_rbac
from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.builders.services import build_head_service
from raykube.decisions import cluster_status, pods
from raykube.decisions.scaling import PodPlan, intent_of, plan_pods
from raykube.handlers.runtime import Runtime
from raykube.handlers.workqueue import Key
from raykube.models.raycluster import RayCluster, parse_raycluster

log = logging.getLogger(__name__)
KIND = "RayCluster"
#: While pods are starting, look again this often even without events.
PROGRESS_RECHECK_SECONDS = 10.0
#: Worker pods created concurrently per reconcile step.
CREATE_BATCH = 8
#: A rejected pod template is retried slowly: only a spec change can fix it.
FAILURE_RECHECK_SECONDS = 60.0


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_context(rt: Runtime, obj: dict[str, Any]) -> BuildContext:
    owned_by_service = any(
        ref.get("kind") == "RayService" for ref in obj["metadata"].get("ownerReferences", [])
    )
    return BuildContext(
        created_by=rt.settings.operator_name,
        cluster_domain=rt.settings.cluster_domain,
        serve_readiness=owned_by_service,
    )


async def warn_once(rt: Runtime, key: Key, obj: dict[str, Any], reason: str, message: str) -> None:
    """One Warning event per object, reason and spec generation: no event storms."""
    marker = (key, reason, str(obj["metadata"].get("generation", "")))
    if marker in rt.warned:
        return
    rt.warned.add(marker)
    rt.emit(obj, "Warning", reason, message)


async def reconcile(rt: Runtime, key: Key) -> float | None:
    started = time.monotonic()
    metrics.RECONCILES.labels(KIND).inc()
    try:
        return await _reconcile(rt, key)
    except Exception as exc:
        metrics.RECONCILE_ERRORS.labels(KIND, type(exc).__name__).inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(KIND).observe(time.monotonic() - started)


async def _reconcile(rt: Runtime, key: Key) -> float | None:
    await rt.indexed.wait()
    obj = rt.cached_cluster(key) or await rt.kube.get(RAYCLUSTERS, *key)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        record_state(rt, key, None)
        rt.expectations.forget(key)
        rt.clusters.forget(key)
        return None
    try:
        cluster = parse_raycluster(obj)
    except ValidationError as err:
        await _report_invalid(rt, key, obj, err)
        return None
    ctx = build_context(rt, obj)
    if cluster.spec.enable_in_tree_autoscaling:
        await ensure_autoscaler_rbac(rt, key, cluster)
    head_service = await ensure_head_service(rt, key, cluster, ctx)
    failure = await ensure_pods(rt, key, obj, cluster, ctx)
    observed = cluster_status.Observed(rt.pods_of(key), head_service, failure)
    status = cluster_status.compute_status(cluster, intent_of(cluster), observed, now_iso())
    await write_status(rt, key, obj, status)
    record_state(rt, key, status.get("state") or ("failed" if failure else "provisioning"))
    if failure is not None:
        return FAILURE_RECHECK_SECONDS
    settled = status.get("state") in ("ready", "suspended")
    return None if settled else PROGRESS_RECHECK_SECONDS


async def _report_invalid(rt: Runtime, key: Key, obj: dict[str, Any], err: ValidationError) -> None:
    message = "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5]
    )
    await warn_once(rt, key, obj, "InvalidRayClusterSpec", message)
    status = dict(obj.get("status") or {})
    status["state"] = "failed"
    status["reason"] = message[:1024]
    await write_status(rt, key, obj, status)


async def ensure_autoscaler_rbac(rt: Runtime, key: Key, cluster: RayCluster) -> None:
    items = autoscaler_rbac(cluster, rt.settings.operator_name)
    fingerprint = hashing.digest(items)
    if rt.applied.get((key, "rbac")) == fingerprint:
        return
    for item in items:
        await rt.kube.apply(item)
    rt.applied[(key, "rbac")] = fingerprint


async def ensure_head_service(
    rt: Runtime, key: Key, cluster: RayCluster, ctx: BuildContext
) -> Mapping[str, Any]:
    desired = hashing.stamped(build_head_service(cluster, ctx))
    live = rt.head_service_of(key, desired["metadata"]["name"])
    if live is not None and hashing.unchanged(desired, live):
        return live
    return await rt.kube.apply(desired)


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
            await rt.kube.apply(pod, dry_run=True)
        except ApiError as err:
            if err.status in (400, 422):
                return (
                    reason,
                    f"pod {pod['metadata']['name']} rejected by the API server: {err.message}",
                )
            raise
    return None


async def ensure_pods(
    rt: Runtime, key: Key, obj: dict[str, Any], cluster: RayCluster, ctx: BuildContext
) -> tuple[str, str] | None:
    """Create and delete pods per the plan; return a creation failure, if any."""
    plan = plan_pods(intent_of(cluster), rt.pods_of(key))
    if plan.empty:
        return None
    if plan.create_head or plan.create_workers:
        # Templates are judged once per content, not before every creation.
        fingerprint = hashing.digest(_templates(cluster))
        if rt.applied.get((key, "dry-run")) != fingerprint:
            failure = await _dry_run_templates(rt, cluster, ctx)
            if failure is not None:
                await warn_once(rt, key, obj, *failure)
                return failure
            rt.applied[(key, "dry-run")] = fingerprint
    await _delete_pods(rt, key, obj, plan)
    return await _create_pods(rt, key, obj, cluster, ctx, plan)


async def _delete_pods(rt: Runtime, key: Key, obj: dict[str, Any], plan: PodPlan) -> None:
    for victim in plan.delete:
        if await rt.kube.delete(PODS, key[0], victim.name, uid=victim.uid):
            rt.expectations.deleted(key, victim.uid)
            metrics.PODS_DELETED.labels(victim.node_type, victim.reason).inc()
            reason = "DeletedHeadPod" if victim.node_type == "head" else "DeletedWorkerPod"
            rt.emit(obj, "Normal", reason, f"Deleted pod {key[0]}/{victim.name} ({victim.reason})")


async def _create(
    rt: Runtime, key: Key, obj: dict[str, Any], pod: dict[str, Any], node_type: str
) -> tuple[str, str] | None:
    ok, fail = (
        ("CreatedHeadPod", "FailedCreateHeadPod")
        if node_type == "head"
        else ("CreatedWorkerPod", "FailedCreateWorkerPod")
    )
    try:
        created = await rt.kube.apply(pod)
    except ApiError as err:
        if err.status in (400, 403, 422):
            message = f"Failed to create pod {key[0]}/{pod['metadata']['name']}: {err.message}"
            await warn_once(rt, key, obj, fail, message)
            return fail, message
        raise
    rt.expectations.created(key, pods.view(created))
    metrics.PODS_CREATED.labels(node_type).inc()
    rt.emit(obj, "Normal", ok, f"Created pod {key[0]}/{pod['metadata']['name']}")
    return None


async def _create_pods(
    rt: Runtime,
    key: Key,
    obj: dict[str, Any],
    cluster: RayCluster,
    ctx: BuildContext,
    plan: PodPlan,
) -> tuple[str, str] | None:
    if plan.create_head:
        failure = await _create(rt, key, obj, build_head_pod(cluster, ctx), "head")
        if failure:
            return failure
    groups = {g.group_name: g for g in cluster.spec.worker_group_specs}
    # Worker pods are independent: create a bounded batch at a time.
    todo = [
        build_worker_pod(cluster, groups[name], ctx)
        for name, count in plan.create_workers.items()
        for _ in range(count)
    ]
    for first in range(0, len(todo), CREATE_BATCH):
        batch = todo[first : first + CREATE_BATCH]
        results = await asyncio.gather(*(_create(rt, key, obj, p, "worker") for p in batch))
        failure = next((r for r in results if r), None)
        if failure:
            return failure
    return None


async def write_status(rt: Runtime, key: Key, obj: dict[str, Any], status: dict[str, Any]) -> None:
    if not cluster_status.differs(obj.get("status"), status):
        return
    status = {**status, "lastUpdateTime": now_iso()}
    # Optimistic concurrency: a status computed from a stale object is dropped
    # and recomputed on the next pass, never written over a newer one.
    patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": status}
    try:
        await rt.kube.patch(RAYCLUSTERS, key[0], key[1], patch, subresource="status")
    except ApiError as err:
        if err.conflict:
            rt.clusters.add(key)
            return
        raise
    state = status.get("state") or "provisioning"
    log.info("RayCluster %s/%s status: %s", key[0], key[1], state)


def record_state(rt: Runtime, key: Key, state: str | None) -> None:
    """Keep the RayClusters-by-state gauge in step with what we wrote."""
    if state is None:
        rt.cluster_states.pop(key, None)
    else:
        rt.cluster_states[key] = state
    counts: dict[str, int] = {}
    for value in rt.cluster_states.values():
        counts[value] = counts.get(value, 0) + 1
    for name in ("ready", "provisioning", "suspending", "suspended", "failed"):
        metrics.RAYCLUSTERS_BY_STATE.labels(name).set(counts.get(name, 0))
