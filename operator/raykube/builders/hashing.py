"""The one hash rule, and the one annotation that carries it.

Every digest the operator writes or compares (a child's desired content, a
rayClusterConfig, a serveConfigV2) is the SHA-256 of the value's canonical
JSON (sorted keys, no spaces) cut to 20 hex digits. The digests are kept on
objects, so this rule must not change: a different rule would make every
existing cluster look out of date after an operator upgrade.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from raykube.builders.labels import SPEC_HASH

DIGEST_LENGTH = 20


def digest(value: Any) -> str:
    """A short, stable digest of a JSON value (key order does not matter)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_LENGTH]


def stamped(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with the digest of its own content in the ``SPEC_HASH`` annotation."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(SPEC_HASH, None)
    meta["annotations"] = annotations
    out["metadata"] = meta
    annotations[SPEC_HASH] = digest(out)
    return out


def stamp_of(obj: Mapping[str, Any] | None) -> str | None:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SPEC_HASH)
    return value if isinstance(value, str) else None


def unchanged(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """True when ``live`` was applied from exactly ``desired`` (both stamped)."""
    want = stamp_of(desired)
    return want is not None and want == stamp_of(live)
