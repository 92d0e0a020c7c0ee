"""Process-wide state of a running operator: clients, caches, queues.

Created once at start-up (kopf's startup handler) and kept on kopf's memo;
nothing here is created at import time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from raykube.adapters.kube import Kube
from raykube.decisions.pods import PodView
from raykube.handlers.crashpoints import CrashPoints
from raykube.handlers.workqueue import Key
from raykube.settings import Settings
from raykube.text import safe
from raykube.timefmt import now_iso

log = logging.getLogger(__name__)

#: Concurrent event writers; events may then land slightly out of order.
EVENT_POSTERS = 4
#: An Event's message is a line for ``kubectl describe``, not a log: Kubernetes
#: means it to be short, and every event passes here.
EVENT_MESSAGE_LIMIT = 1024

#: How long a create or delete we issued is assumed in flight before the
#: watch must have shown it (after that the cache is trusted again).
EXPECTATION_TTL = 60.0


class IndexLike(Protocol):
    """kopf.Index, as far as we use it (a mapping of key -> iterable of values)."""

    def __contains__(self, key: object) -> bool: ...
    def __getitem__(self, key: Any) -> Iterable[Any]: ...


@dataclass
class Expectations:
    """Creations and deletions we issued that the watch has not shown yet.

    They keep a reconcile that runs between our write and its watch event
    from creating the same pod twice (or deleting a second victim).
    """

    creates: dict[Key, dict[str, tuple[float, PodView]]] = field(default_factory=dict)
    deletes: dict[Key, dict[str, float]] = field(default_factory=dict)

    def created(self, key: Key, pod: PodView) -> None:
        self.creates.setdefault(key, {})[pod.name] = (time.monotonic() + EXPECTATION_TTL, pod)

    def deleted(self, key: Key, uid: str) -> None:
        self.deletes.setdefault(key, {})[uid] = time.monotonic() + EXPECTATION_TTL

    def apply(self, key: Key, observed: list[PodView]) -> list[PodView]:
        """Observed pods, corrected by what we know is in flight."""
        now = time.monotonic()
        seen = {p.name for p in observed}
        creates = {
            n: v for n, v in self.creates.get(key, {}).items() if v[0] > now and n not in seen
        }
        self.creates[key] = creates
        deletes = {u: t for u, t in self.deletes.get(key, {}).items() if t > now}
        still_there = {p.uid for p in observed}
        deletes = {u: t for u, t in deletes.items() if u in still_there}
        self.deletes[key] = deletes
        pods = [
            PodView(**{**p.__dict__, "terminating": True}) if p.uid in deletes else p
            for p in observed
        ]
        return pods + [v[1] for v in creates.values()]

    def forget(self, key: Key) -> None:
        self.creates.pop(key, None)
        self.deletes.pop(key, None)


#: Template fingerprints remembered: enough for every distinct template of a big
#: cluster, bounded so that generated templates cannot grow the set for ever.
JUDGED_TEMPLATES = 4096


class Recent:
    """A bounded set: the oldest entry goes when a new one would exceed ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, None] = OrderedDict()

    def seen(self, item: str) -> bool:
        if item in self._items:
            self._items.move_to_end(item)
            return True
        return False

    def add(self, item: str) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)


