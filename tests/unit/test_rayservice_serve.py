"""Table tests: what is submitted to which head and when, in-place group sizes,
the head's ray.io/serve label and the bookkeeping a restart relies on."""

from __future__ import annotations

from typing import Any

import pytest

from raykube.builders import labels
from raykube.decisions.rayservice import decide, submission
from raykube.decisions.rayservice_config import parse_serve_config
from raykube.decisions.rayservice_upgrade import group_sizes_patch
from raykube.decisions.rayservice_view import GroupSize, ServeSnapshot

from .rayservice_helpers import (
    DOWN,
    RUNNING,
    SERVE,
    apps,
    at,
    cluster,
    head,
    observe,
    service,
    with_status,
)

GOAL = parse_serve_config(SERVE).hash
EMPTY = ServeSnapshot(reachable=True, apps={}, proxy_healthy=False)


@pytest.mark.parametrize(
    ("kw", "snap", "head_state", "now", "rejected", "expected"),
    [
        ({"serve_hash": ""}, EMPTY, True, 0, None, "FirstSubmission"),
        ({"serve_hash": "older"}, RUNNING, True, 0, None, "ServeConfigChanged"),
        ({}, RUNNING, True, 0, None, None),  # already there: an operator restart sends nothing
        # The dashboard answers before the head's readiness probe first passes:
        # sent then, not 10 s later.
        ({"serve_hash": ""}, EMPTY, "Running", 0, None, "FirstSubmission"),
        ({"serve_hash": ""}, EMPTY, "Pending", 0, None, None),  # no Ray running there
        ({"serve_hash": ""}, DOWN, True, 0, None, None),  # dashboard not answering
        ({"serve_hash": "older"}, RUNNING, True, 0, GOAL, None),  # Ray refused this config here
        # The head restarted and lost Serve's state: zero apps -> resubmit, after a grace.
        ({"serve_submitted_at": at(0)}, EMPTY, True, 5, None, None),
        ({"serve_submitted_at": at(0)}, EMPTY, True, 10, None, "HeadLostApplications"),
        ({}, EMPTY, True, 0, None, "HeadLostApplications"),
    ],
)
def test_when_the_config_is_submitted(
    kw: dict[str, Any],
    snap: ServeSnapshot,
    head_state: str | bool,
    now: int,
    rejected: str | None,
    expected: str | None,
) -> None:
    rs = with_status(service(), active="rs-a")
    c = cluster("rs-a", **kw)
    obs = observe(
        rs,
        [c],
        serve={"rs-a": snap},
        heads={
            "rs-a": head(
                "rs-a",
                ready=head_state is True,
                phase="Pending" if head_state == "Pending" else "Running",
            )
        },
        now=at(now),
        rejected={"rs-a": rejected} if rejected else {},
    )
    assert submission(obs, c) == expected


def test_invalid_or_unset_config_is_never_submitted() -> None:
    for text in ("applications: [", None):
        rs = with_status(service(serveConfigV2=text), active="rs-a")
        c = cluster("rs-a", serve_hash="")
        assert submission(observe(rs, [c], serve={"rs-a": EMPTY}), c) is None


