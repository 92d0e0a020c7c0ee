"""Named places between the steps of a reconcile pass where a test may stop
the operator dead.

A restarted operator must continue from what is on the objects alone
(``docs/architecture.md``). To prove it at every step, not only where a
``SIGKILL`` happens to land, each step boundary of both controllers calls
``Runtime.crash_point(name)``. Nothing happens unless the process was started
with ``--test-crash-at=<name>[#<n>]`` *and* ``--test-hooks`` (the chart sets
neither, and ``refusal`` stops a process given the first without the second);
then the n-th reaching of ``<name>`` (the first by default) ends the process
with ``os._exit(CRASH_EXIT_CODE)``: no ``finally``, no flush, no event posted
afterwards, as a kill would. The unit tier passes its own ``stop`` that raises
``Crashed`` instead, and throws the whole runtime away.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from raykube.settings import Settings

#: The exit status of a process stopped at a crash point (distinct from a
#: Python error's 1 and a signal's 128+n).
CRASH_EXIT_CODE = 87

#: Every crash point, in the order a pass reaches them. The handlers name
#: them; the tests enumerate them from here.
RAYSERVICE_POINTS = (
    "rayservice.after-observe",
    "rayservice.after-deletions",
    "rayservice.after-new-cluster",
    "rayservice.after-submit-put",
    "rayservice.after-submissions",
    "rayservice.after-resize-put",
    "rayservice.after-resizes",
    "rayservice.after-rollback-intent",
    "rayservice.after-rollback-put",
    "rayservice.after-rollback",
    "rayservice.after-traffic-labels",
    "rayservice.after-gateway",
    "rayservice.after-services",
    "rayservice.after-deletion-times",
    "rayservice.after-cluster-notes",
    "rayservice.after-group-sizes",
    "rayservice.after-suspension",
    "rayservice.after-serve-labels",
    "rayservice.after-service-notes",
    "rayservice.after-status",
)
RAYCLUSTER_POINTS = (
    "raycluster.after-head-service",
    "raycluster.after-pods-deleted",
    "raycluster.after-head-pod",
    "raycluster.after-worker-batch",
    "raycluster.after-pods",
    "raycluster.after-status",
)
POINTS = RAYSERVICE_POINTS + RAYCLUSTER_POINTS


class Crashed(BaseException):
    """What the unit tier's ``stop`` raises: a BaseException, so no
    ``except Exception`` on the way up mistakes it for an error to handle."""


def _exit(name: str) -> NoReturn:
    # One unbuffered line for `kubectl logs --previous`; nothing else runs.
    os.write(2, f"raykube: stopped at crash point {name} (--test-crash-at)\n".encode())
    os._exit(CRASH_EXIT_CODE)


def parse(spec: str) -> tuple[str, int]:
    """``<name>[#<n>]`` as (name, n); ValueError naming what is wrong."""
    name, sep, count = spec.partition("#")
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}; known: {', '.join(POINTS)}")
    if not sep:
        return name, 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"crash point {spec!r}: the count after '#' must be a number >= 1")
    return name, int(count)


def refusal(settings: Settings) -> str:
    """Why the process must not start with these settings ("" when it may)."""
    if not settings.test_crash_at:
        return ""
    if not settings.test_hooks:
        return "--test-crash-at (RAYKUBE_TEST_CRASH_AT) is for tests only: it needs --test-hooks"
    try:
        parse(settings.test_crash_at)
    except ValueError as err:
        return str(err)
    return ""


@dataclass
class CrashPoints:
    """One armed crash point and how often each point was reached."""

    name: str
    nth: int = 1
    stop: Callable[[str], None] = _exit
    reached: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_settings(cls, settings: Settings) -> CrashPoints | None:
        problem = refusal(settings)
        if problem:
            raise ValueError(problem)
        if not settings.test_crash_at:
            return None
        return cls(*parse(settings.test_crash_at))

    def reach(self, name: str) -> None:
        self.reached[name] += 1
        if name == self.name and self.reached[name] == self.nth:
            self.stop(name)
