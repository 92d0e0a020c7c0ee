"""RayCluster reconcile passes of KubeRay's sample, on the in-memory API server:
what one pass sends, and that a pass with nothing to do sends nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from raykube.adapters.kube import PODS, RAYCLUSTERS, SERVICES
from raykube.builders import labels
from raykube.handlers import raycluster, registration
from tests.unit.harness import NS, Harness, load

SAMPLE = "ray-cluster.sample.yaml"


def names(pods: list[dict[str, Any]]) -> set[str]:
    return {p["metadata"]["name"] for p in pods}


def workers(h: Harness, cluster: str) -> list[dict[str, Any]]:
    return h.pods(cluster, "worker")


async def started(h: Harness, manifests: Path) -> str:
    """The sample created and reconciled once, every pod Ready, the status caught up."""
    doc = load(manifests, SAMPLE, "RayCluster")
    h.kube.put(doc)
    name: str = doc["metadata"]["name"]
    await h.cluster_pass(name)
    h.all_pods_ready(name)
    await h.cluster_pass(name)
    assert h.cluster(name)["status"]["state"] == "ready"
    return name


def set_replicas(h: Harness, name: str, replicas: int, to_delete: list[str] | None = None) -> None:
    def change(rc: dict[str, Any]) -> None:
        group = rc["spec"]["workerGroupSpecs"][0]
        group["replicas"] = replicas
        if to_delete is not None:
            group["scaleStrategy"] = {"workersToDelete": to_delete}

    h.kube.mutate(RAYCLUSTERS, NS, name, change)


async def test_a_first_pass_creates_the_head_service_and_pods(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, SAMPLE, "RayCluster")
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    group = doc["spec"]["workerGroupSpecs"][0]

    again = await h.cluster_pass(name)

    service = h.service(labels.head_service_name(name))
    assert service is not None
    assert service["spec"]["selector"][labels.NODE_TYPE] == "head"
    (head,) = h.pods(name, "head")
    assert len(workers(h, name)) == group["replicas"]
    assert {w["metadata"]["labels"][labels.GROUP] for w in workers(h, name)} == {group["groupName"]}
    # Owned by the cluster: deleting it takes everything with it.
    uid = h.cluster(name)["metadata"]["uid"]
    assert head["metadata"]["ownerReferences"][0]["uid"] == uid
    status = h.cluster(name)["status"]
    assert status["head"] == {
        "podName": head["metadata"]["name"],
        "serviceName": service["metadata"]["name"],
    }
    assert status["desiredWorkerReplicas"] == group["replicas"]
    # Templates are judged by a dry run before anything is created; everything
    # is created (POST: nothing of that name is taken over), nothing applied.
    assert h.kube.requests["create-dry-run"] == 2
    assert h.kube.requests["create"] == 1 + 1 + group["replicas"]
    assert h.kube.requests["apply"] == 0
    assert h.kube.requests["get"] == 0  # the cluster came from the watch cache
    await h.events_posted()
    assert sorted(e.reason for e in h.kube.events) == ["CreatedHeadPod", "CreatedWorkerPod"]
    # Pods are starting: look again soon, without an event.
    assert again == raycluster.PROGRESS_RECHECK_SECONDS


async def test_a_pass_with_nothing_changed_sends_nothing(harness: Harness, manifests: Path) -> None:
    h = harness
    doc = load(manifests, SAMPLE, "RayCluster")
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    await h.cluster_pass(name)
    # While pods start: nothing new is known, nothing is sent.
    h.kube.reset_counts()
    await h.cluster_pass(name)
    await h.events_posted()
    assert h.kube.requests == {}
    # Ready: one status write, then silence.
    h.all_pods_ready(name)
    await h.cluster_pass(name)
    assert [(r.verb, r.kind, r.subresource) for r in h.kube.log] == [
        ("patch", "RayCluster", "status")
    ]
    h.kube.reset_counts()
    again = await h.cluster_pass(name)
    await h.events_posted()
    assert h.kube.requests == {}, h.kube.log  # no GET, no write, no event
    assert again is None  # settled: only events or the resync bring it back


async def test_scaling_creates_and_deletes_the_right_pods(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name = await started(h, manifests)
    (first,) = names(workers(h, name))
    head = names(h.pods(name, "head"))

    set_replicas(h, name, 3)
    await h.cluster_pass(name)
    assert len(workers(h, name)) == 3 and first in names(workers(h, name))
    assert names(h.pods(name, "head")) == head
    assert h.kube.requests["delete"] == 0
    h.all_pods_ready(name)
    await h.cluster_pass(name)

    # Down by one: the worker that is not Ready goes, not a serving one.
    sick = sorted(names(workers(h, name)) - {first})[0]
    h.kube.set_pod_ready(NS, sick, ready=False)
    h.kube.reset_counts()
    set_replicas(h, name, 2)
    await h.cluster_pass(name)
    assert [(r.verb, r.name) for r in h.kube.log if r.verb == "delete"] == [("delete", sick)]
    assert sick not in names(workers(h, name)) and len(workers(h, name)) == 2

    # Named victims: exactly those, however ready they are.
    h.kube.reset_counts()
    set_replicas(h, name, 1, to_delete=[first])
    await h.cluster_pass(name)
    assert [r.name for r in h.kube.log if r.verb == "delete"] == [first]
    assert first not in names(workers(h, name)) and len(workers(h, name)) == 1
    assert h.kube.requests["create"] == 0  # nothing replaced what was asked to go
    await h.events_posted()
    deleted = [e.message for e in h.kube.events if e.reason == "DeletedWorkerPod"]
    assert len(deleted) == 2 and first in deleted[1]


async def test_a_stale_status_write_is_dropped_and_retried(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, SAMPLE, "RayCluster")
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    await h.cluster_pass(name)
    h.all_pods_ready(name)
    # The watch has not delivered the newest RayCluster yet: the pass computes
    # from an object whose resourceVersion the API server has moved past.
    h.indices["ray_clusters"].freeze()
    h.kube.mutate(
        RAYCLUSTERS, NS, name, lambda rc: rc["metadata"].setdefault("labels", {}).update(team="a")
    )
    h.kube.reset_counts()
    await h.cluster_pass(name)
    assert [(r.verb, r.subresource) for r in h.kube.log] == [("patch", "status")]
    assert h.cluster(name)["status"]["state"] != "ready"  # the 409 wrote nothing
    assert h.queued(h.clusters, name)  # and the key runs again at once
    # The watch catches up: the retry writes, from the newest object.
    h.indices["ray_clusters"].thaw()
    await h.cluster_pass(name)
    stored = h.cluster(name)
    assert stored["status"]["state"] == "ready"
    assert stored["metadata"]["labels"]["team"] == "a"


async def test_a_deleted_pod_is_replaced_once(harness: Harness, manifests: Path) -> None:
    h = harness
    name = await started(h, manifests)
    (worker,) = names(workers(h, name))
    await h.kube.delete(PODS, NS, worker)
    h.kube.reset_counts()
    await h.cluster_pass(name)
    await h.cluster_pass(name)  # the new pod is in the cache by now: no second one
    assert h.kube.requests["create"] == 1
    assert len(workers(h, name)) == 1 and worker not in names(workers(h, name))


async def test_one_template_is_judged_once_across_clusters(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    names = []
    for n in range(3):
        doc = load(manifests, SAMPLE, "RayCluster")
        doc["metadata"]["name"] = f"same-template-{n}"
        h.kube.put(doc)
        names.append(doc["metadata"]["name"])
    for name in names:
        await h.cluster_pass(name)
    # One head and one worker template: two dry-runs for three clusters.
    assert h.kube.requests["create-dry-run"] == 2
    assert all(h.pods(name, "head") for name in names)


async def test_clusters_created_at_once_share_one_dry_run(
    harness: Harness, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    create = h.kube.create_object

    async def slow_create(obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        # A real API server answers later: every pass is waiting at once.
        await asyncio.sleep(0.01)
        return await create(obj, dry_run=dry_run)

    monkeypatch.setattr(h.kube, "create_object", slow_create)
    names = []
    for n in range(8):
        doc = load(manifests, SAMPLE, "RayCluster")
        doc["metadata"]["name"] = f"at-once-{n}"
        h.kube.put(doc)
        names.append(doc["metadata"]["name"])
    await asyncio.gather(*(h.cluster_pass(name) for name in names))
    assert h.kube.requests["create-dry-run"] == 2
    assert all(h.pods(name, "head") for name in names)


async def test_events_of_a_deleted_cluster_send_nothing(harness: Harness, manifests: Path) -> None:
    h = harness
    doc = load(manifests, SAMPLE, "RayCluster")
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    await h.cluster_pass(name)
    await h.kube.delete(RAYCLUSTERS, NS, name)
    h.kube.reset_counts()
    # Its pods' events still queue it: the cache says it is gone, so no GET (404).
    for _ in range(3):
        await h.cluster_pass(name)
    assert h.kube.requests == {}


async def test_the_echo_of_its_own_status_write_queues_no_pass(
    harness: Harness, manifests: Path
) -> None:
    """The watch brings back the status a pass wrote; a pass for it would find
    nothing to do. Any other change of the RayCluster still queues one."""
    h = harness
    name = await started(h, manifests)
    memo = {"clusters": h.clusters}
    key = (NS, name)
    h.clusters.queue.forget(key)
    h.clusters.queue._queued.discard(key)
    echo = h.cluster(name)["metadata"]
    event: Any = registration.raycluster_event  # kopf's decorator types it as its handler
    await event(type="MODIFIED", namespace=NS, name=name, meta=echo, memo=memo)
    assert not h.queued(h.clusters, name)
    set_replicas(h, name, 2)
    changed = h.cluster(name)["metadata"]
    assert changed["resourceVersion"] != echo["resourceVersion"]
    await event(type="MODIFIED", namespace=NS, name=name, meta=changed, memo=memo)
    assert h.queued(h.clusters, name)


async def test_a_new_head_service_is_headless_and_an_older_one_keeps_its_address(
    harness: Harness, manifests: Path
) -> None:
    """KubeRay's default for a ClusterIP head Service is headless; a head Service
    an earlier raykube created with a cluster IP keeps it (the field is
    immutable), and the status reports the head pod's address for a headless one."""
    h = harness
    name = await started(h, manifests)
    svc_name = labels.head_service_name(name)
    service = h.service(svc_name)
    assert service is not None and service["spec"]["clusterIP"] == "None"
    status = h.cluster(name)["status"]["head"]
    assert status["serviceIP"] == status["podIP"] != ""

    def older(svc: dict[str, Any]) -> None:  # as the previous operator wrote it
        svc["spec"]["clusterIP"] = "10.96.7.7"
        svc["metadata"]["annotations"][labels.SPEC_HASH] = "written-by-an-older-operator"

    h.kube.mutate(SERVICES, NS, svc_name, older)
    await h.cluster_pass(name)
    service = h.service(svc_name)
    assert service is not None and service["spec"]["clusterIP"] == "10.96.7.7"
    stamp = service["metadata"]["annotations"][labels.SPEC_HASH]
    assert stamp != "written-by-an-older-operator"  # brought up to date, address kept


