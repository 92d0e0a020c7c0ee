"""Deleting a fault-tolerant RayCluster on a real API server: the finalizer, the
pods deleted first, the Redis cleanup Job, the cluster gone once the Job is done.

On kwok nodes the Job's pod never runs Ray, so the test plays the Job
controller's last word: it writes the Job's terminal conditions through the
status subresource (the API server validates them as it would the
controller's). The cleanup itself runs against a real Redis in the e2e tier
(tests/e2e/test_gcs_ft.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from e2e.paths import sample
from localcluster.controlplane import ControlPlane
from raykube.timefmt import now_iso
from tests.kubehelpers import OperatorProcess, apply, get_json, wait_for

pytestmark = pytest.mark.controlplane

FINALIZER = "ray.io/gcs-ft-redis-cleanup-finalizer"


def _cluster(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(sample("raycluster-fault-tolerant.yaml").read_text())]
    doc: dict[str, Any] = next(d for d in docs if d and d["kind"] == "RayCluster")
    doc["metadata"]["name"] = name
    return doc


def _get(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    out = cp.kubectl("get", kind, name, "-n", ns, "-o", "json", "--ignore-not-found")
    return json.loads(out.stdout) if out.stdout.strip() else None


def _pods(cp: ControlPlane, ns: str, selector: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = get_json(cp, "pods", "-n", ns, "-l", selector)["items"]
    return pods


def _events(cp: ControlPlane, ns: str, name: str) -> list[tuple[str, str]]:
    items = get_json(cp, "events", "-n", ns)["items"]
    return [(e["type"], e["reason"]) for e in items if e["involvedObject"].get("name") == name]


NO_NEW_PODS = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {"name": "no-new-pods"},
    "spec": {"hard": {"pods": "0"}},
}


def _finish_job(cp: ControlPlane, ns: str, job: str, succeeded: bool) -> None:
    # The Job controller's own start time is kept (the API server refuses to move it).
    def started() -> str | None:
        found = (_get(cp, ns, "job", job) or {}).get("status") or {}
        return found.get("startTime")

    start = wait_for(started, timeout=60, what="the Job controller's startTime")
    now = now_iso()
    if succeeded:
        conditions = [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "lastTransitionTime": now},
        ]
        status = {"succeeded": 1, "active": 0, "completionTime": now}
    else:
        conditions = [
            {"type": "FailureTarget", "status": "True", "lastTransitionTime": now},
            {"type": "Failed", "status": "True", "lastTransitionTime": now},
        ]
        status = {"failed": 1, "active": 0}
    patch = {"status": {**status, "startTime": start, "conditions": conditions}}
    cp.kubectl(
        "patch", "job", job, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps(patch),
    )  # fmt: skip


@pytest.mark.parametrize("succeeded", [True, False], ids=["job-succeeds", "job-fails"])
def test_a_deleted_fault_tolerant_cluster_waits_for_its_redis_cleanup(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, succeeded: bool
) -> None:
    cp, ns = control_plane, namespace
    name = "ft-cleanup"
    job = f"{name}-redis-cleanup"
    apply(cp, ns, _cluster(name))

    def up() -> bool:
        rc = _get(cp, ns, "raycluster", name) or {}
        heads = _pods(cp, ns, f"ray.io/cluster={name},ray.io/node-type=head")
        return FINALIZER in (rc.get("metadata", {}).get("finalizers") or []) and len(heads) == 1

    wait_for(up, timeout=90, what="the finalizer and the head pod")
    uid = get_json(cp, "raycluster", name, "-n", ns)["metadata"]["uid"]

    # kwok completes the pods of Jobs by itself, and the real Job controller
    # would then finish the Job before this test does: no new pod may start.
    apply(cp, ns, NO_NEW_PODS)
    cp.kubectl("delete", "raycluster", name, "-n", ns, "--wait=false")
    # The pods go first; only then is the Job created.
    created = wait_for(lambda: _get(cp, ns, "job", job), timeout=90, what="the cleanup Job")
    ray_pods = _pods(cp, ns, f"ray.io/cluster={name},ray.io/node-type in (head,worker)")
    assert all(p["metadata"].get("deletionTimestamp") for p in ray_pods) or not ray_pods
    meta = created["metadata"]
    assert meta["ownerReferences"][0]["uid"] == uid
    assert meta["labels"]["ray.io/node-type"] == "redis-cleanup"
    assert created["spec"]["backoffLimit"] == 0
    assert created["spec"]["activeDeadlineSeconds"] == 300
    (container,) = created["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_external_storage_namespace"]["value"] == uid
    assert env["REDIS_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "username"
    # The cluster waits for the Job.
    assert _get(cp, ns, "raycluster", name) is not None

    _finish_job(cp, ns, job, succeeded)
    wait_for(
        lambda: _get(cp, ns, "raycluster", name) is None, timeout=60, what="the RayCluster gone"
    )
    reasons = _events(cp, ns, name)
    assert ("Normal", "AddedRedisCleanupFinalizer") in reasons
    assert ("Normal", "CreatedRedisCleanupJob") in reasons
    final = ("Normal", "RedisCleanupSucceeded") if succeeded else ("Warning", "RedisCleanupFailed")
    wait_for(lambda: final in _events(cp, ns, name), timeout=30, what=f"the event {final}")
