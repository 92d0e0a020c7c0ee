"""RayService reconcile passes of KubeRay's sample, on the in-memory API server
and Ray dashboards: its cluster, one serve config submission once the head is
Ready, the traffic switch, and a steady pass that sends nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from raykube.adapters.kube import RAYCLUSTERS
from raykube.builders import labels
from tests.unit.harness import NS, Harness, load

SAMPLE = "ray-service.sample.yaml"


async def created(h: Harness, manifests: Path) -> tuple[str, str]:
    """The sample applied and reconciled once: (RayService name, its cluster's name)."""
    doc = load(manifests, SAMPLE, "RayService")
    h.kube.put(doc)
    name: str = doc["metadata"]["name"]
    await h.service_pass(name)
    (cluster,) = h.kube.all(RAYCLUSTERS, NS)
    return name, cluster["metadata"]["name"]


async def serving(h: Harness, manifests: Path) -> tuple[str, str]:
    """The sample serving: its cluster's pods Ready, Serve RUNNING, traffic switched."""
    name, cluster = await created(h, manifests)
    await h.cluster_pass(cluster)
    h.all_pods_ready(cluster)
    await h.cluster_pass(cluster)
    for _ in range(5):
        await h.service_pass(name)
        ready = conditions(h, name).get("Ready")
        if ready == ("True", "NonZeroServeEndpoints"):
            return name, cluster
    raise AssertionError(f"not serving after 5 passes: {conditions(h, name)}")


def conditions(h: Harness, name: str) -> dict[str, tuple[str, str]]:
    status = h.rayservice(name).get("status") or {}
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


async def test_a_first_pass_creates_its_cluster(harness: Harness, manifests: Path) -> None:
    h = harness
    name, cluster = await created(h, manifests)
    rc = h.cluster(cluster)
    owner = rc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("RayService", h.rayservice(name)["metadata"]["uid"])
    assert rc["metadata"]["labels"][labels.ORIGINATED_FROM_CR] == name
    sample = load(manifests, SAMPLE, "RayService")["spec"]["rayClusterConfig"]
    assert (
        rc["spec"]["workerGroupSpecs"][0]["groupName"] == sample["workerGroupSpecs"][0]["groupName"]
    )
    # No head yet: nothing is submitted and no traffic goes anywhere.
    assert not h.serve.heads
    assert h.service(f"{name}-serve-svc") is None
    assert conditions(h, name)["Ready"] == ("False", "Initializing")
    await h.events_posted()
    assert [e.reason for e in h.kube.events] == ["CreatedRayCluster"]


async def test_the_serve_config_is_submitted_once_when_the_heads_ray_runs(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name, cluster = await created(h, manifests)
    await h.cluster_pass(cluster)
    await h.service_pass(name)
    assert not h.head(cluster).submitted, "submitted to a head pod that does not run"

    # Running, its readiness probe not passed yet (it first looks 10 s after
    # the start), the dashboard answering: the config goes now.
    (head,) = h.pods(cluster, "head")
    h.kube.set_pod_ready(NS, head["metadata"]["name"], ready=False)
    await h.service_pass(name)
    (submitted,) = h.head(cluster).submitted
    assert conditions(h, name)["Ready"][0] == "False"  # serving waits for a Ready head
    wanted = yaml.safe_load(load(manifests, SAMPLE, "RayService")["spec"]["serveConfigV2"])
    assert [a["name"] for a in submitted["applications"]] == [
        a["name"] for a in wanted["applications"]
    ]
    notes = h.cluster(cluster)["metadata"]["annotations"]
    assert notes[labels.SERVE_CONFIG_HASH] and notes[labels.SERVE_CONFIG_SUBMITTED_AT]
    for _ in range(3):
        await h.service_pass(name)
    assert len(h.head(cluster).submitted) == 1
    assert h.head(cluster).requests["PUT /api/serve/applications/"] == 1


async def test_traffic_switches_to_the_cluster_once_it_serves(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name, cluster = await serving(h, manifests)
    for service in (f"{name}-serve-svc", labels.rayservice_head_service_name(name)):
        found = h.service(service)
        assert found is not None, service
        assert found["spec"]["selector"][labels.CLUSTER] == cluster
    status = h.rayservice(name)["status"]
    assert status["activeServiceStatus"]["rayClusterName"] == cluster
    apps = status["activeServiceStatus"]["applicationStatuses"]
    assert apps and all(a["status"] == "RUNNING" for a in apps.values())
    (head,) = h.pods(cluster, "head")
    assert head["metadata"]["labels"][labels.SERVE] == "true"
    await h.events_posted()
    assert "SwitchedTraffic" in [e.reason for e in h.kube.events]


async def test_a_steady_pass_sends_nothing(harness: Harness, manifests: Path) -> None:
    h = harness
    name, cluster = await serving(h, manifests)
    await h.service_pass(name)  # the status's last word after the switch
    await h.events_posted()
    h.kube.reset_counts()
    events = len(h.kube.events)
    delays = [await h.service_pass(name) for _ in range(3)]
    await h.events_posted()
    assert h.kube.requests == {}, h.kube.log  # no GET, no write, no event
    assert len(h.kube.events) == events
    assert len(h.head(cluster).submitted) == 1
    # Steady: the polls back off instead of every 2 s.
    steady = [d for d in delays if d is not None]
    assert len(steady) == 3 and steady == sorted(steady) and steady[-1] > steady[0]


async def test_a_pass_before_the_cache_shows_the_submission_does_not_resubmit(
    harness: Harness, manifests: Path
) -> None:
    """The watch cache can lag behind our own annotation write; the next pass
    then must still see the config as submitted (it did once send it twice)."""
    h = harness
    name, cluster = await created(h, manifests)
    await h.cluster_pass(cluster)
    (head,) = h.pods(cluster, "head")
    h.kube.set_pod_ready(NS, head["metadata"]["name"])
    await h.service_pass(name)
    assert len(h.head(cluster).submitted) == 1
    written = dict(h.cluster(cluster)["metadata"]["annotations"])

    def stale(rc: dict[str, Any]) -> None:
        notes = rc["metadata"]["annotations"]
        for key in (labels.SERVE_CONFIG_HASH, labels.SERVE_CONFIG_SUBMITTED_AT):
            notes.pop(key, None)

    h.kube.mutate(RAYCLUSTERS, NS, cluster, stale)  # the cache before the write arrives
    await h.service_pass(name)
    assert len(h.head(cluster).submitted) == 1, "resubmitted on a stale cache"

    def caught_up(rc: dict[str, Any]) -> None:
        for key in (labels.SERVE_CONFIG_HASH, labels.SERVE_CONFIG_SUBMITTED_AT):
            rc["metadata"]["annotations"][key] = written[key]

    h.kube.mutate(RAYCLUSTERS, NS, cluster, caught_up)
    await h.service_pass(name)
    assert len(h.head(cluster).submitted) == 1
    # Once the cache caught up, what the cluster says is read again: a head that
    # lost its config (its annotations say so) gets it back.
    h.kube.mutate(RAYCLUSTERS, NS, cluster, stale)
    await h.service_pass(name)
    assert len(h.head(cluster).submitted) == 2
