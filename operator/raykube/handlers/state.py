"""What the operator keeps in memory about each object, in one record.

Everything here only saves work or routes events: the state that matters is
on the objects themselves, so a restarted operator starts with empty records
and loses nothing. One record per object, dropped by one ``forget``, so no
per-object dict can outlive its object.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from raykube.decisions.rayservice_view import ServeSnapshot
from raykube.handlers.workqueue import Key


@dataclass
class ObjectState:
    #: (reason, generation or message) of Warning events already posted.
    warned: set[tuple[str, str]] = field(default_factory=set)
    #: Fingerprints of what was applied or judged without a cache to compare
    #: against: "rbac" (the autoscaler's objects), "dry-run" (pod templates),
    #: "refused:<kind>/<name>" (a network child the API server refused).
    applied: dict[str, str] = field(default_factory=dict)
    #: RayCluster: slices a pass began and could not finish (its creation
    #: budget ran out); the next passes add their missing hosts.
    building: frozenset[str] = frozenset()
    #: Monotonic time of the last status write of this process (its pacing).
    status_written: float | None = None
    #: This process's last status write: (the resourceVersion it replaced, the
    #: one it made, the status as stored). The watch's echo of that write
    #: changes nothing a pass reads, so it queues no pass; a pass that runs
    #: before the echo arrives reads the write from here (``Controller.current``)
    #: instead of computing from the older status and patching into a 409.
    own_write: tuple[str, str, dict[str, Any]] | None = None
    #: The status's summary for the gauges: a RayCluster's state, or a
    #: RayService's conditions as {type: status}.
    summary: tuple[tuple[str, str], ...] = ()
    #: RayService: consecutive steady passes, the poll back-off.
    steady: int = 0
    #: RayService: cluster name -> (serve config hash, Ray's words) of a refused PUT.
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: RayService: cluster name -> (monotonic time, snapshot) of the last poll.
    polls: dict[str, tuple[float, ServeSnapshot]] = field(default_factory=dict)
    #: RayService: cluster name -> annotations written on it that the watch cache
    #: may not show yet (``None``: removed); dropped once it does.
    written: dict[str, dict[str, str | None]] = field(default_factory=dict)
    #: RayService: what its last good serve config Secret holds, as this process
    #: last read (once, on its first pass) or wrote it; None: not read yet.
    last_good: str | None = None
    #: RayService: a Secret of that name exists and is someone else's.
    last_good_taken: bool = False
    #: RayService: cluster name -> (Secret name, token) its dashboard calls
    #: carry, read once and dropped when a poll of that head fails.
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def own_version(self) -> str:
        """The resourceVersion this process's last status write made ("" if none)."""
        return self.own_write[1] if self.own_write else ""


class States:
    """The records of one kind of object, by (namespace, name)."""

    def __init__(self) -> None:
        self._records: dict[Key, ObjectState] = {}

    def of(self, key: Key) -> ObjectState:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = ObjectState()
        return record

    def get(self, key: Key) -> ObjectState | None:
        return self._records.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Key]:
        # A copy: callers may forget keys while iterating.
        return iter(list(self._records))

    def forget(self, key: Key) -> ObjectState | None:
        return self._records.pop(key, None)
