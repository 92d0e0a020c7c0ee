"""Redis cleanup of a fault-tolerant RayCluster: its finalizer and its deletion.

A RayCluster with GCS fault tolerance carries ``ray.io/gcs-ft-redis-cleanup-
finalizer`` (KubeRay's); no other RayCluster gets a finalizer. Once it is
deleted, each pass takes the next step decided by ``decisions.redis_cleanup``
(pods, then the cleanup Job, then the finalizer), posting an event for each.
The Job is not watched: it is read (one GET) on each pass while it runs, every
few seconds and never past the deletion timeout; its pod's events (it carries
``ray.io/cluster``) also bring the cluster back.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from raykube import metrics
from raykube.adapters.kube import JOBS, PODS, RAYCLUSTERS, ApiError
from raykube.builders import labels
from raykube.builders.env import redis_fault_tolerant, storage_namespace
from raykube.builders.pods import BuildContext
from raykube.builders.redis_cleanup import build_redis_cleanup_job
from raykube.decisions import redis_cleanup
from raykube.decisions.redis_cleanup import Action, Step
from raykube.handlers.kit import Controller
from raykube.handlers.workqueue import Key
from raykube.models.base import validation_message
from raykube.models.raycluster import RayCluster, parse_raycluster
from raykube.timefmt import now_utc, parse_time

log = logging.getLogger(__name__)
FINALIZER = labels.REDIS_CLEANUP_FINALIZER
#: After a conflicting finalizer write or Job creation, look again this soon.
CONFLICT_RECHECK_SECONDS = 1.0


def has_finalizer(obj: dict[str, Any]) -> bool:
    return FINALIZER in (obj["metadata"].get("finalizers") or [])


async def _set_finalizer(ctl: Controller, key: Key, obj: dict[str, Any], present: bool) -> bool:
    """Add or remove our finalizer, guarded by the object's resourceVersion (a
    merge patch replaces the whole list). False when the object moved on (the
    pass is queued again) or is gone."""
    current = list(obj["metadata"].get("finalizers") or [])
    wanted = [f for f in current if f != FINALIZER] + ([FINALIZER] if present else [])
    patch = {
        "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"], "finalizers": wanted}
    }
    try:
        await ctl.rt.kube.patch(RAYCLUSTERS, key[0], key[1], patch)
    except ApiError as err:
        if err.conflict:
            ctl.queue.add_after(key, CONFLICT_RECHECK_SECONDS)
            return False
        if err.not_found:
            return False
        raise
    return True


async def ensure_finalizer(
    ctl: Controller, key: Key, obj: dict[str, Any], fault_tolerant: bool
) -> bool:
    """The finalizer on a fault-tolerant cluster, and on no other. True when the
    object was changed: the pass ends there, the watch brings the new object."""
    if has_finalizer(obj) == fault_tolerant:
        return False
    if not await _set_finalizer(ctl, key, obj, fault_tolerant):
        return True
    if fault_tolerant:
        message = (
            f"Added the finalizer {FINALIZER}: when this RayCluster is deleted, its keys "
            "are deleted from Redis before it goes"
        )
        ctl.event(obj, "Normal", "AddedRedisCleanupFinalizer", message)
    return True


async def finish_deletion(
    ctl: Controller, key: Key, obj: dict[str, Any], ctx: BuildContext
) -> float | None:
    """One step of a deleted fault-tolerant cluster's Redis cleanup."""
    rt = ctl.rt
    meta = obj["metadata"]
    try:
        cluster = parse_raycluster(obj)
    except ValidationError as err:
        why = f"its spec is invalid ({validation_message(err)})"
        return await _release(ctl, key, obj, "Warning", "RedisCleanupSkipped", why)
    if not redis_fault_tolerant(cluster):
        why = "GCS state is no longer kept in Redis: there is nothing to clean up there"
        return await _release(ctl, key, obj, "Normal", "RedisCleanupSkipped", why)
    job_name = labels.redis_cleanup_job_name(key[1])
    pods = rt.pods_of(key, meta.get("uid", ""))
    # The Job is read only once it can matter: no pod left alive, no head left.
    waiting = any(not p.terminating or p.node_type == "head" for p in pods)
    job = None if waiting else await rt.kube.get(JOBS, key[0], job_name)
    step = redis_cleanup.next_step(
        pods=pods,
        job=job,
        cluster_uid=meta.get("uid", ""),
        deleted_at=parse_time(meta.get("deletionTimestamp")),
        timeout_s=redis_cleanup.timeout_seconds(cluster.metadata.annotations),
        now=now_utc(),
    )
    return await _take(ctl, key, obj, cluster, ctx, step, job_name)