async def test_child_events_of_a_moment_make_one_pass_and_a_gone_clusters_none(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name = await started(h, manifests)
    memo = {"clusters": h.clusters}
    key = (NS, name)
    event: Any = registration.child_event  # kopf's decorator types it as its handler
    child = {labels.CLUSTER: name}
    h.clusters.queue._queued.discard(key)
    h.clusters.queue.forget(key)
    await event(namespace=NS, labels=child, memo=memo)
    # One pass a moment later for the events of that moment, not one each.
    timer = h.clusters.queue._timers[key]
    await event(namespace=NS, labels=child, memo=memo)
    assert h.clusters.queue._timers[key] is timer
    assert not h.queued(h.clusters, name)
    h.clusters.queue.forget(key)
    h.clusters.forget(key)  # its RayCluster's DELETED event
    await event(namespace=NS, labels=child, memo=memo)
    assert key not in h.clusters.queue._timers and not h.queued(h.clusters, name)


async def test_the_cluster_cache_keeps_neither_managed_fields_nor_kubectls_copy(
    manifests: Path,
) -> None:
    """Both are often as large as the spec, and no pass reads them."""
    doc = load(manifests, SAMPLE, "RayCluster")
    doc["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    doc["metadata"]["annotations"] = {labels.LAST_APPLIED: "{}", "team": "web"}
    index: Any = registration.ray_clusters  # kopf's decorator types it as its handler
    (cached,) = (await index(namespace=NS, name="c", body=doc)).values()
    assert "managedFields" not in cached["metadata"]
    assert cached["metadata"]["annotations"] == {"team": "web"}
    assert cached["spec"] == doc["spec"]
    assert labels.LAST_APPLIED in doc["metadata"]["annotations"]  # the event's body untouched


async def test_a_pass_before_the_echo_of_its_status_write_computes_from_that_write(
    harness: Harness, manifests: Path
) -> None:
    """Passes come faster than the watch brings back their own status writes
    (pod events queue them): the next pass reads the last write instead of
    the cached status it replaced, so its patch is not refused with 409."""
    h = harness
    doc = load(manifests, SAMPLE, "RayCluster")
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    await h.cluster_pass(name)
    h.indices["ray_clusters"].freeze()  # the echo of every write below is late
    (head,) = names(h.pods(name, "head"))
    h.kube.set_pod_ready(NS, head, ip="10.0.0.1")
    h.clusters.states.of((NS, name)).status_written = None  # the pacing is another test's
    await h.cluster_pass(name)
    assert h.cluster(name)["status"]["head"]["podIP"] == "10.0.0.1"
    h.all_pods_ready(name)
    h.clusters.states.of((NS, name)).status_written = None
    h.kube.reset_counts()
    await h.cluster_pass(name)
    assert [(r.verb, r.subresource) for r in h.kube.log] == [("patch", "status")]
    assert h.cluster(name)["status"]["state"] == "ready"  # written, not refused
    assert not h.queued(h.clusters, name)
