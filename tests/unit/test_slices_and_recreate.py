"""The pod plan for multi-host replicas (slices) and for upgradeStrategy
Recreate: pure table tests, then whole passes on the in-memory API server."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

from raykube.adapters.kube import RAYCLUSTERS
from raykube.builders import labels
from raykube.builders.pods import BuildContext, ReplicaPlace, build_worker_pod, pod_template_hash
from raykube.builders.services import build_headless_service
from raykube.decisions import cluster_status
from raykube.decisions.pods import PodView, view
from raykube.decisions.scaling import (
    NOT_IN_SLICE,
    RECREATE,
    SLICE_INCOMPLETE,
    ClusterIntent,
    GroupIntent,
    PodPlan,
    intent_of,
    plan_pods,
    still_building,
    workers_to_create,
)
from raykube.handlers import raycluster
from raykube.models.raycluster import parse_raycluster
from raykube.timefmt import now_iso
from tests.unit.harness import NS, Harness, load

SAMPLE = "ray-cluster.sample.yaml"
HEAD = PodView(
    "rc-head-x", "uid-head", "ns", "rc", "head", "headgroup", "Running", True, False, "t0"
)


def host(
    slice_name: str,
    index: int,
    h: int,
    *,
    created: str = "2026-01-01T00:00:00Z",
    ready: bool = True,
    dead: bool = False,
    group: str = "tpu",
    stamp: str = "",
) -> PodView:
    name = f"{slice_name}-h{h}"
    return PodView(
        name=name,
        uid=f"uid-{name}",
        namespace="ns",
        cluster="rc",
        node_type="worker",
        group=group,
        phase="Running",
        ready=ready,
        terminating=False,
        created=created,
        dead=dead,
        replica_index=index,
        replica_name=slice_name,
        host_index=h,
        template_hash=stamp,
    )


def sliced(name: str, index: int, hosts: int = 4, **kw: Any) -> list[PodView]:
    return [host(name, index, h, **kw) for h in range(hosts)]


def tpu(**kw: Any) -> GroupIntent:
    base: dict[str, Any] = {
        "name": "tpu",
        "replicas": 2,
        "min_replicas": 0,
        "max_replicas": 10,
        "num_of_hosts": 4,
    }
    base.update(kw)
    return GroupIntent(**base)


def intent(*groups: GroupIntent, **kw: Any) -> ClusterIntent:
    return ClusterIntent(groups=groups, **kw)


def creations(plan: PodPlan) -> list[tuple[str, int, str | None, int]]:
    names = iter(["s-new1", "s-new2", "s-new3"])
    return [
        (w.group, w.replica_index, w.replica_name, w.host_index)
        for w in workers_to_create(plan, lambda g: next(names))
    ]


def deleted(plan: PodPlan) -> set[tuple[str, str]]:
    return {(d.name, d.reason) for d in plan.delete}


# --- the plan, pure --------------------------------------------------------------------


def test_an_empty_group_gets_whole_slices_at_indices_from_zero() -> None:
    plan = plan_pods(intent(tpu()), [HEAD])
    assert plan.create_workers == {"tpu": 8}
    assert creations(plan) == [
        *[("tpu", 0, "s-new1", h) for h in range(4)],
        *[("tpu", 1, "s-new2", h) for h in range(4)],
    ]


def test_whole_slices_are_steady() -> None:
    pods = [HEAD, *sliced("a", 0), *sliced("b", 1)]
    assert plan_pods(intent(tpu()), pods).empty


def test_a_missing_host_deletes_its_slice_and_a_new_one_takes_the_free_index() -> None:
    pods = [HEAD, *sliced("a", 0), *sliced("b", 1)[1:]]
    plan = plan_pods(intent(tpu()), pods)
    assert deleted(plan) == {(f"b-h{h}", SLICE_INCOMPLETE) for h in (1, 2, 3)}
    assert {d.replica for d in plan.delete} == {"b"}
    assert creations(plan) == [("tpu", 1, "s-new1", h) for h in range(4)]


def test_a_dead_host_deletes_its_whole_slice() -> None:
    b = sliced("b", 1)
    b[2] = replace(b[2], dead=True)
    plan = plan_pods(intent(tpu()), [HEAD, *sliced("a", 0), *b])
    assert deleted(plan) == {(f"b-h{h}", "WorkerPodDead") for h in range(4)}
    assert plan.create_workers == {"tpu": 4}


def test_scale_down_removes_whole_slices_not_ready_first_then_newest() -> None:
    pods = [
        HEAD,
        *sliced("old", 0, created="2026-01-01T00:00:00Z"),
        *sliced("new", 1, created="2026-01-03T00:00:00Z"),
        *sliced("mid", 2, created="2026-01-02T00:00:00Z"),
    ]
    plan = plan_pods(intent(tpu(replicas=2)), pods)
    assert deleted(plan) == {(f"new-h{h}", "ScaleDown") for h in range(4)}
    sick = [*sliced("old", 0), *sliced("new", 1, created="2026-01-03T00:00:00Z")]
    sick[1] = replace(sick[1], ready=False)
    plan = plan_pods(intent(tpu(replicas=1)), [HEAD, *sick])
    assert deleted(plan) == {(f"old-h{h}", "ScaleDown") for h in range(4)}


def test_workers_to_delete_naming_one_host_deletes_its_slice() -> None:
    pods = [HEAD, *sliced("a", 0), *sliced("b", 1)]
    group = tpu(replicas=1, workers_to_delete=("b-h2",))
    for autoscaling in (False, True):
        plan = plan_pods(intent(group, autoscaling=autoscaling), pods)
        assert deleted(plan) == {(f"b-h{h}", "WorkersToDelete") for h in range(4)}
        assert plan.create_workers == {}


def test_autoscaling_never_removes_a_slice_at_random() -> None:
    pods = [HEAD, *sliced("a", 0), *sliced("b", 1)]
    assert plan_pods(intent(tpu(replicas=1), autoscaling=True), pods).empty


def test_hosts_without_a_slice_name_are_replaced_by_slices() -> None:
    loose = [replace(p, replica_name="", host_index=-1) for p in sliced("x", 0)]
    plan = plan_pods(intent(tpu(replicas=1)), [HEAD, *loose])
    assert deleted(plan) == {(p.name, NOT_IN_SLICE) for p in loose}
    assert plan.create_workers == {"tpu": 4}


def test_duplicate_host_indices_make_a_slice_broken() -> None:
    b = sliced("b", 0)
    b[3] = replace(b[3], host_index=0)
    plan = plan_pods(intent(tpu(replicas=1)), [HEAD, *b])
    assert deleted(plan) == {(p.name, SLICE_INCOMPLETE) for p in b}


def test_a_slice_being_built_is_finished_not_deleted() -> None:
    half = sliced("b", 1)[:2]
    plan = plan_pods(intent(tpu()), [HEAD, *sliced("a", 0), *half], building=frozenset({"b"}))
    assert plan.delete == []
    assert creations(plan) == [("tpu", 1, "b", 2), ("tpu", 1, "b", 3)]


def test_only_a_slice_cut_short_stays_in_building() -> None:
    half = sliced("b", 1)[:2]
    plan = plan_pods(intent(tpu(replicas=3)), [HEAD, *sliced("a", 0), *half], frozenset({"b"}))
    todo = list(workers_to_create(plan, lambda g: "c"))
    assert [w.replica_name for w in todo] == ["b", "b", "c", "c", "c", "c"]
    assert still_building(plan, todo[:4], todo[4]) == {"c"}
    assert still_building(plan, todo[:2], todo[2]) == set()  # b finished, c not begun
    assert still_building(plan, todo[:1], todo[1]) == {"b"}
    assert still_building(plan, [], todo[0]) == {"b"}
    assert still_building(plan, todo, None) == set()


def test_single_host_workers_are_numbered_from_the_lowest_free_index() -> None:
    group = GroupIntent("small", replicas=3, min_replicas=0, max_replicas=5)
    w = replace(host("w", 1, 0, group="small"), replica_name="", host_index=-1)
    plan = plan_pods(intent(group), [HEAD, w])
    assert creations(plan) == [("small", 0, None, 0), ("small", 2, None, 0)]


def test_two_billion_slices_are_planned_lazily() -> None:
    plan = plan_pods(intent(tpu(replicas=2**31 - 1, max_replicas=2**31 - 1)), [HEAD])
    first = workers_to_create(plan, lambda g: "s")
    assert [next(first).host_index for _ in range(5)] == [0, 1, 2, 3, 0]


def test_status_counts_hosts_and_leaves_suspended_groups_out_of_the_bounds(
    manifests: Path,
) -> None:
    doc = load(manifests, SAMPLE, "RayCluster")
    group = doc["spec"]["workerGroupSpecs"][0]
    group.update(replicas=2, minReplicas=1, maxReplicas=3, numOfHosts=4)
    idle = {**copy.deepcopy(group), "groupName": "idle", "suspend": True}
    doc["spec"]["workerGroupSpecs"].append(idle)
    cluster = parse_raycluster(doc)
    status = cluster_status.compute_status(
        cluster, intent_of(cluster), cluster_status.Observed([]), now_iso()
    )
    assert status["desiredWorkerReplicas"] == 8
    assert (status["minWorkerReplicas"], status["maxWorkerReplicas"]) == (4, 12)


# --- Recreate, pure --------------------------------------------------------------------


def test_recreate_deletes_every_pod_once_a_stamp_differs() -> None:
    group = GroupIntent("small", replicas=1, min_replicas=0, max_replicas=5)
    old = [replace(HEAD, template_hash="old"), host("w", 0, 0, group="small", stamp="old")]
    plan = plan_pods(intent(group, recreate=True, template_hash="new"), old)
    assert deleted(plan) == {(p.name, RECREATE) for p in old}
    assert not plan.create_head and plan.create_workers == {}
    # The replacements carry the new stamp: nothing more to do.
    fresh = [replace(p, template_hash="new") for p in old]
    assert plan_pods(intent(group, recreate=True, template_hash="new"), fresh).empty


def test_no_worker_is_created_while_the_head_is_being_replaced() -> None:
    group = GroupIntent("small", replicas=2, min_replicas=0, max_replicas=5)
    going = [replace(HEAD, terminating=True), host("w", 0, 0, group="small")]
    plan = plan_pods(intent(group, template_hash="new"), going)
    assert plan.empty
    # Once it is gone, the head and the workers are created in the same pass.
    plan = plan_pods(intent(group, template_hash="new"), going[1:])
    assert plan.create_head and plan.create_workers == {"small": 1}
    # With GCS fault tolerance workers outlive heads: nothing waits.
    plan = plan_pods(intent(group, template_hash="new", fault_tolerant=True), going)
    assert plan.create_workers == {"small": 1}


def test_without_recreate_or_without_a_stamp_pods_stay() -> None:
    group = GroupIntent("small", replicas=1, min_replicas=0, max_replicas=5)
    old = [replace(HEAD, template_hash="old"), host("w", 0, 0, group="small", stamp="old")]
    assert plan_pods(intent(group, template_hash="new"), old).delete == []
    unstamped = [replace(p, template_hash="") for p in old]
    assert plan_pods(intent(group, recreate=True, template_hash="new"), unstamped).delete == []


def test_the_template_hash_ignores_sizing_and_scheduling(manifests: Path) -> None:
    doc = load(manifests, SAMPLE, "RayCluster")
    base = pod_template_hash(parse_raycluster(doc))
    resized = copy.deepcopy(doc)
    group = resized["spec"]["workerGroupSpecs"][0]
    group.update(replicas=3, minReplicas=0, maxReplicas=9, scaleStrategy={"workersToDelete": ["x"]})
    group["template"]["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    resized["spec"]["upgradeStrategy"] = {"type": "Recreate"}
    assert pod_template_hash(parse_raycluster(resized)) == base
    changed = copy.deepcopy(doc)
    changed["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert pod_template_hash(parse_raycluster(changed)) != base


# --- builders --------------------------------------------------------------------------


def test_a_host_carries_kuberays_replica_labels_and_the_stamp(manifests: Path) -> None:
    doc = load(manifests, SAMPLE, "RayCluster")
    doc["spec"]["workerGroupSpecs"][0]["numOfHosts"] = 2
    cluster = parse_raycluster(doc)
    group = cluster.spec.worker_group_specs[0]
    pod = build_worker_pod(cluster, group, BuildContext(), place=ReplicaPlace(3, "g-abcde", 1))
    got = pod["metadata"]["labels"]
    assert got[labels.REPLICA_INDEX] == "3"
    assert (got[labels.REPLICA_NAME], got[labels.HOST_INDEX]) == ("g-abcde", "1")
    annotations = pod["metadata"]["annotations"]
    assert annotations[labels.POD_TEMPLATE_HASH] == pod_template_hash(cluster)
    parsed = view({**pod, "metadata": {**pod["metadata"], "uid": "u"}})
    assert (parsed.replica_index, parsed.replica_name, parsed.host_index) == (3, "g-abcde", 1)
    single = build_worker_pod(cluster, group, BuildContext(), place=ReplicaPlace(5))
    assert labels.REPLICA_NAME not in single["metadata"]["labels"]
    assert single["metadata"]["labels"][labels.REPLICA_INDEX] == "5"
    svc = build_headless_service(cluster)
    assert svc["metadata"]["name"] == labels.headless_service_name(cluster.metadata.name)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {
        labels.CLUSTER: cluster.metadata.name,
        labels.NODE_TYPE: "worker",
    }


def test_a_long_group_name_still_makes_a_label_value() -> None:
    assert len(labels.replica_name("g" * 63, "abcde")) == 63


# --- whole passes on the in-memory API server ------------------------------------------


def multihost(manifests: Path, replicas: int = 2, hosts: int = 4) -> dict[str, Any]:
    doc = load(manifests, SAMPLE, "RayCluster")
    group = doc["spec"]["workerGroupSpecs"][0]
    group.update(replicas=replicas, minReplicas=0, maxReplicas=10, numOfHosts=hosts)
    return doc


def slices_of(h: Harness, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in h.pods(name, "worker"):
        lbl = p["metadata"]["labels"]
        out.setdefault(lbl[labels.REPLICA_NAME], []).append(lbl[labels.HOST_INDEX])
    return {k: sorted(v) for k, v in out.items()}


async def test_a_pass_creates_whole_slices_and_the_headless_service(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = multihost(manifests)
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    await h.cluster_pass(name)
    assert sorted(slices_of(h, name).values()) == [["0", "1", "2", "3"]] * 2
    indices = {p["metadata"]["labels"][labels.REPLICA_INDEX] for p in h.pods(name, "worker")}
    assert indices == {"0", "1"}
    assert h.service(labels.headless_service_name(name)) is not None
    h.all_pods_ready(name)
    await h.cluster_pass(name)
    status = h.cluster(name)["status"]
    assert (status["state"], status["desiredWorkerReplicas"]) == ("ready", 8)


async def test_a_slice_cut_short_by_the_pass_budget_is_finished_next_pass(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    cap = raycluster.MAX_CREATES_PER_PASS
    doc = multihost(manifests, replicas=1, hosts=cap + 50)
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    await h.cluster_pass(name)
    assert len(h.pods(name, "worker")) == cap - 1
    await h.cluster_pass(name)
    (hosts,) = slices_of(h, name).values()
    assert len(hosts) == cap + 50  # the same slice, finished, nothing deleted
    assert h.kube.requests["delete"] == 0


async def test_recreate_replaces_every_pod_once_after_a_template_change(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, SAMPLE, "RayCluster")
    doc["spec"]["upgradeStrategy"] = {"type": "Recreate"}
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    await h.cluster_pass(name)
    h.all_pods_ready(name)
    await h.cluster_pass(name)
    before = {p["metadata"]["name"] for p in h.pods(name)}

    def new_image(rc: dict[str, Any]) -> None:
        rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = "ray:new"

    h.kube.mutate(RAYCLUSTERS, NS, name, new_image)
    await h.cluster_pass(name)
    assert h.pods(name) == []  # deleted, none created in the same pass
    await h.cluster_pass(name)
    after = h.pods(name)
    assert len(after) == len(before)
    (head,) = h.pods(name, "head")
    assert head["spec"]["containers"][0]["image"] == "ray:new"
    await h.events_posted()
    reasons = [e.reason for e in h.kube.events]
    assert reasons.count(raycluster.DELETED_FOR_RECREATE) == len(before)
    h.all_pods_ready(name)
    await h.cluster_pass(name)
    assert {p["metadata"]["name"] for p in h.pods(name)} == {p["metadata"]["name"] for p in after}
    assert not {p["metadata"]["name"] for p in after} & before
