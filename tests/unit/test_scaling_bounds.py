"""Replica counts up to 2^31 cost bounded work: desired replicas are clamped as
KubeRay clamps them, status sums stay int32, and a pass creates at most a fixed
number of pods, building each batch only when it is sent."""

from __future__ import annotations

import copy
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from raykube.adapters.kube import RAYCLUSTERS
from raykube.builders.pods import build_worker_pod
from raykube.decisions import cluster_status
from raykube.decisions.scaling import GroupIntent, intent_of
from raykube.handlers import raycluster
from raykube.models import MAX_INT32, parse_raycluster
from raykube.models.raycluster import RayClusterStatus
from raykube.timefmt import now_iso
from tests.unit.harness import NS, Harness, load

SAMPLE = "ray-cluster.sample.yaml"


def test_replicas_above_max_give_max_even_when_min_is_above_max() -> None:
    # min > max slipped past the CRD (an object stored before its CEL rule).
    assert GroupIntent("g", replicas=10, min_replicas=5, max_replicas=3).desired == 3
    assert GroupIntent("g", replicas=1, min_replicas=2, max_replicas=4).desired == 2
    assert GroupIntent("g", replicas=9, min_replicas=2, max_replicas=4, num_of_hosts=2).desired == 8


def test_status_sums_stay_within_int32(manifests: Path) -> None:
    doc = load(manifests, SAMPLE, "RayCluster")
    group = doc["spec"]["workerGroupSpecs"][0]
    group.update(replicas=MAX_INT32, minReplicas=MAX_INT32, maxReplicas=MAX_INT32)
    group["numOfHosts"] = MAX_INT32
    second = copy.deepcopy(group)
    second["groupName"] = "second"
    doc["spec"]["workerGroupSpecs"].append(second)
    cluster = parse_raycluster(doc)

    status = cluster_status.compute_status(
        cluster, intent_of(cluster), cluster_status.Observed([]), now_iso()
    )

    for key in ("desiredWorkerReplicas", "minWorkerReplicas", "maxWorkerReplicas"):
        assert status[key] == MAX_INT32
    RayClusterStatus.model_validate(status)  # what the CRD's status schema allows


def sized(manifests: Path, replicas: int, hosts: int = 1) -> dict[str, Any]:
    doc = load(manifests, SAMPLE, "RayCluster")
    group = doc["spec"]["workerGroupSpecs"][0]
    group.update(replicas=replicas, minReplicas=0, maxReplicas=MAX_INT32, numOfHosts=hosts)
    return doc


async def test_a_pass_creates_at_most_a_bounded_number_of_pods(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    cap = raycluster.MAX_CREATES_PER_PASS
    doc = sized(manifests, replicas=2 * cap + 10)
    h.kube.put(doc)
    name = doc["metadata"]["name"]

    await h.cluster_pass(name)
    assert len(h.pods(name, "worker")) == cap - 1  # the head counts too
    # Looked at again soon, for the rest (the timer may have fired on a slow machine).
    assert (NS, name) in h.clusters.queue._timers or h.queued(h.clusters, name)

    await h.cluster_pass(name)
    assert len(h.pods(name, "worker")) == 2 * cap - 1
    await h.cluster_pass(name)
    assert len(h.pods(name, "worker")) == 2 * cap + 10
    assert h.cluster(name)["status"]["desiredWorkerReplicas"] == 2 * cap + 10


async def test_two_billion_replicas_cost_one_bounded_pass(
    harness: Harness, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    doc = sized(manifests, replicas=MAX_INT32, hosts=MAX_INT32)
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    built: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        pod = build_worker_pod(*args, **kwargs)
        built.append(pod["metadata"]["name"])
        return pod

    monkeypatch.setattr(raycluster, "build_worker_pod", counted)
    tracemalloc.start()

    await h.cluster_pass(name)

    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(h.pods(name, "worker")) == raycluster.MAX_CREATES_PER_PASS - 1
    # Only what is sent is built (and one dry run), not the two billion asked for.
    assert len(built) == raycluster.MAX_CREATES_PER_PASS
    assert peak < 100_000_000
    status = h.kube.stored(RAYCLUSTERS, NS, name)
    assert status is not None and status["status"]["desiredWorkerReplicas"] == MAX_INT32
