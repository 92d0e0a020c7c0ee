"""When a steady RayService is looked at again (pure)."""

from __future__ import annotations

from typing import Any

from raykube.decisions import rayservice_cadence as cadence
from raykube.decisions.rayservice import decide

from .rayservice_helpers import RUNNING, at, cluster, head, observe, service, with_status

APPLIED = {"conditions": [{"type": "ServeConfigApplied", "status": "True"}]}


def _delay(steady: int, **spec: Any) -> float:
    rs = with_status(service(**spec), active="rs-a")
    obs = observe(
        rs, [cluster("rs-a")], serve={"rs-a": RUNNING}, heads={"rs-a": head("rs-a")}, now=at(0)
    )
    return cadence.next_look(obs, decide(obs), APPLIED, steady).delay


def test_steady_looks_back_off_to_a_minute() -> None:
    # Thresholds off: nothing to be on time for.
    off = {"deploymentUnhealthySecondThreshold": 0, "serviceUnhealthySecondThreshold": 0}
    assert [_delay(n, **off) for n in (0, 1, 2, 3, 4, 9)] == [5, 10, 20, 40, 60, 60]


def test_a_short_threshold_keeps_steady_looks_within_a_quarter_of_it() -> None:
    assert _delay(9, deploymentUnhealthySecondThreshold=20) == 5
    assert (
        _delay(9, deploymentUnhealthySecondThreshold=300, serviceUnhealthySecondThreshold=40) == 10
    )
    assert _delay(9, deploymentUnhealthySecondThreshold=4) == cadence.BUSY_SECONDS
    assert _delay(9, deploymentUnhealthySecondThreshold=900) == cadence.STEADY_MAX_SECONDS
