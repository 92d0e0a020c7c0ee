"""Table tests of the pod plan: every scaling rule of a RayCluster."""

from __future__ import annotations

import copy
from dataclasses import replace

import yaml

from e2e.paths import manifest
from raykube.decisions.pods import PodView, view
from raykube.decisions.scaling import ClusterIntent, GroupIntent, fault_tolerant, plan_pods
from raykube.models.raycluster import parse_raycluster


def pod(
    name: str,
    node_type: str = "worker",
    group: str = "small",
    *,
    ready: bool = True,
    created: str = "2026-01-01T00:00:00Z",
    terminating: bool = False,
    dead: bool = False,
) -> PodView:
    return PodView(
        name=name,
        uid=f"uid-{name}",
        namespace="ns",
        cluster="rc",
        node_type=node_type,
        group="headgroup" if node_type == "head" else group,
        phase="Running",
        ready=ready,
        terminating=terminating,
        created=created,
        dead=dead,
    )


HEAD = pod("rc-head-abcde", "head")


def group(**kw: object) -> GroupIntent:
    base: dict[str, object] = {
        "name": "small",
        "replicas": 2,
        "min_replicas": 0,
        "max_replicas": 10,
    }
    base.update(kw)
    return GroupIntent(**base)  # type: ignore[arg-type]


def intent(
    *groups: GroupIntent, autoscaling: bool = False, suspended: bool = False
) -> ClusterIntent:
    return ClusterIntent(groups=groups, autoscaling=autoscaling, suspended=suspended)


def test_empty_cluster_creates_head_and_workers() -> None:
    plan = plan_pods(intent(group(replicas=3)), [])
    assert plan.create_head
    assert plan.create_workers == {"small": 3}
    assert plan.delete == []


def test_replicas_are_clamped_and_multiplied_by_hosts() -> None:
    assert group(replicas=20, max_replicas=5).desired == 5
    assert group(replicas=0, min_replicas=2).desired == 2
    assert group(replicas=2, num_of_hosts=4).desired == 8
    assert group(replicas=2, suspended=True).desired == 0


def test_steady_state_is_empty_plan() -> None:
    plan = plan_pods(intent(group(replicas=2)), [HEAD, pod("w1"), pod("w2")])
    assert plan.empty


def test_scale_down_prefers_not_ready_then_newest() -> None:
    pods = [
        HEAD,
        pod("old", created="2026-01-01T00:00:00Z"),
        pod("new", created="2026-01-03T00:00:00Z"),
        pod("mid", created="2026-01-02T00:00:00Z"),
        pod("sick", created="2026-01-01T00:00:00Z", ready=False),
    ]
    plan = plan_pods(intent(group(replicas=2)), pods)
    assert [d.name for d in plan.delete] == ["sick", "new"]
    assert {d.reason for d in plan.delete} == {"ScaleDown"}


def test_workers_to_delete_deletes_exactly_those_and_refills() -> None:
    pods = [HEAD, pod("w1"), pod("w2"), pod("w3")]
    plan = plan_pods(intent(group(replicas=3, workers_to_delete=("w2",))), pods)
    assert [(d.name, d.reason) for d in plan.delete] == [("w2", "WorkersToDelete")]
    assert plan.create_workers == {"small": 1}


def test_autoscaler_scale_down_deletes_only_named_workers() -> None:
    pods = [HEAD, pod("w1"), pod("w2"), pod("w3")]
    # replicas lowered to 1 but only w3 named: w3 goes, nothing random.
    plan = plan_pods(intent(group(replicas=1, workers_to_delete=("w3",)), autoscaling=True), pods)
    assert [d.name for d in plan.delete] == ["w3"]
    assert plan.create_workers == {}


def test_autoscaling_never_deletes_at_random() -> None:
    plan = plan_pods(intent(group(replicas=0), autoscaling=True), [HEAD, pod("w1"), pod("w2")])
    assert plan.delete == []


def test_workers_to_delete_naming_unknown_pods_is_harmless() -> None:
    plan = plan_pods(intent(group(replicas=1, workers_to_delete=("gone",))), [HEAD, pod("w1")])
    assert plan.empty


def test_dead_head_is_deleted_before_recreating() -> None:
    dead_head = pod("rc-head-dead", "head", dead=True)
    plan = plan_pods(intent(group(replicas=0)), [dead_head])
    assert [(d.name, d.reason) for d in plan.delete] == [("rc-head-dead", "HeadPodDead")]
    assert not plan.create_head
    # Once it is terminating, a new head is created only after it is gone.
    terminating = pod("rc-head-dead", "head", terminating=True)
    assert not plan_pods(intent(group(replicas=0)), [terminating]).create_head
    assert plan_pods(intent(group(replicas=0)), []).create_head


def test_duplicate_heads_keep_the_oldest() -> None:
    a = pod("rc-head-a", "head", created="2026-01-01T00:00:00Z")
    b = pod("rc-head-b", "head", created="2026-01-02T00:00:00Z")
    plan = plan_pods(intent(), [b, a])
    assert [(d.name, d.reason) for d in plan.delete] == [("rc-head-b", "DuplicateHeadPod")]


def test_dead_worker_is_replaced() -> None:
    plan = plan_pods(intent(group(replicas=2)), [HEAD, pod("w1"), pod("w2", dead=True)])
    assert [(d.name, d.reason) for d in plan.delete] == [("w2", "WorkerPodDead")]
    assert plan.create_workers == {"small": 1}


def test_terminating_pods_are_not_counted_nor_deleted_again() -> None:
    pods = [HEAD, pod("w1"), pod("w2", terminating=True)]
    plan = plan_pods(intent(group(replicas=2)), pods)
    assert plan.create_workers == {"small": 1}
    assert plan.delete == []