def test_serve_config_change_goes_to_the_running_cluster_in_place() -> None:
    rs = with_status(service(serveConfigV2=SERVE.replace("price: 3", "price: 4")), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a")]))
    assert [(c.name, why) for c, why in plan.submit] == [("rs-a", "ServeConfigChanged")]
    assert plan.clusters.create is None  # in place: no new cluster


def test_both_clusters_get_the_config_during_an_upgrade() -> None:
    rs = with_status(service(image="ray:2"), active="rs-a", pending="rs-p")
    clusters = [cluster("rs-a", config_hash="old"), cluster("rs-p", rs, serve_hash="")]
    plan = decide(observe(rs, clusters, serve={"rs-a": RUNNING, "rs-p": EMPTY}))
    assert [(c.name, why) for c, why in plan.submit] == [("rs-p", "FirstSubmission")]
    assert not plan.clusters.switch  # just submitted: not ready in the same pass


def test_no_config_goes_to_a_cluster_being_deleted() -> None:
    rs = with_status(service(image="ray:3"), active="rs-a", pending="rs-p")
    clusters = [cluster("rs-a", config_hash="old"), cluster("rs-p", config_hash="x", serve_hash="")]
    plan = decide(observe(rs, clusters, serve={"rs-a": RUNNING, "rs-p": EMPTY}))
    assert "rs-p" not in [c.name for c, _ in plan.submit]


def test_proven_config_and_last_good_config_are_recorded() -> None:
    rs = with_status(service(), active="rs-a")
    plan = decide(observe(rs, [cluster("rs-a", serve_healthy_hash="")]))
    assert [(c.name, n) for c, n in plan.notes] == [
        ("rs-a", {labels.SERVE_CONFIG_HEALTHY_HASH: GOAL})
    ]
    assert plan.last_good == SERVE
    again = decide(observe(rs, [cluster("rs-a")], last_good=SERVE))
    assert again.last_good is None and not again.notes


def test_failing_config_is_not_recorded_as_good() -> None:
    rs = with_status(service(), active="rs-a")
    plan = decide(
        observe(
            rs,
            [cluster("rs-a", serve_healthy_hash="")],
            serve={"rs-a": apps("DEPLOY_FAILED", "RUNNING")},
        )
    )
    assert plan.last_good is None and not plan.notes


@pytest.mark.parametrize(
    ("label", "proxy", "exclude", "expected"),
    [
        (False, True, None, True),
        (True, False, None, False),
        (True, True, None, None),
        (False, False, None, None),
        (True, True, True, False),  # excludeHeadPodFromServeSvc
    ],
)
def test_head_serve_label_follows_its_proxy(
    label: bool, proxy: bool, exclude: bool | None, expected: bool | None
) -> None:
    rs = with_status(service(excludeHeadPodFromServeSvc=exclude), active="rs-a")
    snap = apps("RUNNING", "RUNNING", proxy=proxy)
    plan = decide(
        observe(
            rs, [cluster("rs-a")], serve={"rs-a": snap}, heads={"rs-a": head("rs-a", serve=label)}
        )
    )
    got = [value for _, value in plan.serve_labels]
    assert got == ([] if expected is None else [expected])


# --- worker group sizes in place --------------------------------------------------------


def sized(autoscaling: bool = False, applied: dict[str, list[int]] | None = None, **g: int) -> Any:
    have = GroupSize("small", g.get("replicas", 1), g.get("min", 1), g.get("max", 5))
    record = applied if applied is not None else {"small": [1, 1, 5]}
    return cluster("rs-a", groups=(have,), autoscaling=autoscaling, applied_scaling=record)


@pytest.mark.parametrize(
    ("want", "c", "ops"),
    [
        ([1, 1, 5], sized(), None),
        # The user raised replicas in the RayService: copied.
        ([2, 1, 5], sized(), [("replicas", 2)]),
        # ... but never while the autoscaler owns replicas; bounds still follow.
        ([2, 0, 9], sized(autoscaling=True), [("minReplicas", 0), ("maxReplicas", 9)]),
        # The autoscaler moved replicas to 4; an unrelated bound change keeps its 4.
        ([1, 1, 8], sized(replicas=4), [("maxReplicas", 8)]),
        # Already equal on the cluster: only the record moves.
        ([3, 1, 5], sized(replicas=3), []),
    ],
)
def test_group_sizes_patch_only_what_changed(want: list[int], c: Any, ops: Any) -> None:
    got = group_sizes_patch({"small": want}, c)
    if ops is None:
        assert got is None
        return
    assert got is not None
    patch, record = got
    assert record == {"small": want}
    replaced = [
        (op["path"].rsplit("/", 1)[1], op["value"]) for op in patch if op["op"] == "replace"
    ]
    assert replaced == ops
    if ops:
        assert patch[0] == {
            "op": "test",
            "path": "/spec/workerGroupSpecs/0/groupName",
            "value": "small",
        }


def test_replicas_change_in_the_rayservice_reaches_the_cluster_without_upgrade() -> None:
    rs = service()
    doc = rs.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = 2
    rs = with_status(type(rs).model_validate(doc), active="rs-a")
    plan = decide(observe(rs, [sized()]))
    assert plan.clusters.create is None
    assert [c.name for c, _, _ in plan.scaling] == ["rs-a"]


# --- suspend of the cluster and its groups, in place -----------------------------------


def _suspending(cluster_suspend: bool | None, group_suspend: bool | None) -> Any:
    doc = service().model_dump(mode="json", by_alias=True, exclude_none=True)
    config = doc["spec"]["rayClusterConfig"]
    if cluster_suspend is not None:
        config["suspend"] = cluster_suspend
    if group_suspend is not None:
        config["workerGroupSpecs"][0]["suspend"] = group_suspend
    return with_status(type(service()).model_validate(doc), active="rs-a")


@pytest.mark.parametrize(
    ("spec", "have", "ops"),
    [
        ((None, None), (False, False), []),
        # Kueue admits the service: rayClusterConfig.suspend goes false, the cluster follows.
        ((False, None), (True, False), [("/spec/suspend", False)]),
        ((True, None), (False, False), [("/spec/suspend", True)]),
        ((None, True), (False, False), [("/spec/workerGroupSpecs/0/suspend", True)]),
        ((None, False), (False, True), [("/spec/workerGroupSpecs/0/suspend", False)]),
        ((True, True), (True, True), []),
    ],
)
def test_suspend_is_copied_in_place_never_rebuilding(
    spec: tuple[bool | None, bool | None], have: tuple[bool, bool], ops: list[Any]
) -> None:
    rs = _suspending(*spec)
    group = GroupSize("small", 1, 1, 5, suspend=have[1])
    c = cluster(
        "rs-a", rs, groups=(group,), suspended=have[0], applied_scaling={"small": [1, 1, 5]}
    )
    plan = decide(observe(rs, [c]))
    assert plan.clusters.create is None and not plan.clusters.delete
    got = [(c.name, op["path"], op["value"]) for c, patch in plan.suspension for op in patch]
    assert [(p, v) for _, p, v in got if not p.endswith("groupName")] == ops
    if any("workerGroupSpecs" in p for p, _ in ops):
        assert plan.suspension[0][1][0] == {
            "op": "test",
            "path": "/spec/workerGroupSpecs/0/groupName",
            "value": "small",
        }