@dataclass
class Runtime:
    """What both controllers share: the clients, the child indices, event posting."""

    settings: Settings
    kube: Kube
    pods: IndexLike
    services: IndexLike
    cluster_objects: IndexLike | None = None
    #: Ingresses and NetworkPolicies labelled for a cluster (slim: kind, name,
    #: owners, annotations). Without them a wanted child is created, or read
    #: and applied, on every pass, and none is ever deleted.
    network_children: tuple[IndexLike, ...] = ()
    expectations: Expectations = field(default_factory=Expectations)
    #: Pod template contents (with their namespace) the API server accepted in a dry-run.
    judged: Recent = field(default_factory=lambda: Recent(JUDGED_TEMPLATES))
    #: Dry-runs in flight by fingerprint: clusters of one template created at
    #: once wait for the first one's verdict instead of each sending its own.
    _judging: dict[str, asyncio.Future[tuple[str, str] | None]] = field(default_factory=dict)
    #: Set once kopf has filled the indices (the first handler call).
    indexed: asyncio.Event = field(default_factory=asyncio.Event)
    _events: asyncio.Queue[tuple[Mapping[str, Any], str, str, str, str]] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: The crash point a test armed (``--test-crash-at``); None in production.
    crashes: CrashPoints | None = None

    def crash_point(self, name: str) -> None:
        """A step boundary of a pass: where a test may stop the process."""
        if self.crashes is not None:
            self.crashes.reach(name)

    def pods_of(self, key: Key, owner: str | None) -> list[PodView]:
        """The pods labelled for cluster ``key``; with ``owner`` only those whose
        controller is that UID (any other pod is never counted, changed or
        deleted: a label is anyone's to set)."""
        observed = list(self.pods[key]) if key in self.pods else []
        if owner is not None:
            observed = [p for p in observed if owner and p.owner_uid == owner]
        return self.expectations.apply(key, observed)

    def emit(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        """Record an Event without making the reconcile wait for it.

        Events are informational: posting them in order from a background
        task keeps a burst of pod creations from being paced by event writes.
        Messages quote users' configs and Ray's errors: they leave bounded and
        without credentials.
        """
        message = safe(message, EVENT_MESSAGE_LIMIT)
        if self._events is None:
            self._events = asyncio.Queue(maxsize=10_000)
            self.tasks += [asyncio.create_task(self._post_events()) for _ in range(EVENT_POSTERS)]
        try:
            # Stamped now: a queued post must not date the action late.
            self._events.put_nowait((obj, event_type, reason, message, now_iso()))
        except asyncio.QueueFull:
            log.warning("event queue full; dropped %s on %s", reason, obj["metadata"]["name"])

    async def _post_events(self) -> None:
        assert self._events is not None
        while True:
            obj, event_type, reason, message, at = await self._events.get()
            try:
                component = self.settings.operator_name
                await self.kube.event(obj, event_type, reason, message, component, at=at)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A poster that died would silence every later event until a
                # restart: one lost event is logged instead.
                log.exception("event %s on %s not posted", reason, obj.get("metadata", {}))

    async def judge(
        self, fingerprint: str, dry_run: Callable[[], Awaitable[tuple[str, str] | None]]
    ) -> tuple[str, str] | None:
        """The API server's verdict on a template content: ``dry_run`` runs at
        most once at a time per fingerprint, and never again once it passed."""
        if self.judged.seen(fingerprint):
            return None
        pending = self._judging.get(fingerprint)
        if pending is not None:
            return await asyncio.shield(pending)
        verdict: asyncio.Future[tuple[str, str] | None] = asyncio.get_running_loop().create_future()
        self._judging[fingerprint] = verdict
        try:
            failure = await dry_run()
        except BaseException as err:
            verdict.set_exception(err)
            verdict.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            verdict.set_result(failure)
            if failure is None:
                self.judged.add(fingerprint)
            return failure
        finally:
            del self._judging[fingerprint]

    def cached_cluster(self, key: Key) -> dict[str, Any] | None:
        """The RayCluster as the watch last delivered it, if any."""
        if self.cluster_objects is None or key not in self.cluster_objects:
            return None
        return next(iter(self.cluster_objects[key]), None)

    def network_children_of(self, key: Key) -> list[Mapping[str, Any]]:
        """The cluster's Ingresses and NetworkPolicies as the watches last showed them."""
        return [child for index in self.network_children if key in index for child in index[key]]

    def head_service_of(self, key: Key, name: str) -> Mapping[str, Any] | None:
        if key not in self.services:
            return None
        return next((s for s in self.services[key] if s["metadata"]["name"] == name), None)
