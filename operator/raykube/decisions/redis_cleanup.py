"""The next step of a fault-tolerant RayCluster's deletion (pure).

A RayCluster with GCS fault tolerance carries the Redis cleanup finalizer.
Once it is deleted: its pods go first (the head's GCS must not write while
its keys are deleted), then the cleanup Job runs, then the finalizer is
removed, whether the Job succeeded or failed (KubeRay's rule: a failed
cleanup is reported and left to the user, never retried). Whatever is still
pending when the deletion timeout has passed, the finalizer is removed too,
so a cluster never hangs in deletion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from raykube.builders import labels, owners
from raykube.decisions.pods import PodView

#: KubeRay's default deletion timeout (seconds), when the RayCluster has no
#: valid ``ray.io/gcs-ft-deletion-timeout`` annotation.
DEFAULT_TIMEOUT_SECONDS = 300
#: While the head pod terminates, look again this often (pod events come too).
HEAD_RECHECK_SECONDS = 10.0
#: While the Job runs, read it this often: Jobs are not watched.
JOB_RECHECK_SECONDS = 5.0


class Action(StrEnum):
    DELETE_PODS = "delete-pods"
    WAIT_FOR_HEAD = "wait-for-head"
    CREATE_JOB = "create-job"
    WAIT_FOR_JOB = "wait-for-job"
    JOB_NOT_OWNED = "job-not-owned"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed-out"


#: The steps after which the finalizer is removed.
FINAL = frozenset({Action.SUCCEEDED, Action.FAILED, Action.TIMED_OUT})


@dataclass(frozen=True)
class Step:
    action: Action
    #: DELETE_PODS: the pods to delete.
    delete: tuple[PodView, ...] = ()
    #: Seconds until the pass should run again (never past the timeout).
    recheck: float | None = None
    #: Seconds since the deletion (for the messages).
    elapsed: float = 0.0


def timeout_seconds(annotations: Mapping[str, str]) -> int:
    """The RayCluster's ``ray.io/gcs-ft-deletion-timeout`` (whole seconds > 0), else 300."""
    text = str(annotations.get(labels.GCS_FT_DELETION_TIMEOUT, "")).strip()
    value = int(text) if text.isdigit() else 0
    return value if value > 0 else DEFAULT_TIMEOUT_SECONDS


def job_outcome(job: Mapping[str, Any]) -> Action | None:
    """SUCCEEDED or FAILED once the Job says so, else None. ``FailureTarget``
    counts as failed: the Job controller sets it as soon as the deadline is
    passed, before it has finished terminating the pod."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return Action.SUCCEEDED
        if cond.get("type") in ("Failed", "FailureTarget"):
            return Action.FAILED
    return None


def next_step(
    *,
    pods: Sequence[PodView],
    job: Mapping[str, Any] | None,
    cluster_uid: str,
    deleted_at: datetime | None,
    timeout_s: float,
    now: datetime,
) -> Step:
    """What to do now, given the cluster's own pods and its cleanup Job (None:
    absent). ``deleted_at`` is the RayCluster's deletionTimestamp."""
    elapsed = max(0.0, (now - deleted_at).total_seconds()) if deleted_at else 0.0
    left = timeout_s - elapsed
    if left <= 0:
        return Step(Action.TIMED_OUT, elapsed=elapsed)

    def soon(seconds: float) -> float:
        return min(seconds, left)

    alive = tuple(p for p in pods if not p.terminating)
    if alive:
        return Step(Action.DELETE_PODS, alive, soon(HEAD_RECHECK_SECONDS), elapsed)
    if any(p.node_type == "head" for p in pods):
        return Step(Action.WAIT_FOR_HEAD, recheck=soon(HEAD_RECHECK_SECONDS), elapsed=elapsed)
    if job is None:
        return Step(Action.CREATE_JOB, recheck=soon(JOB_RECHECK_SECONDS), elapsed=elapsed)
    if not owners.owned_by(job, cluster_uid):
        return Step(Action.JOB_NOT_OWNED, recheck=left, elapsed=elapsed)
    outcome = job_outcome(job)
    if outcome is not None:
        return Step(outcome, elapsed=elapsed)
    return Step(Action.WAIT_FOR_JOB, recheck=soon(JOB_RECHECK_SECONDS), elapsed=elapsed)
