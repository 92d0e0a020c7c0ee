"""Redis cleanup of a deleted fault-tolerant RayCluster: the Job (KubeRay's
shape), the pure next step, and whole passes on the in-memory API server
(finalizer added, pods deleted first, Job created, finalizer removed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from e2e.paths import sample
from raykube.adapters.kube import JOBS, PODS, RAYCLUSTERS
from raykube.builders import labels
from raykube.builders.pods import BuildContext
from raykube.builders.redis_cleanup import build_redis_cleanup_job
from raykube.decisions import redis_cleanup
from raykube.decisions.pods import view
from raykube.decisions.redis_cleanup import Action
from raykube.models.raycluster import parse_raycluster
from raykube.timefmt import format_time
from tests.unit.harness import NS, Harness

FINALIZER = "ray.io/gcs-ft-redis-cleanup-finalizer"


def _doc(file: str = "raycluster-fault-tolerant.yaml") -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(sample(file).read_text()) if d]
    doc: dict[str, Any] = next(d for d in docs if d["kind"] == "RayCluster")
    doc["metadata"]["namespace"] = NS
    return doc


# --- the Job ----------------------------------------------------------------------------------


def test_the_job_is_the_heads_ray_container_running_rays_cleanup() -> None:
    doc = _doc()
    doc["metadata"]["uid"] = "uid-1"
    doc["spec"]["enableInTreeAutoscaling"] = True
    cluster = parse_raycluster(doc)
    job = build_redis_cleanup_job(cluster, BuildContext())
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == "fault-tolerant-redis-cleanup"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert meta["ownerReferences"][0]["controller"] is True
    assert meta["labels"][labels.NODE_TYPE] == "redis-cleanup"
    assert meta["labels"][labels.CLUSTER] == "fault-tolerant"
    assert meta["annotations"][labels.EXTERNAL_STORAGE_NAMESPACE] == "uid-1"
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 300)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (ray,) = pod["containers"]  # no autoscaler sidecar
    assert ray["image"] == "rayproject/ray:2.60.0"
    assert ray["command"] == ["/bin/bash", "-c", "--"]
    assert "cleanup_redis_storage" in ray["args"][0]
    assert "livenessProbe" not in ray and "readinessProbe" not in ray
    assert ray["resources"]["limits"] == {"cpu": "200m", "memory": "256Mi"}
    env = {e["name"]: e for e in ray["env"]}
    for name in ("RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME"):
        assert name in env
    assert env["RAY_external_storage_namespace"]["value"] == "uid-1"
    assert env["RAY_redis_db_connect_retries"]["value"] == "120"
    # Not selected by the head Service (node-type), so never sent traffic.
    assert spec["template"]["metadata"]["labels"][labels.NODE_TYPE] == "redis-cleanup"


@pytest.mark.parametrize(
    ("cluster", "job"),
    [
        ("rc", "rc-redis-cleanup"),
        # Too long: the front is cut (KubeRay's rule), ...
        ("a" * 50, "a" * 49 + "-redis-cleanup"),
        # ... and a cut that starts at a dash starts with "r" instead.
        ("x" * 11 + "-" + "y" * 48, "r" + "y" * 48 + "-redis-cleanup"),
    ],
)
def test_the_job_name_keeps_63_characters_as_kuberays(cluster: str, job: str) -> None:
    assert labels.redis_cleanup_job_name(cluster) == job
    assert len(job) <= 63


# --- the next step (pure) --------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _pod(node_type: str, terminating: bool = False) -> Any:
    meta: dict[str, Any] = {
        "name": f"rc-{node_type}",
        "uid": f"u-{node_type}",
        "labels": {labels.NODE_TYPE: node_type, labels.CLUSTER: "rc"},
    }
    if terminating:
        meta["deletionTimestamp"] = format_time(T0)
    return view({"metadata": meta, "spec": {}, "status": {"phase": "Running"}})


def _job(condition: str | None = None, owner: str = "uid") -> dict[str, Any]:
    refs = [{"uid": owner, "controller": True}]
    status = {"conditions": [{"type": condition, "status": "True"}]} if condition else {}
    return {"metadata": {"ownerReferences": refs}, "status": status}


def _step(pods: list[Any], job: dict[str, Any] | None, after_s: float = 1) -> Any:
    return redis_cleanup.next_step(
        pods=pods,
        job=job,
        cluster_uid="uid",
        deleted_at=T0,
        timeout_s=300,
        now=T0 + timedelta(seconds=after_s),
    )


def test_pods_go_first_and_the_head_must_be_gone_before_the_job() -> None:
    step = _step([_pod("head"), _pod("worker")], None)
    assert step.action == Action.DELETE_PODS and len(step.delete) == 2
    assert _step([_pod("head", terminating=True)], None).action == Action.WAIT_FOR_HEAD
    # A worker still terminating does not hold the cleanup (the GCS is the head's).
    assert _step([_pod("worker", terminating=True)], None).action == Action.CREATE_JOB


@pytest.mark.parametrize(
    ("condition", "action"),
    [
        (None, Action.WAIT_FOR_JOB),
        ("Complete", Action.SUCCEEDED),
        ("Failed", Action.FAILED),
        ("FailureTarget", Action.FAILED),
        ("Suspended", Action.WAIT_FOR_JOB),
    ],
)
def test_the_jobs_conditions_decide(condition: str | None, action: Action) -> None:
    assert _step([], _job(condition)).action == action


def test_a_job_of_someone_else_is_waited_on_until_the_timeout() -> None:
    step = _step([], _job("Complete", owner="other"), after_s=100)
    assert step.action == Action.JOB_NOT_OWNED and step.recheck == 200


def test_the_timeout_releases_the_cluster_whatever_is_pending() -> None:
    assert _step([_pod("head")], None, after_s=300).action == Action.TIMED_OUT
    # Every recheck lands at or before the deadline.
    assert _step([], _job(), after_s=298).recheck == 2


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 300), ("60", 60), ("0", 300), ("-5", 300), ("1m", 300)]
)
def test_the_deletion_timeout_annotation(value: str | None, seconds: int) -> None:
    annotations = {} if value is None else {labels.GCS_FT_DELETION_TIMEOUT: value}
    assert redis_cleanup.timeout_seconds(annotations) == seconds


# --- whole passes -----------------------------------------------------------------------------


def _finalizers(h: Harness, name: str) -> list[str]:
    return list(h.cluster(name)["metadata"].get("finalizers") or [])


async def _reasons(h: Harness) -> list[str]:
    await h.events_posted()
    return [e.reason for e in h.kube.events]


async def test_a_fault_tolerant_cluster_is_cleaned_up_before_it_goes(harness: Harness) -> None:
    h = harness
    name = h.kube.put(_doc())["metadata"]["name"]
    await h.cluster_pass(name)
    assert _finalizers(h, name) == [FINALIZER]
    assert h.pods(name) == []  # the pass ended with the finalizer; pods come next
    await h.cluster_pass(name)
    assert len(h.pods(name)) == 3
    assert "AddedRedisCleanupFinalizer" in await _reasons(h)

    await h.kube.delete(RAYCLUSTERS, NS, name)
    h.kube.reset_counts()
    again = await h.cluster_pass(name)
    # Pods are deleted; the Job waits for the head to be gone.
    assert again is not None and again <= redis_cleanup.HEAD_RECHECK_SECONDS
    assert h.kube.requests["delete"] == 3
    assert h.kube.requests["get"] == 0 and h.kube.stored(JOBS, NS, f"{name}-redis-cleanup") is None
    assert h.pods(name) == []  # FakeKube removes pods at once

    await h.cluster_pass(name)
    job = h.kube.stored(JOBS, NS, f"{name}-redis-cleanup")
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["uid"] == h.cluster(name)["metadata"]["uid"]
    assert "CreatedRedisCleanupJob" in await _reasons(h)

    # Running: the Job is read again soon, nothing else is written.
    h.kube.reset_counts()
    again = await h.cluster_pass(name)
    assert again == redis_cleanup.JOB_RECHECK_SECONDS
    assert h.kube.writes() == 0 and h.kube.requests["get"] == 1

    complete = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    await h.kube.patch(JOBS, NS, f"{name}-redis-cleanup", complete, subresource="status")
    assert await h.cluster_pass(name) is None
    assert h.kube.stored(RAYCLUSTERS, NS, name) is None  # finalizer removed: gone
    assert "RedisCleanupSucceeded" in await _reasons(h)
    # Its Job went with it (owner reference).
    assert h.kube.stored(JOBS, NS, f"{name}-redis-cleanup") is None


async def test_a_failed_job_still_releases_the_cluster_with_a_warning(harness: Harness) -> None:
    h = harness
    name = h.kube.put(_doc())["metadata"]["name"]
    await h.cluster_pass(name)
    await h.kube.delete(RAYCLUSTERS, NS, name)
    await h.cluster_pass(name)
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    await h.kube.patch(JOBS, NS, f"{name}-redis-cleanup", failed, subresource="status")
    await h.cluster_pass(name)
    assert h.kube.stored(RAYCLUSTERS, NS, name) is None
    await h.events_posted()
    (warning,) = [e for e in h.kube.events if e.reason == "RedisCleanupFailed"]
    assert warning.type == "Warning" and "may remain in Redis" in warning.message


async def test_a_cluster_without_fault_tolerance_gets_no_finalizer(harness: Harness) -> None:
    h = harness
    doc = _doc("raycluster-minimal.yaml")
    name = h.kube.put(doc)["metadata"]["name"]
    await h.cluster_pass(name)
    assert _finalizers(h, name) == []
    assert len(h.pods(name)) > 0
    await h.kube.delete(RAYCLUSTERS, NS, name)
    assert h.kube.stored(RAYCLUSTERS, NS, name) is None


async def test_a_finalizer_no_longer_needed_is_removed(harness: Harness) -> None:
    h = harness
    doc = _doc("raycluster-minimal.yaml")
    doc["metadata"]["finalizers"] = [FINALIZER, "example.com/keep"]
    name = h.kube.put(doc)["metadata"]["name"]
    await h.cluster_pass(name)
    assert _finalizers(h, name) == ["example.com/keep"]
    assert h.kube.all(PODS, NS) == []  # that pass only fixed the finalizer
