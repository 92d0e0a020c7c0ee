"""The next step of a ``NewClusterWithIncrementalUpgrade`` (pure).

Two numbers per cluster move, one change per pass:

- **capacity**: the Serve ``target_capacity`` (percent) sent to the cluster's
  head; Ray scales every deployment's replicas by it and Ray's autoscaler
  sizes the cluster's pods to match;
- **traffic**: the percent of requests meant for the cluster; the two always
  add up to 100.

Forward (the pending cluster is the goal): the pending cluster's capacity
rises by ``maxSurgePercent``, traffic follows it in ``stepSizePercent`` steps
no closer than ``intervalSeconds`` (and only while the pending cluster serves
every application), then the active cluster's capacity falls to its traffic,
and again, until the pending cluster has 100/100 and the active 0: then it is
promoted. A cluster never gets more traffic than its capacity, and the two
capacities together never exceed ``100 + maxSurgePercent``.

Back (the spec was reverted: the pending cluster is no longer the goal): the
same rules with the roles swapped; once the active cluster has all the traffic
again the pending cluster is deleted.

``endpoints`` turns a traffic split into which ready serving pods of each
cluster the stable serve Service selects (kube-proxy balances per endpoint).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from raykube.decisions.pods import PodView
from raykube.models.rayservice import ClusterUpgradeOptions


@dataclass(frozen=True)
class Share:
    """One cluster's part: Serve target_capacity and traffic, in percent."""

    capacity: int
    traffic: int


@dataclass(frozen=True)
class StepInputs:
    options: ClusterUpgradeOptions
    active: Share
    pending: Share
    #: When the traffic split last changed (None: never in this upgrade).
    migrated_at: datetime | None
    now: datetime
    #: True: the pending cluster is the goal; False: move everything back.
    forward: bool = True
    #: The pending cluster's head is ready and every application RUNNING there.
    pending_serving: bool = False
    #: The serve config the active cluster runs is known, so its capacity can
    #: be sent again; without it the active cluster stays at its capacity.
    active_adjustable: bool = True


@dataclass(frozen=True)
class Step:
    active: Share
    pending: Share
    #: The pending cluster has everything: it becomes the active one.
    promote: bool = False
    #: Why nothing moved this pass ("" when something did, or all is done).
    waiting: str = ""
    #: When the next traffic step may happen (wake the controller then).
    next_at: datetime | None = None
    #: The last traffic move may not have reached every proxy yet: a cluster
    #: that just lost its traffic still gets requests (keep it whole).
    settling: bool = False
    #: Why traffic moves back although the spec still asks for the new cluster.
    retreat: str = ""

    def traffic_moved(self, before: StepInputs) -> bool:
        return self.pending.traffic != before.pending.traffic


def _surplus(mine: Share, other: Share) -> bool:
    """Capacity beyond its traffic while the two together exceed 100."""
    return mine.capacity + other.capacity > 100 and mine.capacity > mine.traffic


def _move_traffic(inp: StepInputs, to: Share, frm: Share) -> tuple[Share, Share] | str:
    """Shift one step of traffic towards ``to``, bounded by its capacity; or why not."""
    interval = timedelta(seconds=inp.options.interval_seconds)
    if inp.migrated_at is not None and inp.now < inp.migrated_at + interval:
        return f"next traffic step at {inp.migrated_at + interval:%Y-%m-%dT%H:%M:%SZ}"
    moved = min(100, to.traffic + inp.options.step_size_percent, to.capacity)
    return replace(to, traffic=moved), replace(frm, traffic=100 - moved)


def _unsettled(inp: StepInputs) -> Step | None:
    """Wait while the last traffic change may not have reached every proxy.

    The split reaches kube-proxy (or the Gateway) some time after it is
    written; requests still sent to a cluster meanwhile need its replicas. A
    capacity falls only ``intervalSeconds`` after the traffic last moved (on
    the real node, a cluster cut to 0 at once answered its last requests with
    500 when it was deleted).
    """
    at = _next_at(inp)
    if at is None or inp.now >= at:
        return None
    return Step(
        inp.active,
        inp.pending,
        waiting=f"traffic settling until {at:%Y-%m-%dT%H:%M:%SZ}",
        next_at=at,
        settling=True,
    )


def plan_step(inp: StepInputs) -> Step:
    if inp.forward and inp.pending.traffic > 0 and not inp.pending_serving:
        return _retreat(inp)
    if inp.forward:
        return _forward(inp)
    return _back(inp)


def _retreat(inp: StepInputs) -> Step:
    """The new cluster stopped serving (its head died, an application failed)
    while it carries traffic: the traffic goes back to the old cluster at once,
    as far as the old cluster's capacity allows, with no interval to wait; the
    upgrade goes forward again, step by step, once the new cluster serves."""
    urgent = inp.options.model_copy(update={"step_size_percent": 100})
    step = _back(replace(inp, options=urgent, migrated_at=None, forward=False))
    return replace(step, retreat="the new cluster stopped serving", next_at=None)


def _next_at(inp: StepInputs) -> datetime | None:
    if inp.migrated_at is None:
        return None
    return inp.migrated_at + timedelta(seconds=inp.options.interval_seconds)


