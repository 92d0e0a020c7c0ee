"""When a steady RayService is looked at again (pure)."""

from __future__ import annotations

from typing import Any

from raykube.decisions import rayservice_cadence as cadence
from raykube.decisions.rayservice import decide

from .rayservice_helpers import RUNNING, apps, at, cluster, head, observe, service, with_status

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


def test_a_config_just_sent_is_looked_at_every_second_until_it_runs() -> None:
    """The first answer waits for the pass that sees RUNNING: every second for
    a minute after the config went, then KubeRay's two seconds."""

    def delay(sent: int, now: int, *states: str) -> float:
        rs = with_status(service(), active="rs-a")
        c = cluster("rs-a", serve_submitted_at=at(sent))
        obs = observe(
            rs, [c], serve={"rs-a": apps(*states)}, heads={"rs-a": head("rs-a")}, now=at(now)
        )
        return cadence.next_look(obs, decide(obs), {}, 0).delay

    assert delay(0, 5, "DEPLOYING", "RUNNING") == cadence.DEPLOYING_SECONDS
    assert delay(0, 70, "DEPLOYING", "RUNNING") == cadence.BUSY_SECONDS
    assert delay(0, 5, "RUNNING", "RUNNING") > cadence.DEPLOYING_SECONDS
