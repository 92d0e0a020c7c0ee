"""What both controllers do the same way: one reconcile wrapper, status writes,
events, warn-once, invalid-spec reports, per-object state and gauges.

A controller is a ``Controller`` plus a pure ``decide`` and its own small
``ensure`` steps; nothing here knows a RayCluster from a RayService.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from raykube import metrics
from raykube.adapters.kube import ApiError, Resource
from raykube.decisions.status_patch import TIMESTAMP, differs, merge_patch
from raykube.handlers.runtime import Runtime
from raykube.handlers.state import ObjectState, States
from raykube.handlers.workqueue import Key, WorkQueue
from raykube.timefmt import now_iso

log = logging.getLogger(__name__)

Body = dict[str, Any]
Pass = Callable[[Key], Awaitable[float | None]]


class ReconcileTimeout(TimeoutError):
    """A pass ran past ``Settings.reconcile_timeout_seconds`` and was abandoned."""


@dataclass
class Controller:
    kind: str
    rt: Runtime
    queue: WorkQueue
    states: States = field(default_factory=States)
    #: What each object's status summary counts towards, for the gauge.
    _summaries: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Called with the key when an object is forgotten (other per-key caches).
    on_forget: list[Callable[[Key], None]] = field(default_factory=list)
    #: Called with the summary counts whenever they change.
    on_summary: Callable[[Counter[tuple[str, str]]], None] | None = None

    # --- one pass ------------------------------------------------------------------------

    async def run(self, key: Key, body: Pass) -> float | None:
        """Run one pass with its metrics and deadline; a vanishing namespace ends it
        quietly. A pass past its deadline fails like any other error (counted, and
        retried with back-off by the work queue): whatever it waited on (a silent
        head, a slow API server) never holds a worker longer than that."""
        started = time.monotonic()
        try:
            return await self._bounded(key, body)
        except ApiError as err:
            if err.namespace_terminating:
                return None  # the namespace is going away, and this object with it
            metrics.RECONCILE_ERRORS.labels(self.kind, type(err).__name__).inc()
            raise
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(self.kind, type(exc).__name__).inc()
            raise
        finally:
            # Counted when the pass is over, so a test can wait for passes that
            # really looked (a counter that stops moving means a stalled operator).
            metrics.RECONCILES.labels(self.kind).inc()
            metrics.RECONCILE_SECONDS.labels(self.kind).observe(time.monotonic() - started)

    async def _bounded(self, key: Key, body: Pass) -> float | None:
        limit = self.rt.settings.reconcile_timeout_seconds
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await body(key)
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the pass's own, reported as it is
            raise ReconcileTimeout(f"{self.kind} {key[0]}/{key[1]}: over {limit:g}s") from None

    # --- per-object memory -----------------------------------------------------------------

    def seen(self, key: Key) -> ObjectState:
        """The object exists: its record (created on first sight)."""
        return self.states.of(key)

    def forget(self, key: Key) -> None:
        """The object is gone: drop everything kept about it, in one place."""
        record = self.states.forget(key)
        if record is not None:
            self._count(record.summary, -1)
        self.queue.forget(key)
        for hook in self.on_forget:
            hook(key)

    def summarise(self, key: Key, summary: Iterable[tuple[str, str]]) -> None:
        """Record what the object's status says, for the by-state gauges."""
        record = self.states.get(key)
        value = tuple(sorted(summary))
        if record is None or record.summary == value:
            return
        self._count(record.summary, -1)
        record.summary = value
        self._count(value, +1)

    def _count(self, summary: tuple[tuple[str, str], ...], delta: int) -> None:
        if not summary:
            return
        for item in summary:
            self._summaries[item] += delta
        if self.on_summary is not None:
            self.on_summary(self._summaries)

    # --- events -----------------------------------------------------------------------------

    def event(self, obj: Body, event_type: str, reason: str, message: str) -> None:
        self.rt.emit(obj, event_type, reason, message)

    def warn_once(
        self, key: Key, obj: Body, reason: str, message: str, once_per: str | None = None
    ) -> None:
        """One Warning per object, reason and spec generation (or ``once_per``)."""
        scope = once_per if once_per is not None else str(obj["metadata"].get("generation", ""))
        record = self.states.of(key)
        if (reason, scope) in record.warned:
            return
        record.warned.add((reason, scope))
        self.event(obj, "Warning", reason, message)

    # --- status -------------------------------------------------------------------------------

    async def write_status(self, res: Resource, key: Key, obj: Body, status: Body) -> bool:
        """Write ``status`` if it changed, as a merge patch guarded by the
        resourceVersion it was computed from. False when nothing was written
        because the object moved on (the pass is queued again) or is gone."""
        stored = obj.get("status") or {}
        if not differs(stored, status):
            return True
        patch = {
            "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
            "status": merge_patch(stored, {**status, TIMESTAMP: now_iso()}),
        }
        try:
            written = await self.rt.kube.patch(res, key[0], key[1], patch, subresource="status")
        except ApiError as err:
            if err.conflict:
                # Computed from a stale object: recomputed from the newer one,
                # never written over it.
                self.queue.add(key)
                return False
            if err.not_found:
                return False
            raise
        meta = (written.get("metadata") if isinstance(written, dict) else None) or {}
        made = str(meta.get("resourceVersion") or "")
        stored_now = written.get("status") if isinstance(written, dict) else None
        record = self.states.of(key)
        if made and isinstance(stored_now, dict):
            record.own_write = (str(obj["metadata"]["resourceVersion"]), made, stored_now)
        else:
            record.own_write = None
        return True

    def current(self, key: Key, obj: Body) -> Body:
        """``obj`` as this process's last status write left it, while the watch
        cache still shows the version that write replaced (the write changed
        the status and the resourceVersion, nothing else)."""
        record = self.states.get(key)
        own = record.own_write if record else None
        if record is None or own is None:
            return obj
        if obj["metadata"].get("resourceVersion") != own[0]:
            record.own_write = None  # the cache shows the write, or moved past it
            return obj
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": own[1]}, "status": own[2]}

    async def report_invalid(
        self, res: Resource, key: Key, obj: Body, reason: str, message: str, status: Body
    ) -> None:
        """A spec the models refuse: a Warning once per message, and ``status``
        (the controller's condition saying why). Not retried: only a new spec helps."""
        self.warn_once(key, obj, reason, message, once_per=message)
        await self.write_status(res, key, obj, status)
