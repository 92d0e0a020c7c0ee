"""NewClusterWithIncrementalUpgrade's steps (pure): capacity and traffic move
one change per pass, traffic never faster than intervalSeconds, monotonic,
never above a cluster's capacity, the two capacities within 100 + maxSurge;
a reverted spec moves traffic back the same way; endpoints approximate the
split by whole pods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from raykube.builders import labels
from raykube.decisions.pods import PodView
from raykube.decisions.rayservice import Observed, Plan, decide
from raykube.decisions.rayservice_incremental import (
    Share,
    Step,
    StepInputs,
    endpoints,
    plan_step,
)
from raykube.decisions.rayservice_upgrade import UpgradeState
from raykube.models.rayservice import ClusterUpgradeOptions

from . import rayservice_helpers as h

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEADY, EMPTY = Share(100, 100), Share(0, 0)


def _options(surge: int = 100, step: int = 10, interval: int = 30) -> ClusterUpgradeOptions:
    return ClusterUpgradeOptions.model_validate(
        {"maxSurgePercent": surge, "stepSizePercent": step, "intervalSeconds": interval}
    )


def _run(
    options: ClusterUpgradeOptions,
    active: Share = STEADY,
    pending: Share = EMPTY,
    forward: bool = True,
    passes: int = 500,
    every: float = 2.0,
) -> tuple[list[tuple[Share, Share, datetime]], Step]:
    """Drive the plan pass after pass (one every ``every`` seconds) until it
    promotes or settles; each state as it was after a pass."""
    now, migrated = T0, None
    seen = [(active, pending, now)]
    step = Step(active, pending)
    for _ in range(passes):
        inp = StepInputs(options, active, pending, migrated, now, forward, pending_serving=True)
        step = plan_step(inp)
        if step.traffic_moved(inp):
            migrated = now
        active, pending = step.active, step.pending
        seen.append((active, pending, now))
        if step.promote or (not forward and active.traffic == 100):
            break
        now += timedelta(seconds=every)
    return seen, step


@pytest.mark.parametrize("surge", [100, 50, 25, 30, 1])
@pytest.mark.parametrize("size", [10, 25, 100, 7])
def test_forward_reaches_promotion_within_every_rule(surge: int, size: int) -> None:
    options = _options(surge, size, interval=30)
    seen, last = _run(options, passes=5000)
    assert last.promote
    assert last.pending == Share(100, 100) and last.active == Share(0, 0)
    moves = []
    for (a0, p0, _), (a, p, when) in pairwise(seen):
        assert a.traffic + p.traffic == 100
        assert p.traffic <= p.capacity and a.traffic <= a.capacity  # traffic within capacity
        assert a.capacity + p.capacity <= 100 + surge  # the surge bound
        assert p.traffic >= p0.traffic and p.capacity >= p0.capacity  # monotonic
        assert a.capacity <= a0.capacity
        assert p.traffic - p0.traffic <= size
        changed = (
            (a.capacity != a0.capacity) + (p.capacity != p0.capacity) + (p.traffic != p0.traffic)
        )
        assert changed <= 1  # one change per pass
        if p.traffic != p0.traffic:
            moves.append(when)
    assert all(b - a >= timedelta(seconds=30) for a, b in pairwise(moves))


def test_surge_25_never_holds_more_than_125_percent() -> None:
    seen, last = _run(_options(25, 10, 1))
    assert last.promote
    assert max(a.capacity + p.capacity for a, p, _ in seen) == 125


def test_first_step_raises_pending_capacity_then_traffic_follows() -> None:
    inp = StepInputs(_options(25, 10, 30), Share(100, 100), Share(0, 0), None, T0)
    step = plan_step(inp)
    assert step.pending == Share(25, 0) and step.active == Share(100, 100)
    # Traffic waits for the new cluster to serve every application.
    inp = StepInputs(_options(25, 10, 30), step.active, step.pending, None, T0)
    waiting = plan_step(inp)
    assert waiting.pending == Share(25, 0) and "serve every application" in waiting.waiting
    serving = plan_step(
        StepInputs(_options(25, 10, 30), step.active, step.pending, None, T0, pending_serving=True)
    )
    assert serving.pending == Share(25, 10) and serving.active == Share(100, 90)


def test_traffic_never_moves_faster_than_the_interval() -> None:
    options = _options(100, 10, 30)
    last = T0
    inp = StepInputs(
        options,
        Share(100, 80),
        Share(100, 20),
        last,
        T0 + timedelta(seconds=29),
        pending_serving=True,
    )
    step = plan_step(inp)
    assert step.pending.traffic == 20
    assert step.next_at == T0 + timedelta(seconds=30)
    assert "next traffic step at 2026-01-01T00:00:30Z" in step.waiting
    later = StepInputs(
        options,
        Share(100, 80),
        Share(100, 20),
        last,
        T0 + timedelta(seconds=30),
        pending_serving=True,
    )
    assert plan_step(later).pending.traffic == 30


def test_promotion_waits_for_the_pending_cluster_to_serve() -> None:
    inp = StepInputs(_options(), Share(0, 0), Share(100, 100), T0, T0)
    assert not plan_step(inp).promote
    inp = StepInputs(_options(), Share(0, 0), Share(100, 100), T0, T0, pending_serving=True)
    assert plan_step(inp).promote


def test_unknown_old_config_stops_at_the_surge_bound() -> None:
    inp = StepInputs(
        _options(25, 10, 30),
        Share(100, 75),
        Share(25, 25),
        T0,
        T0,
        pending_serving=True,
        active_adjustable=False,
    )
    step = plan_step(inp)
    assert step.active.capacity + step.pending.capacity <= 125
    assert step.pending == Share(25, 25) and "cannot be lowered" in step.waiting


def test_a_reverted_spec_moves_traffic_back_step_by_step() -> None:
    options = _options(25, 10, 30)
    seen, last = _run(options, active=Share(50, 50), pending=Share(75, 50), forward=False)
    assert last.active == Share(100, 100) and last.pending.traffic == 0
    moves = []
    for (a0, _, _), (a, p, when) in pairwise(seen):
        assert a.traffic + p.traffic == 100
        assert a.traffic <= a.capacity and p.traffic <= p.capacity
        assert a.capacity + p.capacity <= 125
        assert a.traffic >= a0.traffic  # only back, never forward again
        assert a.traffic - a0.traffic <= 10
        if a.traffic != a0.traffic:
            moves.append(when)
    assert len(moves) >= 5  # 50 -> 100 in steps of at most 10
    assert all(b - a >= timedelta(seconds=30) for a, b in pairwise(moves))


def _pod(name: str) -> PodView:
    return PodView(
        name, "u", "ns", "c", "worker", "g", "Running", True, False, "", serve_label=True
    )


@pytest.mark.parametrize(
    ("weight", "n_pending", "n_active", "want"),
    [
        (0, 4, 4, (0, 4)),
        (100, 4, 4, (4, 0)),
        (50, 4, 4, (4, 4)),
        (25, 4, 4, (1, 3)),
        (10, 2, 9, (1, 9)),
        (10, 4, 2, (1, 2)),  # as near as whole pods allow: 33%
        (30, 0, 3, (0, 3)),  # nothing of the new cluster serves yet
    ],
)
def test_endpoints_follow_the_weight_by_whole_pods(
    weight: int, n_pending: int, n_active: int, want: tuple[int, int]
) -> None:
    pending = [_pod(f"p{i}") for i in range(n_pending)]
    active = [_pod(f"a{i}") for i in range(n_active)]
    sel = endpoints(weight, ("p", pending), ("a", active), frozenset())
    assert (sel.count("p"), sel.count("a")) == want


def test_endpoints_keep_the_pods_already_selected() -> None:
    active = [_pod(f"a{i}") for i in range(4)]
    sel = endpoints(25, ("p", [_pod("p0")]), ("a", active), frozenset({"a3", "a2", "a1"}))
    assert sel.chosen["a"] == ("a1", "a2", "a3")


# --- the step inside a whole decision (decide) ---------------------------------

INCREMENTAL = {
    "type": "NewClusterWithIncrementalUpgrade",
    "clusterUpgradeOptions": {"maxSurgePercent": 50, "stepSizePercent": 25, "intervalSeconds": 30},
}


def _upgrade(
    active_notes: dict[str, Any], pending_notes: dict[str, Any], reverted: bool = False
) -> tuple[Observed, Plan]:
    old = h.service(image="ray:0", upgradeStrategy=INCREMENTAL)
    new = h.service(upgradeStrategy=INCREMENTAL)
    rs = h.with_status(old if reverted else new, active="a", pending="p")
    active = h.cluster("a", old, **active_notes)
    pending = h.cluster("p", new, created=h.at(1), **pending_notes)
    pods = {
        "a": [h.head("a"), *(_pod(f"a-w{i}") for i in range(3))],
        "p": [h.head("p"), *(_pod(f"p-w{i}") for i in range(3))],
    }
    obs = h.observe(rs, [active, pending], now=h.at(100), traffic="a", pods=pods)
    return obs, decide(obs)


def test_decide_raises_the_new_clusters_capacity_first() -> None:
    obs, plan = _upgrade({}, {"target_capacity": 0})
    assert plan.capacity == {"p": 50, "a": 100}
    assert [(c.name, cfg.hash) for c, cfg in plan.resize] == [("p", obs.goal.hash)]
    assert not plan.clusters.switch and not plan.shared_serve
    assert plan.clusters.state == UpgradeState.IN_PROGRESS


def test_decide_moves_traffic_and_labels_both_clusters_pods() -> None:
    _, plan = _upgrade({}, {"target_capacity": 50, "traffic": 0})
    assert plan.shift is not None and plan.shift.step.pending == Share(50, 25)
    notes = {c.name: n for c, n in plan.notes if labels.TRAFFIC_PERCENT in n}
    assert notes["p"][labels.TRAFFIC_PERCENT] == "25" and notes["a"][labels.TRAFFIC_PERCENT] == "75"
    assert plan.shared_serve
    added = sorted(p.name for p, on in plan.traffic_labels if on)
    assert added == ["a-head-x", "a-w0", "a-w1", "p-head-x"]  # 1 of 4 endpoints: 25%
    assert not plan.resize


def test_decide_promotes_once_everything_moved() -> None:
    _, plan = _upgrade(
        {"target_capacity": 0, "traffic": 0},
        {"target_capacity": 100, "traffic": 100, "traffic_at": h.at(0)},
    )
    assert plan.clusters.switch and not plan.shared_serve


def test_decide_keeps_a_reverted_pending_cluster_until_its_traffic_is_back() -> None:
    _, plan = _upgrade(
        {"target_capacity": 100, "traffic": 50},
        {"target_capacity": 50, "traffic": 50, "traffic_at": h.at(0)},
        reverted=True,
    )
    assert not plan.clusters.delete and plan.clusters.create is None
    assert plan.shift is not None and not plan.shift.inputs.forward
    assert plan.shift.step.active.traffic == 75 and plan.shared_serve
    _, done = _upgrade(
        {"target_capacity": 100, "traffic": 100},
        {"target_capacity": 50, "traffic": 0, "traffic_at": h.at(0)},
        reverted=True,
    )
    assert [c.name for c, _ in done.clusters.delete] == ["p"]
    assert not done.shared_serve


@pytest.mark.parametrize("forward", [True, False])
def test_a_capacity_falls_only_once_the_last_traffic_move_settled(forward: bool) -> None:
    """Requests reach a cluster for a while after the split moved away from it
    (kube-proxy, the Gateway): its replicas stay until intervalSeconds passed."""
    options = _options(surge=50, step=25, interval=30)
    start = (Share(50, 50), Share(100, 50)) if not forward else (STEADY, EMPTY)
    seen, _ = _run(options, *start, forward=forward, passes=5000)
    moved_at = T0 - timedelta(seconds=30)  # no move in this upgrade yet
    for (a0, p0, _), (a, p, when) in pairwise(seen):
        if p.traffic != p0.traffic:
            moved_at = when
        if a.capacity < a0.capacity or p.capacity < p0.capacity:
            assert when - moved_at >= timedelta(seconds=30), (a0, p0, a, p)


def test_a_new_cluster_that_stops_serving_gives_its_traffic_back_at_once() -> None:
    """Its head died with 50% of the traffic: the old cluster takes back as much
    as its capacity holds in one step, with no interval to wait; forward again,
    step by step, once the new cluster serves."""
    options = _options(surge=50, step=25, interval=30)
    just_moved = T0 - timedelta(seconds=1)
    inp = StepInputs(options, Share(75, 50), Share(75, 50), just_moved, T0, pending_serving=False)
    step = plan_step(inp)
    assert (step.active, step.pending) == (Share(75, 75), Share(75, 25))
    assert step.retreat and step.next_at is None
    # The old cluster's capacity comes back (the new one's first, within the surge).
    inp = StepInputs(options, step.active, step.pending, T0, T0, pending_serving=False)
    step = plan_step(inp)
    assert (step.active, step.pending) == (Share(75, 75), Share(25, 25))
    inp = StepInputs(options, step.active, step.pending, T0, T0, pending_serving=False)
    step = plan_step(inp)
    assert (step.active, step.pending) == (Share(100, 75), Share(25, 25))
    inp = StepInputs(options, step.active, step.pending, T0, T0, pending_serving=False)
    step = plan_step(inp)
    assert (step.active, step.pending) == (Share(100, 100), Share(25, 0))
    # Serving again: forward, within the interval rule.
    later = T0 + timedelta(seconds=5)
    inp = StepInputs(options, step.active, step.pending, T0, later, pending_serving=True)
    step = plan_step(inp)
    assert not step.retreat and step.pending.traffic == 0 and step.waiting
