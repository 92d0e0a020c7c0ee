"""The keyed work queue: one worker per key, queued once, dirty requeue, timers,
back-off. Every wait here is on an event or a counter (bounded by a timeout
that only a broken queue reaches), never a sleep."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from raykube.handlers.workqueue import Key, WorkQueue

A: Key = ("ns", "a")
B: Key = ("ns", "b")
#: Only reached when the queue is broken; a passing test never waits this long.
SOON = 5.0


@dataclass
class Recorder:
    """A reconcile that records its calls and can be held open per key."""

    calls: list[Key] = field(default_factory=list)
    running: dict[Key, int] = field(default_factory=dict)
    most_at_once: dict[Key, int] = field(default_factory=dict)
    gates: dict[Key, asyncio.Event] = field(default_factory=dict)
    finished: list[Key] = field(default_factory=list)
    again: float | None = None
    #: How many of the next passes raise.
    failures: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __call__(self, key: Key) -> float | None:
        self.running[key] = self.running.get(key, 0) + 1
        self.most_at_once[key] = max(self.most_at_once.get(key, 0), self.running[key])
        self.calls.append(key)
        async with self.changed:
            self.changed.notify_all()
        try:
            gate = self.gates.get(key)
            if gate is not None:
                await gate.wait()
            if self.failures:
                self.failures -= 1
                raise RuntimeError("reconcile failed")
            return self.again
        finally:
            self.running[key] -= 1
            self.finished.append(key)
            async with self.changed:
                self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), SOON)

    def count(self, key: Key) -> int:
        return self.calls.count(key)


Factory = Callable[..., Awaitable[tuple[WorkQueue, Recorder]]]


@pytest.fixture()
async def make_queue() -> AsyncIterator[Factory]:
    tasks: list[asyncio.Task[None]] = []

    async def make(workers: int = 2) -> tuple[WorkQueue, Recorder]:
        rec = Recorder()
        queue = WorkQueue(rec, "test")
        tasks.extend(asyncio.create_task(queue.worker()) for _ in range(workers))
        return queue, rec

    yield make
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_key_is_queued_once(make_queue: Factory) -> None:
    queue, rec = await make_queue(workers=0)
    for _ in range(3):
        queue.add(A)
    queue.add(B)
    assert len(queue) == 2
    # Now let one worker drain what was queued: A once, B once.
    worker = asyncio.create_task(queue.worker())
    try:
        await rec.until(lambda: len(rec.calls) == 2)
        assert sorted(rec.calls) == [A, B]
        assert len(queue) == 0
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


async def test_one_worker_per_key_and_a_dirty_key_runs_once_more(make_queue: Factory) -> None:
    queue, rec = await make_queue(workers=3)
    rec.gates[A] = asyncio.Event()
    queue.add(A)
    await rec.until(lambda: rec.count(A) == 1)
    # While A runs, triggers only mark it dirty: idle workers must not take it.
    for _ in range(5):
        queue.add(A)
    assert len(queue) == 0
    # Another key is not held up by the busy one.
    queue.add(B)
    await rec.until(lambda: rec.count(B) == 1)
    rec.gates[A].set()
    # The dirty mark gives exactly one more pass (its gate is open now).
    await rec.until(lambda: rec.count(A) == 2)
    queue.add(B)
    await rec.until(lambda: rec.count(B) == 2)
    assert rec.count(A) == 2
    assert rec.most_at_once[A] == 1


async def test_add_after_keeps_the_sooner_timer(make_queue: Factory) -> None:
    queue, _ = await make_queue(workers=0)
    loop = asyncio.get_running_loop()
    queue.add_after(A, 100)
    later = queue._timers[A]
    queue.add_after(A, 10)
    sooner = queue._timers[A]
    assert later.cancelled() and not sooner.cancelled()
    queue.add_after(A, 50)
    assert queue._timers[A] is sooner
    assert sooner.when() - loop.time() <= 10
    queue.forget(A)


async def test_a_timer_queues_the_key(make_queue: Factory) -> None:
    queue, rec = await make_queue()
    queue.add_after(A, 0)
    await rec.until(lambda: rec.count(A) == 1)
    assert A not in queue._timers


async def test_a_pass_asking_to_run_again_gets_a_timer(make_queue: Factory) -> None:
    queue, rec = await make_queue()
    rec.again = 30.0
    queue.add(A)
    await rec.until(lambda: rec.count(A) == 1)
    await rec.until(lambda: A in queue._timers)
    assert queue._timers[A].when() - asyncio.get_running_loop().time() > 20
    queue.forget(A)


async def test_forget_cancels_the_timer_and_the_failure_count(make_queue: Factory) -> None:
    queue, _ = await make_queue(workers=0)
    queue.add_after(A, 30)
    timer = queue._timers[A]
    queue._failures[A] = 3
    queue.forget(A)
    assert timer.cancelled()
    assert A not in queue._timers and A not in queue._failures
    queue.forget(A)  # forgetting twice is harmless


async def test_failures_back_off_exponentially_and_a_success_resets(
    make_queue: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, rec = await make_queue(workers=1)
    queue.max_backoff = 3.0
    delays: list[float] = []

    # Record the retry delays instead of waiting them out; each retry is
    # queued at once so that the next failure happens now.
    def retry_now(key: Key, delay: float) -> None:
        delays.append(delay)
        queue.add(key)

    monkeypatch.setattr(queue, "add_after", retry_now)
    rec.failures = 3
    queue.add(A)
    await rec.until(lambda: rec.finished.count(A) == 4)
    assert delays == [1.0, 2.0, 3.0]  # 0.5 * 2**n, capped at max_backoff
    # The successful fourth pass reset the count and asked for no timer.
    assert A not in queue._failures
    rec.failures = 1
    queue.add(A)
    await rec.until(lambda: rec.finished.count(A) == 6)
    assert delays == [1.0, 2.0, 3.0, 1.0]
