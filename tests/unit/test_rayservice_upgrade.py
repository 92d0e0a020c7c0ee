"""Table tests: every cluster transition of a RayService (build, promote, replace,
keep, recreate, delete), through the pure ``decide``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from raykube.builders import labels
from raykube.decisions.rayservice import decide, initializing_timeout
from raykube.decisions.rayservice_upgrade import (
    CreateReason,
    UpgradeState,
    assign_roles,
    cluster_config_hash,
)
from raykube.decisions.rayservice_view import ServeSnapshot
from raykube.models.rayservice import parse_rayservice

from .rayservice_helpers import (
    DOWN,
    RUNNING,
    T0,
    apps,
    at,
    cluster,
    goal_hash,
    head,
    observe,
    service,
    with_status,
)

OLD = "old-config-hash"


def names(pairs: Sequence[tuple[Any, str]]) -> list[tuple[str, str]]:
    return [(c.name, why) for c, why in pairs]


# --- the hash rules of the guide ------------------------------------------------------


def _spec(**changes: Any) -> Any:
    rs = service()
    spec = rs.spec.ray_cluster_config.model_dump(mode="json", by_alias=True, exclude_none=True)
    group = spec["workerGroupSpecs"][0]
    for path, value in changes.items():
        target = {
            "group": group,
            "spec": spec,
            "pod": group["template"]["spec"],
            "head": spec["headGroupSpec"]["template"]["spec"],
        }[path.split(".")[0]]
        target[path.split(".")[1]] = value
    return type(rs.spec.ray_cluster_config).model_validate(spec)


BASE_HASH = cluster_config_hash(service().spec.ray_cluster_config)


@pytest.mark.parametrize(
    "change",
    [
        {"group.replicas": 3},
        {"group.minReplicas": 0},
        {"group.maxReplicas": 9},
        {"group.scaleStrategy": {"workersToDelete": ["rs-abc-small-worker-x"]}},
        {"group.suspend": True},
        {"pod.tolerations": [{"key": "gpu", "operator": "Exists"}]},
        {"pod.schedulingGates": [{"name": "wait"}]},
        {"head.tolerations": [{"key": "gpu", "operator": "Exists"}]},
        {"spec.upgradeStrategy": {"type": "Recreate"}},
        {"spec.suspend": True},
    ],
)
def test_fields_that_update_in_place_leave_the_hash_alone(change: dict[str, Any]) -> None:
    assert cluster_config_hash(_spec(**change)) == BASE_HASH


@pytest.mark.parametrize(
    "change",
    [
        {"spec.rayVersion": "2.100.0"},
        {"group.rayStartParams": {"num-cpus": "2"}},
        {"pod.containers": [{"name": "ray-worker", "image": "ray:2"}]},
        {"group.groupName": "big"},
        {"spec.enableInTreeAutoscaling": True},
    ],
)
def test_other_fields_change_the_hash(change: dict[str, Any]) -> None:
    assert cluster_config_hash(_spec(**change)) != BASE_HASH


# --- roles ----------------------------------------------------------------------------


def test_roles_follow_the_status_and_adopt_an_unrecorded_goal_cluster() -> None:
    a, p, x = cluster("rs-a", config_hash=OLD), cluster("rs-p"), cluster("rs-x", config_hash=OLD)
    roles = assign_roles("rs-a", "rs-p", [a, p, x], goal_hash(service()))
    assert (roles.active, roles.pending, roles.stale) == (a, p, (x,))
    # Created just before a crash, never written to the status: adopted as pending.
    roles = assign_roles("rs-a", "", [a, p.with_(created=at(5))], goal_hash(service()))
    assert roles.pending is not None and roles.pending.name == "rs-p"
    # An older cluster with the goal hash served before (a replaced unhealthy one):
    # never adopted.
    old = cluster("rs-old", created=T0 - timedelta(seconds=5))
    assert assign_roles("rs-a", "", [cluster("rs-a"), old], goal_hash(service())).pending is None
    # One already scheduled for deletion is never adopted.
    q = cluster("rs-q", delete_after=at(60), created=at(5))
    assert assign_roles("rs-a", "", [a, q], goal_hash(service())).pending is None
    # A terminating cluster has no role at all.
    gone = cluster("rs-a", terminating=True)
    assert assign_roles("rs-a", "", [gone], "h").active is None


# --- the first cluster ----------------------------------------------------------------


def test_first_reconcile_builds_the_first_cluster() -> None:
    plan = decide(observe(service(), []))
    assert plan.clusters.create is CreateReason.INITIAL
    assert plan.clusters.state is UpgradeState.INITIALIZING
    assert not plan.clusters.switch


@pytest.mark.parametrize(
    ("heads_ready", "snap", "serve_hash_ok", "switch"),
    [
        (False, RUNNING, True, False),  # head not ready
        (True, DOWN, True, False),  # dashboard not answering
        (True, apps("RUNNING", "DEPLOYING"), True, False),  # one app still deploying
        (True, RUNNING, False, False),  # RUNNING, but an older config
        (True, RUNNING, True, True),  # everything RUNNING: promote
    ],
)
def test_first_cluster_is_promoted_only_when_every_app_runs(
    heads_ready: bool, snap: ServeSnapshot, serve_hash_ok: bool, switch: bool
) -> None:
    rs = with_status(service(), pending="rs-p")
    p = cluster("rs-p", serve_hash=None if serve_hash_ok else "older")
    if serve_hash_ok:
        p = p.with_(serve_hash=cluster("x").serve_hash)
    obs = observe(rs, [p], serve={"rs-p": snap}, heads={"rs-p": head("rs-p", ready=heads_ready)})
    plan = decide(obs)
    assert plan.clusters.switch is switch
    assert plan.clusters.create is None and not plan.clusters.delete
    assert plan.clusters.state is (UpgradeState.STEADY if switch else UpgradeState.INITIALIZING)


def test_spec_change_while_initializing_replaces_the_pending_cluster() -> None:
    rs = with_status(service(), pending="rs-p")
    plan = decide(observe(rs, [cluster("rs-p", config_hash=OLD)]))
    assert names(plan.clusters.delete) == [("rs-p", "ClusterConfigChanged")]
    assert plan.clusters.create is CreateReason.INITIAL


# --- NewCluster upgrades ------------------------------------------------------------------


def test_steady_service_does_nothing() -> None:
    rs = with_status(service(), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a")]))
    assert plan.clusters.state is UpgradeState.STEADY
    assert plan.clusters.create is None and not plan.clusters.delete and not plan.clusters.switch
    assert not plan.submit and not plan.scaling and not plan.serve_labels


def test_cluster_config_change_builds_a_pending_cluster() -> None:
    rs = with_status(service(image="ray:2"), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a", config_hash=OLD)]))
    assert plan.clusters.create is CreateReason.CONFIG_CHANGED
    assert plan.clusters.state is UpgradeState.IN_PROGRESS


@pytest.mark.parametrize(
    ("pending_snap", "state", "switch"),
    [
        (apps("DEPLOYING", "RUNNING"), UpgradeState.IN_PROGRESS, False),
        (apps("DEPLOY_FAILED", "RUNNING"), UpgradeState.IN_PROGRESS, False),
        (RUNNING, UpgradeState.STEADY, True),
    ],
)
def test_pending_cluster_is_promoted_when_ready(
    pending_snap: ServeSnapshot, state: UpgradeState, switch: bool
) -> None:
    rs = with_status(service(), active="rs-a", pending="rs-p")
    obs = observe(
        rs,
        [cluster("rs-a", config_hash=OLD), cluster("rs-p")],
        serve={"rs-a": RUNNING, "rs-p": pending_snap},
    )
    plan = decide(obs)
    assert (plan.clusters.state, plan.clusters.switch) == (state, switch)
    # Never a deletion of the serving cluster here: it goes only after the switch,
    # and its deletion time is recorded with the switch.
    assert not plan.clusters.delete
    assert [(c.name, t) for c, t in plan.clusters.schedule] == (
        [("rs-a", at(60))] if switch else []
    )


def test_spec_changed_again_mid_upgrade_replaces_the_pending_cluster() -> None:
    rs = with_status(service(image="ray:3"), active="rs-a", pending="rs-p")
    plan = decide(
        observe(rs, [cluster("rs-a", config_hash=OLD), cluster("rs-p", config_hash="image-2")])
    )
    assert names(plan.clusters.delete) == [("rs-p", "ClusterConfigChanged")]
    assert plan.clusters.create is CreateReason.CONFIG_CHANGED


def test_spec_reverted_mid_upgrade_drops_the_pending_cluster() -> None:
    rs = with_status(service(), active="rs-a", pending="rs-p")
    plan = decide(observe(rs, [cluster("rs-a"), cluster("rs-p", config_hash="image-2")]))
    assert names(plan.clusters.delete) == [("rs-p", "ClusterConfigChanged")]
    assert plan.clusters.create is None and plan.clusters.state is UpgradeState.STEADY


def test_upgrade_past_its_deadline_stops_and_retires_the_pending_cluster() -> None:
    rs = with_status(service(), active="rs-a", pending="rs-p")
    clusters = [cluster("rs-a", config_hash=OLD), cluster("rs-p", created=T0)]
    serve = {"rs-a": RUNNING, "rs-p": apps("DEPLOY_FAILED", "RUNNING")}
    before = decide(observe(rs, clusters, serve=serve, now=at(1799)))
    assert before.clusters.state is UpgradeState.IN_PROGRESS
    after = decide(observe(rs, clusters, serve=serve, now=at(1800)))
    assert after.clusters.state is UpgradeState.TIMED_OUT
    assert not after.clusters.delete and after.clusters.create is None and not after.clusters.switch
    # It holds a second cluster's resources: it goes after the deletion delay.
    assert [(c.name, t) for c, t in after.clusters.schedule] == [("rs-p", at(1860))]
    clusters[1] = cluster("rs-p", created=T0, delete_after=at(1860))
    gone = decide(observe(rs, clusters, serve=serve, now=at(1860)))
    assert names(gone.clusters.delete) == [("rs-p", "DeletionDelayElapsed")]
    assert gone.clusters.create is None


def test_a_timed_out_pending_cluster_can_be_kept_for_inspection() -> None:
    doc = with_status(service(), active="rs-a", pending="rs-p").model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    doc["metadata"]["annotations"] = {labels.KEEP_TIMED_OUT_CLUSTER: "true"}
    rs = parse_rayservice(doc)
    clusters = [cluster("rs-a", config_hash=OLD), cluster("rs-p", created=T0)]
    plan = decide(observe(rs, clusters, now=at(3600), serve={"rs-p": DOWN, "rs-a": RUNNING}))
    assert plan.clusters.state is UpgradeState.TIMED_OUT
    assert not plan.clusters.schedule and not plan.clusters.delete


def test_after_an_upgrade_timed_out_nothing_is_built_until_the_spec_changes() -> None:
    doc = with_status(service(), active="rs-a").model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    doc["metadata"]["generation"] = 4
    doc["status"]["conditions"] = [
        {
            "type": "UpgradeInProgress",
            "status": "False",
            "reason": "UpgradeTimedOut",
            "message": "",
            "observedGeneration": 4,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
    plan = decide(observe(parse_rayservice(doc), [cluster("rs-a", config_hash=OLD)]))
    assert plan.clusters.create is None and plan.clusters.state is UpgradeState.TIMED_OUT
    doc["metadata"]["generation"] = 5  # the spec changed
    plan = decide(observe(parse_rayservice(doc), [cluster("rs-a", config_hash=OLD)]))
    assert plan.clusters.create is CreateReason.CONFIG_CHANGED


def test_a_pending_cluster_whose_head_died_is_never_promoted() -> None:
    rs = with_status(service(), active="rs-a", pending="rs-p")
    clusters = [cluster("rs-a", config_hash=OLD), cluster("rs-p")]
    dead = {"rs-a": head("rs-a"), "rs-p": head("rs-p", ready=False)}
    plan = decide(observe(rs, clusters, heads=dead))
    assert not plan.clusters.switch and plan.clusters.state is UpgradeState.IN_PROGRESS


@pytest.mark.parametrize(
    "images",
    [["ray:2", "ray:1", "ray:2"], ["ray:2", "ray:3"], ["ray:2", "ray:1"]],
    ids=["A-B-A-B", "A-B-C", "A-B-A"],
)
def test_spec_changes_mid_upgrade_converge_to_at_most_one_pending_cluster(
    images: list[str],
) -> None:
    """Each change is one pass over what the previous left: at most one pending
    cluster is ever alive, and a revert to the serving spec builds nothing."""
    active = cluster("rs-a")  # runs ray:1
    pending = None
    for n, image in enumerate(images):
        rs = with_status(
            service(image=image), active="rs-a", pending=pending.name if pending else ""
        )
        live = [active] + ([pending] if pending else [])
        plan = decide(observe(rs, live, serve={"rs-a": RUNNING}))
        deleted = {c.name for c, _ in plan.clusters.delete}
        survivors = [c for c in live if c.name not in deleted and c.name != "rs-a"]
        if plan.clusters.create is not None:
            survivors.append(cluster(f"rs-p{n}", rs, created=at(n)))
        assert len(survivors) <= 1
        pending = survivors[0] if survivors else None
        if image == "ray:1":
            assert pending is None and plan.clusters.create is None
    assert (pending is None) == (images[-1] == "ray:1")


def test_deadline_is_settable_and_zero_means_none() -> None:
    clusters = [cluster("rs-a", config_hash=OLD), cluster("rs-p")]
    serve = {"rs-a": RUNNING, "rs-p": apps("DEPLOYING")}
    short = with_status(service(upgradeStrategy={"timeoutSeconds": 60}), "rs-a", "rs-p")
    assert decide(observe(short, clusters, serve=serve, now=at(61))).clusters.state is (
        UpgradeState.TIMED_OUT
    )
    never = with_status(service(upgradeStrategy={"timeoutSeconds": 0}), "rs-a", "rs-p")
    assert decide(observe(never, clusters, serve=serve, now=at(10**6))).clusters.state is (
        UpgradeState.IN_PROGRESS
    )


def test_timed_out_pending_cluster_is_replaced_once_the_spec_changes() -> None:
    rs = with_status(service(image="ray:3"), active="rs-a", pending="rs-p")
    clusters = [cluster("rs-a", config_hash=OLD), cluster("rs-p", config_hash="image-2")]
    plan = decide(observe(rs, clusters, now=at(7200)))
    assert names(plan.clusters.delete) == [("rs-p", "ClusterConfigChanged")]
    assert plan.clusters.create is CreateReason.CONFIG_CHANGED


# --- old clusters ---------------------------------------------------------------------------


def test_old_cluster_gets_its_deletion_time_then_is_deleted() -> None:
    rs = with_status(service(rayClusterDeletionDelaySeconds=30), active="rs-b")
    old = cluster("rs-a", config_hash=OLD)
    plan = decide(observe(rs, [cluster("rs-b"), old]))
    assert [(c.name, t) for c, t in plan.clusters.schedule] == [("rs-a", at(30))]
    assert not plan.clusters.delete
    waiting = old.with_(delete_after=at(30))
    assert not decide(observe(rs, [cluster("rs-b"), waiting], now=at(29))).clusters.delete
    due = decide(observe(rs, [cluster("rs-b"), waiting], now=at(30)))
    assert names(due.clusters.delete) == [("rs-a", "DeletionDelayElapsed")]


def test_serving_cluster_never_keeps_a_deletion_time() -> None:
    rs = with_status(service(), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a", delete_after=at(10))], now=at(20)))
    assert [c.name for c in plan.clusters.unschedule] == ["rs-a"]
    assert not plan.clusters.delete


def test_serving_cluster_deleted_by_hand_is_rebuilt() -> None:
    rs = with_status(service(), active="rs-a")
    plan = decide(observe(rs, [], traffic="rs-a", active_gone=True))
    assert plan.clusters.create is CreateReason.ACTIVE_MISSING


# --- None and Recreate ------------------------------------------------------------------------


def test_none_strategy_never_builds_a_cluster_and_says_so() -> None:
    rs = with_status(service(image="ray:2", upgradeStrategy={"type": "None"}), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a", config_hash=OLD)]))
    assert plan.clusters.create is None and plan.clusters.state is UpgradeState.DISABLED
    leftover = with_status(rs, active="rs-a", pending="rs-p")
    plan = decide(observe(leftover, [cluster("rs-a", config_hash=OLD), cluster("rs-p")]))
    assert names(plan.clusters.delete) == [("rs-p", "UpgradeStrategyNone")]


def test_recreate_deletes_first_then_builds_once_the_old_pods_are_gone() -> None:
    spec = {"upgradeStrategy": {"type": "Recreate"}}
    rs = with_status(service(image="ray:2", **spec), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a", config_hash=OLD)]))
    assert names(plan.clusters.delete) == [("rs-a", "Recreate")]
    assert plan.clusters.create is None and plan.clusters.state is UpgradeState.RECREATING
    dying = cluster("rs-a", config_hash=OLD, terminating=True)
    plan = decide(observe(rs, [dying], traffic="rs-a", active_gone=True, lingering=True))
    assert plan.clusters.create is None and plan.clusters.state is UpgradeState.RECREATING
    plan = decide(observe(rs, [], traffic="rs-a", active_gone=True))
    assert plan.clusters.create is CreateReason.ACTIVE_MISSING
    assert plan.clusters.state is UpgradeState.RECREATING


def test_recreate_without_a_change_keeps_the_cluster() -> None:
    rs = with_status(service(upgradeStrategy={"type": "Recreate"}), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a")]))
    assert not plan.clusters.delete and plan.clusters.state is UpgradeState.STEADY


def test_deletion_delay_is_measured_from_the_time_recorded_not_from_now() -> None:
    rs = with_status(service(), active="rs-b")
    old = cluster("rs-a", config_hash=OLD, delete_after=T0 + timedelta(seconds=60))
    # A restarted operator sees the same recorded time: no new timer starts.
    assert not decide(observe(rs, [cluster("rs-b"), old], now=at(59))).clusters.schedule


# --- suspend ---------------------------------------------------------------------------


def test_suspend_deletes_every_cluster_at_once_and_does_nothing_else() -> None:
    rs = with_status(service(suspend=True, image="ray:2"), active="rs-a", pending="rs-b")
    old = cluster("rs-c", config_hash=OLD, delete_after=at(60))
    clusters = [cluster("rs-a", config_hash=OLD), cluster("rs-b", serve_hash="older"), old]
    plan = decide(observe(rs, clusters, heads={"rs-a": head("rs-a", serve=False)}))
    assert sorted(names(plan.clusters.delete)) == [
        ("rs-a", "Suspended"),
        ("rs-b", "Suspended"),
        ("rs-c", "Suspended"),
    ]
    assert plan.clusters.state is UpgradeState.SUSPENDED
    assert plan.clusters.create is None and not plan.clusters.switch
    assert not (plan.submit or plan.scaling or plan.serve_labels or plan.notes)
    assert plan.last_good is None and plan.replacements is None


def test_suspended_with_nothing_left_creates_nothing() -> None:
    rs = service(suspend=True)
    dying = cluster("rs-a", terminating=True)
    plan = decide(observe(rs, [dying]))
    assert not plan.clusters.delete and plan.clusters.create is None
    assert plan.clusters.state is UpgradeState.SUSPENDED


def test_resumed_service_starts_afresh() -> None:
    # Suspension left no status names and no serve Service: a first cluster.
    plan = decide(observe(service(suspend=False), []))
    assert plan.clusters.create is CreateReason.INITIAL
    assert plan.clusters.state is UpgradeState.INITIALIZING


# --- ray.io/initializing-timeout --------------------------------------------------------


def _timing_out(
    timeout: str = "5m", generation: int = 1, ready_reason: str = "", pending: str = "rs-a"
) -> Any:
    doc = service().model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["metadata"]["annotations"] = {"ray.io/initializing-timeout": timeout}
    doc["metadata"]["generation"] = generation
    status: dict[str, Any] = {"pendingServiceStatus": {"rayClusterName": pending}}
    if ready_reason:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "False",
                "reason": ready_reason,
                "observedGeneration": 1,
                "lastTransitionTime": "2026-01-01T12:05:00Z",
            }
        ]
    doc["status"] = status
    return parse_rayservice(doc)


def test_first_cluster_waits_until_the_initializing_timeout() -> None:
    rs = _timing_out("5m")
    plan = decide(observe(rs, [cluster("rs-a")], now=at(299), serve={"rs-a": DOWN}))
    assert plan.clusters.state is UpgradeState.INITIALIZING and not plan.clusters.schedule


def test_first_cluster_not_serving_by_the_timeout_is_given_up() -> None:
    rs = _timing_out("300")
    plan = decide(observe(rs, [cluster("rs-a")], now=at(300), serve={"rs-a": DOWN}))
    assert plan.clusters.state is UpgradeState.INITIALIZING_TIMED_OUT
    # Kept for inspection for the deletion delay (default 60 s), then deleted.
    assert [(c.name, when) for c, when in plan.clusters.schedule] == [("rs-a", at(360))]
    assert plan.clusters.create is None and not plan.clusters.delete and not plan.submit


def test_after_giving_up_nothing_is_built_until_the_spec_changes() -> None:
    leftover = cluster("rs-a", delete_after=at(360))
    # The give-up pass dropped rs-a from the status (and a lost write did not).
    for named in ("", "rs-a"):
        rs = _timing_out("300", ready_reason="InitializingTimeout", pending=named)
        plan = decide(observe(rs, [leftover], now=at(330), serve={"rs-a": DOWN}))
        assert plan.clusters.state is UpgradeState.INITIALIZING_TIMED_OUT
        assert plan.clusters.create is None and not plan.submit and not plan.clusters.delete
        plan = decide(observe(rs, [leftover], now=at(360), serve={"rs-a": DOWN}))
        assert names(plan.clusters.delete) == [("rs-a", "DeletionDelayElapsed")]
        assert plan.clusters.create is None
    # A new generation (the user changed the spec) starts again with a new cluster.
    edited = _timing_out("300", generation=2, ready_reason="InitializingTimeout", pending="")
    plan = decide(observe(edited, [leftover], now=at(340), serve={"rs-a": DOWN}))
    assert plan.clusters.create is CreateReason.INITIAL


def test_initializing_timeout_does_not_touch_a_serving_service() -> None:
    rs = with_status(_timing_out("1s"), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a")], now=at(3600)))
    assert plan.clusters.state is UpgradeState.STEADY and not plan.clusters.schedule


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("1800", 1800.0), ("90s", 90.0)],
)
def test_initializing_timeout_is_read_as_kuberay_reads_it(text: str, seconds: float) -> None:
    assert initializing_timeout(_timing_out(text)) == (seconds, "")


@pytest.mark.parametrize("text", ["0", "-5s", "soon", "5x", "1h 2m", ""])
def test_an_unusable_initializing_timeout_is_named_and_ignored(text: str) -> None:
    seconds, problem = initializing_timeout(_timing_out(text))
    assert seconds is None and "ray.io/initializing-timeout" in problem