async def _take(
    ctl: Controller,
    key: Key,
    obj: dict[str, Any],
    cluster: RayCluster,
    ctx: BuildContext,
    step: Step,
    job_name: str,
) -> float | None:
    what = f"Job {key[0]}/{job_name}"
    storage = storage_namespace(cluster)
    if step.action == Action.DELETE_PODS:
        await _delete_pods(ctl, key, obj, step)
    elif step.action == Action.CREATE_JOB:
        return await _create_job(ctl, key, obj, cluster, ctx, step, what)
    elif step.action == Action.JOB_NOT_OWNED:
        message = (
            f"{what} exists and is not controlled by this RayCluster; the Redis cleanup waits "
            f"for it to be removed, at most until {step.elapsed + (step.recheck or 0):.0f} s "
            "after the deletion"
        )
        ctl.warn_once(key, obj, "RedisCleanupJobNotOwned", message, once_per=what)
    elif step.action == Action.SUCCEEDED:
        why = f"{what} deleted the keys of storage namespace {storage} from Redis"
        return await _release(ctl, key, obj, "Normal", "RedisCleanupSucceeded", why)
    elif step.action == Action.FAILED:
        why = (
            f"{what} failed: the keys of storage namespace {storage} may remain in Redis; "
            "delete them by hand (see the Job's pod log)"
        )
        return await _release(ctl, key, obj, "Warning", "RedisCleanupFailed", why)
    elif step.action == Action.TIMED_OUT:
        why = (
            f"the Redis cleanup did not finish within {step.elapsed:.0f} s of the deletion; "
            f"the keys of storage namespace {storage} may remain in Redis"
        )
        return await _release(ctl, key, obj, "Warning", "ForceDeletedStuckCluster", why)
    return step.recheck


async def _delete_pods(ctl: Controller, key: Key, obj: dict[str, Any], step: Step) -> None:
    rt = ctl.rt
    deleted = 0
    for victim in step.delete:
        if await rt.kube.delete(PODS, key[0], victim.name, uid=victim.uid):
            rt.expectations.deleted(key, victim.uid)
            metrics.PODS_DELETED.labels(victim.node_type, "RedisCleanup").inc()
            deleted += 1
    if deleted:
        message = (
            f"Deleted {deleted} pod(s): the head's GCS must stop writing to Redis before "
            "the cluster's keys are deleted"
        )
        ctl.event(obj, "Normal", "DeletedPodsForRedisCleanup", message)


async def _create_job(
    ctl: Controller,
    key: Key,
    obj: dict[str, Any],
    cluster: RayCluster,
    ctx: BuildContext,
    step: Step,
    what: str,
) -> float | None:
    # Created, never applied: a Job's pod template cannot change, and one of
    # that name that is someone else's is reported by the next pass.
    try:
        await ctl.rt.kube.create_object(build_redis_cleanup_job(cluster, ctx))
    except ApiError as err:
        if err.namespace_terminating:
            why = "its namespace is being deleted, so no cleanup Job can run there"
            return await _release(ctl, key, obj, "Warning", "RedisCleanupSkipped", why)
        if err.conflict:
            return CONFLICT_RECHECK_SECONDS
        if not (err.invalid or err.forbidden):
            raise
        message = f"Failed to create Redis cleanup {what}: {err.message}"
        ctl.warn_once(key, obj, "FailedToCreateRedisCleanupJob", message, once_per=message)
        return step.recheck
    ctl.event(obj, "Normal", "CreatedRedisCleanupJob", f"Created Redis cleanup {what}")
    return step.recheck


async def _release(
    ctl: Controller, key: Key, obj: dict[str, Any], event_type: str, reason: str, why: str
) -> float | None:
    """Remove the finalizer; the API server then deletes the RayCluster."""
    if await _set_finalizer(ctl, key, obj, present=False):
        log.info("RayCluster %s/%s: removed %s: %s", key[0], key[1], FINALIZER, why)
        ctl.event(obj, event_type, reason, f"Removed the finalizer {FINALIZER}: {why}")
    return None
