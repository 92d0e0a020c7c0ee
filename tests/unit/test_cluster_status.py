"""RayCluster status as a pure function of what exists."""

from __future__ import annotations

from typing import Any

import yaml

from e2e.paths import manifest
from raykube.decisions import conditions
from raykube.decisions.cluster_status import Observed, compute_status
from raykube.decisions.conditions import Cond
from raykube.decisions.pods import PodView, view
from raykube.decisions.scaling import intent_of
from raykube.decisions.status_patch import differs
from raykube.models.raycluster import parse_raycluster

NOW = "2026-11-22T00:00:00Z"
LATER = "2026-11-22T01:00:00Z"


def _cluster(**spec_changes: Any) -> Any:
    docs = yaml.safe_load_all(manifest("ray-cluster.sample.yaml").read_text())
    doc = next(d for d in docs if d and d["kind"] == "RayCluster")
    doc["metadata"].update(namespace="ns", uid="u", generation=3)
    doc["spec"].update(spec_changes)
    return parse_raycluster(doc)


def _pod(name: str, node_type: str, ready: bool) -> PodView:
    return PodView(
        name=name,
        uid=name,
        namespace="ns",
        cluster="raycluster-kuberay",
        node_type=node_type,
        group="headgroup" if node_type == "head" else "workergroup",
        phase="Running",
        ready=ready,
        terminating=False,
        created=NOW,
        pod_ip="10.0.0.1",
    )


SVC = {
    "metadata": {"name": "raycluster-kuberay-head-svc"},
    "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dashboard", "port": 8265}]},
}


def test_ready_cluster_status() -> None:
    rc = _cluster()
    pods = [_pod("h", "head", True), _pod("w", "worker", True)]
    status = compute_status(rc, intent_of(rc), Observed(pods, SVC), NOW)
    assert status["state"] == "ready"
    assert status["desiredWorkerReplicas"] == 1
    assert status["readyWorkerReplicas"] == status["availableWorkerReplicas"] == 1
    assert status["desiredCPU"] == "2" and status["desiredMemory"] == "6Gi"
    assert status["desiredGPU"] == "0"
    assert status["endpoints"] == {"dashboard": "8265"}
    assert status["head"] == {
        "podName": "h",
        "podIP": "10.0.0.1",
        "serviceName": "raycluster-kuberay-head-svc",
        "serviceIP": "10.96.0.10",
    }
    assert status["observedGeneration"] == 3
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["HeadPodReady"]["status"] == "True"
    assert conds["RayClusterProvisioned"]["reason"] == "AllPodRunningAndReadyFirstTime"
    assert conds["RayClusterSuspended"]["status"] == "False"
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_provisioning_cluster_has_no_state_and_names_why() -> None:
    rc = _cluster()
    status = compute_status(rc, intent_of(rc), Observed([_pod("h", "head", False)], None), NOW)
    assert status["state"] == ""
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["HeadPodReady"]["reason"] == "HeadPodNotReady"
    assert conds["RayClusterProvisioned"]["status"] == "False"


def test_replica_failure_carries_the_api_message() -> None:
    rc = _cluster()
    failure = ("FailedCreateHeadPod", "spec.containers[0].imagePullPolicy: Unsupported value")
    status = compute_status(rc, intent_of(rc), Observed([], None, failure), NOW)
    cond = conditions.find(status["conditions"], "ReplicaFailure")
    assert cond is not None and cond["status"] == "True"
    assert "imagePullPolicy" in cond["message"]


def test_suspending_then_suspended() -> None:
    rc = _cluster(suspend=True)
    status = compute_status(rc, intent_of(rc), Observed([_pod("h", "head", True)], None), NOW)
    assert status["state"] == "suspending"
    assert compute_status(rc, intent_of(rc), Observed([], None), NOW)["state"] == "suspended"
    assert status["desiredCPU"] == "0"


def test_transition_time_moves_only_when_status_changes() -> None:
    first = conditions.merge([], [Cond("HeadPodReady", False, "HeadPodNotReady")], 1, NOW)
    same = conditions.merge(first, [Cond("HeadPodReady", False, "StillNotReady", "x")], 2, LATER)
    assert same[0]["lastTransitionTime"] == NOW and same[0]["reason"] == "StillNotReady"
    flipped = conditions.merge(
        same, [Cond("HeadPodReady", True, "HeadPodRunningAndReady")], 2, LATER
    )
    assert flipped[0]["lastTransitionTime"] == LATER


def test_status_is_rewritten_only_when_it_differs() -> None:
    rc = _cluster()
    status = compute_status(rc, intent_of(rc), Observed([], None), NOW)
    assert not differs({**status, "lastUpdateTime": "whenever"}, status)
    assert differs({**status, "readyWorkerReplicas": 5}, status)


def test_pod_view_reads_readiness_and_death() -> None:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "p",
            "uid": "1",
            "namespace": "ns",
            "creationTimestamp": NOW,
            "labels": {"ray.io/cluster": "c", "ray.io/node-type": "worker", "ray.io/group": "g"},
        },
        "spec": {"restartPolicy": "Never"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"state": {"terminated": {"reason": "OOMKilled"}}}],
        },
    }
    v = view(pod)
    assert (v.cluster, v.group, v.ready, v.dead, v.reason) == ("c", "g", True, True, "OOMKilled")
    assert view({**pod, "status": {"phase": "Failed", "reason": "Evicted"}}).reason == "Evicted"
