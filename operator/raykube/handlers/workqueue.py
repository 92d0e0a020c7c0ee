"""A keyed work queue: each key is reconciled by at most one worker at a time,
queued at most once, and requeued if it was marked dirty while running.

kopf's own handlers are edge-triggered; this queue turns every trigger (the
object, a child pod or Service, the resync timer) into one level-based
reconcile of the owning object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Reconciler = Callable[[Key], Awaitable[float | None]]


@dataclass
class WorkQueue:
    """``reconcile(key)`` returns seconds until it wants to run again, or None."""

    reconcile: Reconciler
    name: str
    max_backoff: float = 60.0
    _queue: asyncio.Queue[Key] = field(default_factory=asyncio.Queue)
    _queued: set[Key] = field(default_factory=set)
    _running: set[Key] = field(default_factory=set)
    _dirty: set[Key] = field(default_factory=set)
    _failures: dict[Key, int] = field(default_factory=dict)
    _timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)

    def add(self, key: Key) -> None:
        if key in self._running:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Requeue later; an earlier timer for the same key is kept if sooner."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay
        if existing is not None and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._queued)

    async def worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            try:
                again = await self.reconcile(key)
                self._failures.pop(key, None)
                if again is not None:
                    self.add_after(key, again)
            except asyncio.CancelledError:
                raise
            except Exception:
                count = self._failures.get(key, 0) + 1
                self._failures[key] = count
                delay = min(self.max_backoff, 0.5 * 2**count)
                log.exception(
                    "%s reconcile of %s/%s failed; retry in %.1fs", self.name, *key, delay
                )
                self.add_after(key, delay)
            finally:
                self._running.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
