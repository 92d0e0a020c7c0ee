"""Expectations: our own creates and deletes, counted until the watch shows
them, so that a reconcile between a write and its event neither creates a pod
twice nor picks a second victim. Time is a fake clock, never a sleep."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from raykube.decisions.pods import PodView
from raykube.handlers import runtime
from raykube.handlers.runtime import EXPECTATION_TTL, Expectations
from raykube.handlers.workqueue import Key

KEY: Key = ("ns", "rc")
OTHER: Key = ("ns", "other")


def pod(name: str, uid: str = "", **changes: Any) -> PodView:
    view = PodView(
        name=name,
        uid=uid or f"uid-{name}",
        namespace="ns",
        cluster="rc",
        node_type="worker",
        group="small",
        phase="Running",
        ready=True,
        terminating=False,
        created="2026-01-01T00:00:00Z",
    )
    return replace(view, **changes)


@dataclass
class Clock:
    now: float = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    # Only the module under test sees the fake clock (the event loop keeps the real one).
    monkeypatch.setattr(runtime, "time", fake)
    return fake


def names(pods: list[PodView]) -> list[str]:
    return sorted(p.name for p in pods)


def test_a_create_counts_until_the_watch_shows_it(clock: Clock) -> None:
    exp = Expectations()
    exp.created(KEY, pod("w1"))
    # Not seen yet: the pod is counted as if it existed (no second create).
    assert names(exp.apply(KEY, [])) == ["w1"]
    assert names(exp.apply(KEY, [])) == ["w1"]
    # Seen: counted once, from the observation, and the expectation is done.
    seen = pod("w1", phase="Pending", ready=False)
    assert exp.apply(KEY, [seen]) == [seen]
    assert exp.apply(KEY, []) == []


def test_expectations_are_per_key(clock: Clock) -> None:
    exp = Expectations()
    exp.created(KEY, pod("w1"))
    assert exp.apply(OTHER, []) == []
    assert names(exp.apply(KEY, [])) == ["w1"]


def test_a_delete_marks_the_pod_terminating_until_it_is_gone(clock: Clock) -> None:
    exp = Expectations()
    victim, other = pod("w1"), pod("w2")
    exp.deleted(KEY, victim.uid)
    got = {p.name: p for p in exp.apply(KEY, [victim, other])}
    assert got["w1"].terminating and not got["w1"].running
    assert not got["w2"].terminating
    # Gone from the watch: the expectation ends with it.
    assert exp.apply(KEY, [other]) == [other]
    assert exp.deletes[KEY] == {}
    # A pod that comes back with that uid (it cannot, but a stale cache can
    # replay it) is no longer marked.
    assert not exp.apply(KEY, [victim])[0].terminating


def test_a_replacement_with_the_same_name_is_not_marked(clock: Clock) -> None:
    exp = Expectations()
    exp.deleted(KEY, "uid-old")
    new = pod("w1", uid="uid-new")
    assert exp.apply(KEY, [new]) == [new]


def test_expectations_expire_after_the_ttl(clock: Clock) -> None:
    exp = Expectations()
    exp.created(KEY, pod("lost"))
    victim = pod("w1")
    exp.deleted(KEY, victim.uid)
    clock.now += EXPECTATION_TTL - 1
    assert names(exp.apply(KEY, [victim])) == ["lost", "w1"]
    assert exp.apply(KEY, [victim])[0].terminating
    # Past the TTL the watch is trusted again: the create never showed up
    # (it failed or the event was lost), the delete did not happen.
    clock.now += 2
    assert exp.apply(KEY, [victim]) == [victim]
    assert exp.creates[KEY] == {} and exp.deletes[KEY] == {}


def test_forget_drops_everything_for_the_key(clock: Clock) -> None:
    exp = Expectations()
    exp.created(KEY, pod("w1"))
    exp.deleted(KEY, "uid-w2")
    exp.created(OTHER, pod("x"))
    exp.forget(KEY)
    assert exp.apply(KEY, []) == []
    assert names(exp.apply(OTHER, [])) == ["x"]
    exp.forget(KEY)  # twice is harmless
