"""Status write pacing (pure): urgent changes at once, pod counts at most once
an interval."""

from __future__ import annotations

from typing import Any

from raykube.decisions.status_patch import pace
from raykube.handlers.raycluster import (
    STATUS_PACE_SECONDS,
    STATUS_URGENT,
    STATUS_URGENT_CONDITIONS,
)


def status(state: str = "", ready: int = 0, failure: str | None = None) -> dict[str, Any]:
    conditions = [{"type": "HeadPodReady", "status": "True" if ready else "False"}]
    if failure is not None:
        conditions.append({"type": "ReplicaFailure", "status": failure})
    return {
        "state": state,
        "readyWorkerReplicas": ready,
        "observedGeneration": 1,
        "conditions": conditions,
    }


def hold(stored: dict[str, Any], computed: dict[str, Any], last: float | None, now: float) -> float:
    return pace(
        stored, computed, STATUS_URGENT, STATUS_URGENT_CONDITIONS, last, now, STATUS_PACE_SECONDS
    )


def test_the_first_write_of_a_process_is_never_held() -> None:
    assert hold(status(), status(ready=1), None, 100.0) == 0.0


def test_pod_counts_wait_for_the_rest_of_the_interval() -> None:
    assert hold(status(), status(ready=1), 100.0, 100.25) == STATUS_PACE_SECONDS - 0.25
    assert hold(status(), status(ready=1), 100.0, 100.0 + STATUS_PACE_SECONDS) == 0.0


def test_state_and_failures_are_written_at_once() -> None:
    assert hold(status(), status(state="ready", ready=3), 100.0, 100.1) == 0.0
    assert hold(status(), status(failure="True"), 100.0, 100.1) == 0.0
    generation = {**status(), "observedGeneration": 2}
    assert hold(status(), generation, 100.0, 100.1) == 0.0