def test_suspended_cluster_deletes_everything() -> None:
    pods = [HEAD, pod("w1"), pod("w2", terminating=True)]
    plan = plan_pods(intent(group(replicas=2), suspended=True), pods)
    assert sorted(d.name for d in plan.delete) == ["rc-head-abcde", "w1"]
    assert not plan.create_head
    assert plan.create_workers == {}


def test_suspended_group_deletes_its_pods_even_when_autoscaling() -> None:
    pods = [HEAD, pod("w1"), pod("g2", group="big")]
    plan = plan_pods(
        intent(group(replicas=1), group(name="big", replicas=1, suspended=True), autoscaling=True),
        pods,
    )
    assert [(d.name, d.reason) for d in plan.delete] == [("g2", "GroupSuspended")]


def test_pods_of_a_removed_group_are_deleted() -> None:
    plan = plan_pods(intent(group(replicas=1)), [HEAD, pod("w1"), pod("x1", group="gone")])
    assert [(d.name, d.reason) for d in plan.delete] == [("x1", "WorkerGroupRemoved")]


# --- a new head without GCS fault tolerance --------------------------------------------

NEW_HEAD = pod("rc-head-fghij", "head", created="2026-01-01T00:10:00Z")


def _worker(name: str, started: str, **kw: object) -> PodView:
    return replace(pod(name, **kw), ray_started=started)  # type: ignore[arg-type]


def test_workers_from_before_a_new_head_are_replaced_once_it_is_ready() -> None:
    old = _worker("w-old", "2026-01-01T00:00:05Z", ready=False)
    # Created and started in the head's first second: its own.
    fresh = _worker("w-new", "2026-01-01T00:10:00Z", created="2026-01-01T00:10:00Z")
    for autoscaling in (False, True):
        plan = plan_pods(intent(group(replicas=2), autoscaling=autoscaling), [NEW_HEAD, old, fresh])
        assert [(d.name, d.reason) for d in plan.delete] == [("w-old", "HeadReplaced")]
        assert plan.create_workers == {"small": 1}


def test_a_worker_pod_older_than_the_head_that_started_in_its_first_second_is_replaced() -> None:
    """Times have one-second precision: a worker pod created before the new head
    whose Ray started in the head's creation second started under the old head
    (seen on kwok, where pods start at once: the worker was never replaced)."""
    older = _worker("w-old", "2026-01-01T00:10:00Z", created="2026-01-01T00:09:59Z")
    plan = plan_pods(intent(group(replicas=1)), [NEW_HEAD, older])
    assert [(d.name, d.reason) for d in plan.delete] == [("w-old", "HeadReplaced")]


def test_no_worker_is_replaced_while_the_new_head_is_not_ready() -> None:
    starting = replace(NEW_HEAD, ready=False)
    old = _worker("w-old", "2026-01-01T00:00:05Z")
    assert plan_pods(intent(group(replicas=1)), [starting, old]).delete == []


def test_with_gcs_fault_tolerance_workers_outlive_the_head() -> None:
    old = _worker("w-old", "2026-01-01T00:00:05Z")
    ft = ClusterIntent(groups=(group(replicas=1),), fault_tolerant=True)
    assert plan_pods(ft, [NEW_HEAD, old]).delete == []


def test_fault_tolerance_is_recognised_however_it_is_asked_for() -> None:
    docs = yaml.safe_load_all(manifest("ray-cluster.sample.yaml").read_text())
    base = next(d for d in docs if d and d["kind"] == "RayCluster")
    assert not fault_tolerant(parse_raycluster(base))
    with_options = copy.deepcopy(base)
    with_options["spec"]["gcsFaultToleranceOptions"] = {"redisAddress": "redis:6379"}
    with_annotation = copy.deepcopy(base)
    with_annotation["metadata"]["annotations"] = {"ray.io/ft-enabled": "true"}
    by_hand = copy.deepcopy(base)
    head = by_hand["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["env"] = [{"name": "RAY_REDIS_ADDRESS", "value": "redis:6379"}]
    for doc in (with_options, with_annotation, by_hand):
        assert fault_tolerant(parse_raycluster(doc))


def test_a_worker_backing_off_after_failing_to_reach_the_starting_head_is_replaced() -> None:
    head = replace(NEW_HEAD, ready_since="2026-01-01T00:10:40Z")
    # Restarted at 00:10:20, found no GCS, waits in back-off: replaced now.
    waiting = _worker("w-wait", "2026-01-01T00:10:20Z", ready=False)
    waiting = replace(waiting, backing_off=True)
    # Started at creation, still running its first `ray start`: left alone.
    first = _worker("w-first", "2026-01-01T00:10:20Z", ready=False)
    # Backing off after a run that began once the head was Ready: its own failure.
    own = replace(_worker("w-own", "2026-01-01T00:11:00Z", ready=False), backing_off=True)
    plan = plan_pods(intent(group(replicas=3)), [head, waiting, first, own])
    assert [(d.name, d.reason) for d in plan.delete] == [("w-wait", "HeadReplaced")]


def test_pod_view_reads_the_ray_containers_runs() -> None:
    body = {
        "metadata": {"name": "w", "labels": {"ray.io/node-type": "worker"}},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}
            ],
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"startedAt": "2026-01-01T00:00:30Z"}},
                }
            ],
        },
    }
    got = view(body)
    assert (got.ray_started, got.backing_off, got.ready_since) == (
        "2026-01-01T00:00:30Z",
        True,
        "2026-01-01T00:01:00Z",
    )
    body["status"]["containerStatuses"] = [  # type: ignore[index]
        {"state": {"running": {"startedAt": "2026-01-01T00:02:00Z"}}}
    ]
    assert (view(body).ray_started, view(body).backing_off) == ("2026-01-01T00:02:00Z", False)
