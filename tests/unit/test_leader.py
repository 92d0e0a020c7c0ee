"""Leader election: the pure Lease decisions, and the elector against an
in-memory Lease store that enforces resourceVersion like the API server."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest

from raykube import leader, settings
from raykube.adapters.kube import LEASES, ApiError, Resource
from raykube.adapters.writegate import WriteGate
from raykube.leader import Decision, Elector, Record, Seen, Timing, decide, lease_spec, observe
from raykube.metrics import LEADER_ELECTION_LEADING

NOW = "2026-01-01T00:00:00.000000Z"
LATER = "2026-01-01T00:00:05.000000Z"


def _record(holder: str = "a", rv: str = "1", transitions: int = 0) -> Record:
    return Record(holder, 15.0, NOW, transitions, rv)


# --- observe / decide ----------------------------------------------------------------------


def test_no_lease_is_created() -> None:
    assert decide(Seen(None, 0.0), "a", 100.0) is Decision.CREATE


def test_own_lease_is_renewed_even_when_late() -> None:
    assert decide(Seen(_record("a"), 0.0), "a", 1000.0) is Decision.RENEW


def test_live_holder_is_left_alone() -> None:
    assert decide(Seen(_record("b"), 100.0), "a", 114.9) is Decision.WAIT


def test_lease_not_renewed_for_its_duration_is_taken() -> None:
    assert decide(Seen(_record("b"), 100.0), "a", 115.0) is Decision.TAKE


def test_released_lease_is_taken_at_once() -> None:
    assert decide(Seen(_record(""), 100.0), "a", 100.0) is Decision.TAKE


def test_expiry_clock_restarts_only_when_the_lease_changes() -> None:
    first = observe(None, _record("b", rv="7"), now=10.0)
    same = observe(first, _record("b", rv="7"), now=20.0)
    renewed = observe(same, _record("b", rv="8"), now=21.0)
    assert (first.since, same.since, renewed.since) == (10.0, 10.0, 21.0)
    # The holder's renewTime is never compared with our clock: only versions count.
    assert decide(same, "a", 24.9) is Decision.WAIT
    assert decide(renewed, "a", 35.9) is Decision.WAIT
    assert decide(renewed, "a", 36.0) is Decision.TAKE


def test_lease_disappearing_restarts_the_clock() -> None:
    seen = observe(observe(None, _record("b"), 1.0), None, 5.0)
    assert seen == Seen(None, 5.0)
    assert decide(seen, "a", 5.0) is Decision.CREATE


# --- what is written -----------------------------------------------------------------------


def test_created_lease() -> None:
    spec = lease_spec(Decision.CREATE, None, "a", Timing(), NOW)
    assert spec == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": NOW,
        "renewTime": NOW,
        "leaseTransitions": 0,
    }


def test_renewal_keeps_acquire_time_and_transitions() -> None:
    spec = lease_spec(Decision.RENEW, _record("a", transitions=3), "a", Timing(), LATER)
    assert (spec["acquireTime"], spec["renewTime"], spec["leaseTransitions"]) == (NOW, LATER, 3)


def test_takeover_counts_a_transition() -> None:
    spec = lease_spec(Decision.TAKE, _record("b", transitions=3), "a", Timing(), LATER)
    assert spec["holderIdentity"] == "a"
    assert (spec["acquireTime"], spec["leaseTransitions"]) == (LATER, 4)


def test_nothing_is_written_while_waiting() -> None:
    with pytest.raises(ValueError):
        lease_spec(Decision.WAIT, _record("b"), "a", Timing(), NOW)


def test_release_drops_the_holder() -> None:
    spec = leader.released_spec(_record("a", transitions=2), LATER)
    assert "holderIdentity" not in spec and spec["leaseTransitions"] == 2


@pytest.mark.parametrize(
    "values",
    [
        {"renew_period": 10.0, "renew_deadline": 10.0},
        {"renew_deadline": 15.0},
        {"renew_period": 0.0},
        {"retry_period": 0.0},
    ],
)
def test_timing_refuses_a_leader_that_outlives_its_lease(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Timing(**values)


def test_timing_and_identity_from_settings() -> None:
    cfg = settings.from_args(
        [
            "--lease-duration=9",
            "--lease-renew-period=2",
            "--lease-renew-deadline=6",
            "--lease-retry-period=1",
        ]
    )
    assert leader.timing_of(cfg) == Timing(9.0, 2.0, 6.0, 1.0)
    assert leader.identity_of(settings.from_args(["--lease-identity=pod-0"])) == "pod-0"
    assert leader.identity_of(settings.from_args(["--lease-identity="])).endswith(
        f"-{__import__('os').getpid()}"
    )


# --- the elector against a store with API-server semantics ----------------------------------


class FakeLeases:
    """Leases by name; writes need the current resourceVersion, as in the API server."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.fail = False
        self.reads = 0

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[obj["metadata"]["name"]] = obj
        return copy.deepcopy(obj)

    async def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        assert res is LEASES
        self.reads += 1
        if self.fail:
            raise OSError("apiserver unreachable")
        found = self.objects.get(name)
        return copy.deepcopy(found) if found else None

    async def create(
        self, res: Resource, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        if body["metadata"]["name"] in self.objects:
            raise ApiError(409, "AlreadyExists", "exists")
        return self._stored(body)

    async def update(
        self, res: Resource, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        have = self.objects[name]["metadata"]["resourceVersion"]
        if body["metadata"].get("resourceVersion") != have:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self._stored(body)

    def holder(self, name: str = "lease") -> str:
        return str(self.objects[name]["spec"].get("holderIdentity", ""))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pair(store: FakeLeases, clock: Clock) -> tuple[Elector, Elector]:
    def make(who: str) -> Elector:
        return Elector(store, "lease", "ns", who, Timing(), clock, lambda: NOW)

    return make("a"), make("b")


async def test_first_candidate_leads_the_second_waits() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = _pair(store, clock)
    assert await a.step() is True
    assert await b.step() is False
    assert store.holder() == "a" and a.leading and not b.leading


async def test_takeover_only_after_the_duration_on_the_candidates_clock() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = _pair(store, clock)
    await a.step()
    assert await b.step() is False  # b first sees a's Lease now
    clock.now += 14.9
    assert await b.step() is False
    clock.now += 0.1
    assert await b.step() is True
    assert store.holder() == "b"
    assert store.objects["lease"]["spec"]["leaseTransitions"] == 1
    # a comes back: it sees b's fresh Lease and does not write.
    assert await a.step() is False
    assert store.holder() == "b"


async def test_renewals_keep_the_lease() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = _pair(store, clock)
    await a.step()
    for _ in range(10):
        await b.step()
        clock.now += 5
        assert await a.step() is True
    assert await b.step() is False and store.holder() == "a"


async def test_two_candidates_racing_for_an_expired_lease_one_wins() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = _pair(store, clock)
    c = Elector(store, "lease", "ns", "c", Timing(), clock, lambda: NOW)
    await c.step()
    await a.step(), await b.step()
    clock.now += 20
    # Both read the same expired version; the second write carries a stale one.
    lease = await store.get(LEASES, "ns", "lease")
    a._see(lease)
    b._see(lease)
    original_get = store.get

    async def stale_get(res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(lease)

    store.get = stale_get  # type: ignore[method-assign]
    results = [await a.step(), await b.step()]
    store.get = original_get  # type: ignore[method-assign]
    assert sorted(results) == [False, True]
    assert store.holder() == ("a" if results[0] else "b")


async def test_release_hands_over_at_once() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = _pair(store, clock)
    await a.step()
    await b.step()
    await a.release()
    assert store.holder() == "" and not a.leading
    assert await b.step() is True  # no waiting for expiry


async def test_release_by_a_non_holder_writes_nothing() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = _pair(store, clock)
    await a.step()
    await b.step()
    version = store.version
    await b.release()
    assert store.version == version and store.holder() == "a"


async def _until(done: Callable[[], bool]) -> None:
    """Poll a condition of the elector's own making (its Lease reads, its gate)."""
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not met within 5 s")


async def test_hold_pauses_writes_while_it_cannot_renew_and_resumes_on_renewal() -> None:
    store, gate = FakeLeases(), WriteGate()
    fast = Timing(duration=0.6, renew_period=0.05, renew_deadline=0.3, retry_period=0.05)
    a = Elector(store, "lease", "ns", "a", fast, gate=gate)
    assert await a.step()
    store.fail = True
    holding = asyncio.create_task(a.hold())
    await _until(lambda: gate.closed)
    assert not a.leading and not holding.done()
    write = asyncio.create_task(gate.wait())
    tries = store.reads
    await _until(lambda: store.reads >= tries + 3)  # three more failed renewals
    assert not write.done()  # a write waits while the leader is paused
    store.fail = False  # the API server is back; nobody took the Lease
    await _until(lambda: not gate.closed)
    await asyncio.wait_for(write, timeout=5)
    assert a.leading and store.holder() == "a" and not holding.done()
    holding.cancel()


async def test_paused_leader_that_finds_another_holder_ends() -> None:
    store, gate = FakeLeases(), WriteGate()
    fast = Timing(duration=0.6, renew_period=0.05, renew_deadline=0.3, retry_period=0.05)
    a = Elector(store, "lease", "ns", "a", fast, gate=gate)
    assert await a.step()
    store.fail = True
    holding = asyncio.create_task(a.hold())
    await _until(lambda: gate.closed)
    lease = store.objects["lease"]
    lease["spec"]["holderIdentity"] = "b"
    store.version += 1
    lease["metadata"]["resourceVersion"] = str(store.version)
    store.fail = False
    reason = await asyncio.wait_for(holding, timeout=5)
    assert reason == "another replica holds the Lease" and not a.leading
    assert not gate.closed  # the process stops; nothing waits forever on the way out


async def test_hold_steps_down_when_another_holds_the_lease() -> None:
    store = FakeLeases()
    fast = Timing(duration=0.6, renew_period=0.05, renew_deadline=0.3, retry_period=0.05)
    a = Elector(store, "lease", "ns", "a", fast)
    assert await a.step()
    # Someone else took it (e.g. after a long pause of this process).
    lease = store.objects["lease"]
    lease["spec"]["holderIdentity"] = "b"
    store.version += 1
    lease["metadata"]["resourceVersion"] = str(store.version)
    reason = await asyncio.wait_for(a.hold(), timeout=5)
    assert reason == "another replica holds the Lease"


async def test_acquire_waits_until_stopped() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = _pair(store, clock)
    await a.step()
    b.timing = Timing(retry_period=0.01)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    assert await asyncio.wait_for(b.acquire(stop), timeout=5) is False


async def test_leading_gauge_follows_the_lease() -> None:
    store, clock = FakeLeases(), Clock()
    a, _ = _pair(store, clock)
    await a.step()
    assert LEADER_ELECTION_LEADING._value.get() == 1
    await a.release()
    assert LEADER_ELECTION_LEADING._value.get() == 0
