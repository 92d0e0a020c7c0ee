"""Kubernetes-style conditions (pure): ``lastTransitionTime`` moves only when
the status of a condition changes, never on a mere re-write; messages are
bounded and carry no credentials (``raykube.text``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raykube.text import safe

#: A condition says why in a sentence or a few of Ray's lines; the details
#: (whole tracebacks) are in the RayService's application statuses. The CRDs
#: refuse a message over 32768 characters, and a refused status write would be
#: retried forever; four conditions of 1024 leave the rest of a status's
#: budget to the application messages (``rayservice_status``).
MAX_CONDITION_MESSAGE = 1024


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool
    reason: str
    message: str = ""


def merge(
    previous: Sequence[Mapping[str, Any]] | None,
    wanted: Iterable[Cond],
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """The new conditions list; types not in ``wanted`` are dropped."""
    old = {c.get("type"): c for c in previous or []}
    out: list[dict[str, Any]] = []
    for c in wanted:
        status = "True" if c.status else "False"
        before = old.get(c.type)
        kept = before.get("lastTransitionTime") if before is not None else None
        changed = before is None or before.get("status") != status or not kept
        out.append(
            {
                "type": c.type,
                "status": status,
                "reason": c.reason,
                "message": safe(c.message, MAX_CONDITION_MESSAGE),
                "observedGeneration": generation or 0,
                "lastTransitionTime": now if changed else kept,
            }
        )
    return out


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def is_true(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.get("status") == "True"
