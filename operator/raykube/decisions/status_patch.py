"""Status writes as JSON merge patches (RFC 7386), computed purely.

A controller computes the whole status it wants; what is sent is only the
difference from what is stored, with ``null`` for what went away (an
application or cluster no longer there), so one patch type serves both
controllers and a write carries the resourceVersion it was computed from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Rewritten on every write; a change in it alone is not a change.
TIMESTAMP = "lastUpdateTime"


def differs(stored: Mapping[str, Any] | None, computed: Mapping[str, Any]) -> bool:
    """True when writing ``computed`` would change anything (the time stamp aside)."""
    before = {k: v for k, v in (stored or {}).items() if k != TIMESTAMP and v is not None}
    after = {k: v for k, v in computed.items() if k != TIMESTAMP and v is not None}
    return before != after


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``old`` into ``new`` (lists are replaced whole)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = value
    return patch


def pace(
    stored: Mapping[str, Any] | None,
    computed: Mapping[str, Any],
    urgent: tuple[str, ...],
    urgent_conditions: tuple[str, ...],
    last_write: float | None,
    now: float,
    interval: float,
) -> float:
    """Seconds to hold back writing ``computed``: 0 when a key of ``urgent`` or
    the status of a condition type in ``urgent_conditions`` changes (what
    ``kubectl get``/``wait`` and other controllers act on), or when nothing
    was written for ``interval``; otherwise the rest of that interval. Pods
    of a starting cluster change one by one: their counts are written at most
    once an interval, and the last write always carries the latest counts."""
    before = stored or {}
    if last_write is None or any(before.get(k) != computed.get(k) for k in urgent):
        return 0.0

    def flags(status: Mapping[str, Any]) -> dict[str, Any]:
        return {
            c.get("type"): c.get("status")
            for c in status.get("conditions") or []
            if c.get("type") in urgent_conditions
        }

    if flags(before) != flags(computed):
        return 0.0
    return max(0.0, last_write + interval - now)
