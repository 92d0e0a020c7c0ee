"""A hash of a desired object, stamped on it, so an unchanged child is not
re-applied on every reconcile (an idle operator sends no writes)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

DESIRED_HASH = "raykube.io/desired-hash"


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def stamped(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with the hash of its own content in an annotation."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(DESIRED_HASH, None)
    meta["annotations"] = annotations
    out["metadata"] = meta
    annotations[DESIRED_HASH] = digest(out)
    return out


def unchanged(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """True when ``live`` was applied from exactly ``desired`` (both stamped)."""
    if live is None:
        return False
    want = (desired.get("metadata") or {}).get("annotations", {}).get(DESIRED_HASH)
    have = (live.get("metadata") or {}).get("annotations", {}).get(DESIRED_HASH)
    return want is not None and want == have
