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
