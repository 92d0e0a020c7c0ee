"""Times as Kubernetes writes them, in one place.

``metav1.Time`` (status, annotations, events) is RFC 3339 at second precision
in UTC with a ``Z``; ``metav1.MicroTime`` (Lease renewals) keeps microseconds.
Every module reads and writes times through these functions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

_TIME = "%Y-%m-%dT%H:%M:%SZ"
_MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_utc() -> datetime:
    """Now, truncated to the second so a written and re-read time compare equal."""
    return datetime.now(UTC).replace(microsecond=0)


def format_time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(_TIME)


def format_micro_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime(_MICRO_TIME)


def now_iso() -> str:
    return format_time(datetime.now(UTC))


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as written by Kubernetes (or us); None when absent or garbled."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