def _forward(inp: StepInputs) -> Step:
    act, pen, surge = inp.active, inp.pending, inp.options.max_surge_percent
    if pen.traffic < pen.capacity:
        if not inp.pending_serving:
            return Step(act, pen, waiting="waiting for the new cluster to serve every application")
        moved = _move_traffic(inp, pen, act)
        if isinstance(moved, str):
            return Step(act, pen, waiting=moved, next_at=_next_at(inp))
        pen, act = moved
        return Step(act, pen)
    if inp.active_adjustable and _surplus(act, pen):
        return _unsettled(inp) or Step(
            replace(act, capacity=max(act.traffic, act.capacity - surge)), pen
        )
    if pen.capacity < 100:
        raised = min(100, pen.capacity + surge, 100 + surge - act.capacity)
        if raised > pen.capacity:
            return Step(act, replace(pen, capacity=raised))
        return Step(
            act,
            pen,
            waiting=(
                "the old cluster's target_capacity cannot be lowered (the serve config it runs "
                "is not known to the operator) and maxSurgePercent allows no more"
            ),
        )
    if pen.traffic == 100 and (act.capacity == 0 or not inp.active_adjustable):
        if inp.pending_serving:
            return Step(act, pen, promote=True)
        return Step(act, pen, waiting="waiting for the new cluster to serve every application")
    return Step(act, pen)  # unreachable with consistent inputs: nothing to do


def _back(inp: StepInputs) -> Step:
    act, pen, surge = inp.active, inp.pending, inp.options.max_surge_percent
    if act.traffic == 100:
        # Rolled back: the pending cluster may go once no request reaches it.
        return _unsettled(inp) or Step(act, pen)
    if act.traffic < act.capacity:
        moved = _move_traffic(inp, act, pen)
        if isinstance(moved, str):
            return Step(act, pen, waiting=moved, next_at=_next_at(inp))
        act, pen = moved
        return Step(act, pen)
    if _surplus(pen, act):
        return _unsettled(inp) or Step(
            act, replace(pen, capacity=max(pen.traffic, pen.capacity - surge))
        )
    raised = min(100, act.capacity + surge, 100 + surge - pen.capacity)
    if raised > act.capacity and inp.active_adjustable:
        return Step(replace(act, capacity=raised), pen)
    return Step(act, pen, waiting="the old cluster's target_capacity cannot be raised")


# --- which pods the serve Service selects --------------------------------------


@dataclass(frozen=True)
class Selection:
    """Pods (by name) the serve Service selects, per cluster."""

    chosen: Mapping[str, tuple[str, ...]]

    def count(self, cluster: str) -> int:
        return len(self.chosen.get(cluster, ()))

    def share(self, cluster: str) -> int:
        """The percent of endpoints that are ``cluster``'s (rounded)."""
        total = sum(len(v) for v in self.chosen.values())
        return round(100 * self.count(cluster) / total) if total else 0


def _counts(weight: int, n_to: int, n_from: int) -> tuple[int, int]:
    """How many endpoints of each cluster give the share nearest ``weight``
    percent to the first; ties go to more endpoints."""
    if weight <= 0 or n_to == 0:
        return 0, n_from
    if weight >= 100 or n_from == 0:
        return n_to, 0
    best: tuple[float, int, int, int] | None = None
    pairs = [(k, round(k * (100 - weight) / weight)) for k in range(1, n_to + 1)]
    pairs += [(round(k * weight / (100 - weight)), k) for k in range(1, n_from + 1)]
    for k_to, k_from in pairs:
        k_to, k_from = min(max(k_to, 1), n_to), min(max(k_from, 1), n_from)
        error = abs(k_to / (k_to + k_from) - weight / 100)
        key = (error, -(k_to + k_from), k_to, k_from)
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2], best[3]


def candidates(pods: Iterable[PodView], relabelled: Mapping[str, bool]) -> list[PodView]:
    """Ready pods whose Serve proxy serves (``ray.io/serve=true``, as relabelled)."""
    return [
        p for p in pods if p.ready and not p.terminating and relabelled.get(p.name, p.serve_label)
    ]


def _pick(pods: Sequence[PodView], k: int, labelled: frozenset[str]) -> tuple[str, ...]:
    """``k`` pods, those already selected first (fewest label changes)."""
    ranked = sorted(pods, key=lambda p: (p.name not in labelled, p.name))
    return tuple(sorted(p.name for p in ranked[:k]))


def endpoints(
    pending_weight: int,
    pending: tuple[str, Sequence[PodView]],
    active: tuple[str, Sequence[PodView]],
    labelled: frozenset[str],
) -> Selection:
    """The pods of each cluster to select so that the pending cluster's share of
    endpoints is as near ``pending_weight`` percent as whole pods allow."""
    k_pen, k_act = _counts(pending_weight, len(pending[1]), len(active[1]))
    return Selection(
        {
            pending[0]: _pick(pending[1], k_pen, labelled),
            active[0]: _pick(active[1], k_act, labelled),
        }
    )
