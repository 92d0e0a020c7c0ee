"""The Helm-installed operator stopped at named crash points during blue-green
upgrades, with live traffic through the serve Service.

For each point: the test settings are put on the operator's Deployment with
``kubectl set env`` (the chart has no value for them), the RayService's
cluster config changes, the operator ends itself at the point (its container
restarts, last exit code ``CRASH_EXIT_CODE``), the settings are removed
again, and the upgrade must converge as one without a crash: one serving
cluster, the new one; no other RayCluster or Ray pod left; the deletion delay
honoured; no failed request. The points are the ones reached only when the
step acts (a head pod created, a serve config accepted), so the crash lands
inside the upgrade, not on the first pass after the settings change; the unit
tier (``tests/unit/test_crash_points.py``) covers every point.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any

import pytest

from e2e import stack
from e2e.kube import Kubectl, answers, eventually, is_ready, live, pod_ready
from e2e.load import LoadReport
from raykube.handlers.crashpoints import CRASH_EXIT_CODE, POINTS

from .conftest import Stack
from .rayservice import (
    FRUIT,
    Service,
    Timeline,
    assert_no_failures,
    finish,
    only_cluster,
    serving_cluster,
    serving_walkthrough,
    watch_until,
    with_env,
)
from .test_failures import DELETION_DELAY

pytestmark = pytest.mark.e2e

#: Reached only when their step acts: the pending cluster's head pod created
#: (its workers not yet), its workers created (status not yet written), its
#: serve config accepted by the head (not yet recorded on the cluster).
CRASH_AT = (
    "raycluster.after-head-pod",
    "raycluster.after-worker-batch",
    "rayservice.after-submit-put",
)
SETTINGS = ("RAYKUBE_TEST_CRASH_AT", "RAYKUBE_TEST_HOOKS")


@pytest.fixture(scope="module")
def svc(e2e_stack: Stack, e2e_namespace: str) -> Service:
    k, image = e2e_stack.kubectl(e2e_namespace), e2e_stack.images.runtime.ref
    return serving_walkthrough(k, image, e2e_stack.cluster, DELETION_DELAY)


def operator_pod(k: Kubectl) -> dict[str, Any] | None:
    found = live(k.items("pods", f"app.kubernetes.io/name={stack.RELEASE}"))
    return found[0] if len(found) == 1 else None


def container(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    found: dict[str, Any] = statuses[0]
    return found


class Operator:
    """The installed operator's Deployment, its settings changed and restored."""

    def __init__(self, e2e_stack: Stack) -> None:
        self.k = e2e_stack.kubectl(stack.OPERATOR_NAMESPACE)

    def set_env(self, *assignments: str) -> dict[str, Any]:
        """Change the Deployment's env; the new pod once it runs and is Ready."""
        self.k.run("set", "env", f"deployment/{stack.RELEASE}", *assignments)
        self.k.run("rollout", "status", f"deployment/{stack.RELEASE}", "--timeout=300s")
        return eventually(lambda: self._ready(), 240, "the operator's new pod Ready")

    def _ready(self) -> dict[str, Any] | None:
        pod = operator_pod(self.k)
        return pod if pod is not None and pod_ready(pod) else None

    def arm(self, point: str) -> dict[str, Any]:
        return self.set_env(f"{SETTINGS[0]}={point}", f"{SETTINGS[1]}=true")

    def disarm(self) -> dict[str, Any]:
        return self.set_env(*(f"{name}-" for name in SETTINGS))

    def crashed(self, name: str) -> dict[str, Any] | None:
        """The armed pod's container once it ended at the crash point."""
        pod = self.k.get("pod", name)
        if pod is None:
            return None
        state = container(pod)
        ended = (state.get("lastState") or {}).get("terminated") or {}
        return state if state.get("restartCount", 0) > 0 and ended else None


def event_time(k: Kubectl, reason: str, text: str) -> datetime:
    """When the operator posted the event with ``reason`` whose message has ``text``."""
    found = [
        e["firstTimestamp"]
        for e in k.items("events")
        if e.get("reason") == reason and text in str(e.get("message", ""))
    ]
    assert found, f"no {reason} event saying {text!r}"
    return datetime.fromisoformat(min(found))


def assert_converged(svc: Service, timeline: Timeline) -> None:
    """One serving cluster, the new one; nothing of any other left; the old
    one deleted no sooner than the deletion delay after the switch.

    The delay is read from the operator's own events (second resolution), not
    from the outside polls of the timeline: on a loaded machine a poll (three
    kubectl calls) can see the switch seconds late (a first run saw it 16 s
    before the deletion)."""
    only = only_cluster(svc)["metadata"]["name"]
    # The outside polls may miss the pending phase of a quick upgrade altogether
    # (they start once the operator is disarmed): then pending stays "".
    assert only == serving_cluster(svc.k) != timeline.old
    assert timeline.pending in ("", only), timeline.text()
    assert [c["metadata"]["name"] for c in live(svc.k.items("rayclusters"))] == [only]

    def only_its_pods() -> bool:
        ray_pods = svc.k.items("pods", "ray.io/is-ray-node=yes")
        return {p["metadata"]["labels"]["ray.io/cluster"] for p in ray_pods} == {only}

    eventually(only_its_pods, 180, "the old cluster's pods to be gone")
    switched = event_time(svc.k, "SwitchedTraffic", f"{only} (was {timeline.old})")
    deleted = event_time(svc.k, "DeletedRayCluster", f"/{timeline.old}:")
    kept = (deleted - switched).total_seconds()
    assert kept >= DELETION_DELAY - 1, f"deleted {kept:.0f} s after the switch; {timeline.text()}"
    assert is_ready(svc.get())
    svc.remember_cluster()


@pytest.mark.timeout(2400)
def test_operator_stopped_at_named_crash_points_converges_without_failed_requests(
    svc: Service, e2e_stack: Stack, load_reports: list[LoadReport], figures: dict[str, str]
) -> None:
    assert set(CRASH_AT) <= set(POINTS)
    operator = Operator(e2e_stack)
    load = svc.load(f"operator stopped at {len(CRASH_AT)} crash points", accept=(6,))
    timelines: list[str] = []
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        for generation, point in enumerate(CRASH_AT, start=1):
            armed = operator.arm(point)
            timeline = Timeline(old=svc.cluster["name"])
            svc.apply(with_env(svc.doc, "E2E_CRASH_GENERATION", str(generation)))
            timeline.started = time.monotonic()
            state = eventually(
                functools.partial(operator.crashed, armed["metadata"]["name"]),
                300, f"a stop at {point}",
            )  # fmt: skip
            ended = state["lastState"]["terminated"]
            assert ended.get("exitCode") == CRASH_EXIT_CODE, (point, ended)
            crashed_at = time.monotonic() - timeline.started
            operator.disarm()
            watch_until(svc, timeline, lambda t: t.done)
            assert_converged(svc, timeline)
            timelines.append(f"{point}: stopped {crashed_at:.0f} s in; {timeline.text()}")
            print(timelines[-1])
    finally:
        report = finish(load, load_reports)
        if any(name in (c.get("name") for c in _env(operator)) for name in SETTINGS):
            operator.disarm()
    figures["operator stopped at crash points"] = "; ".join(timelines)
    assert_no_failures(report)
    assert answers(svc.url, *FRUIT, 6)


def _env(operator: Operator) -> list[dict[str, Any]]:
    deployment = operator.k.get("deployment", stack.RELEASE) or {}
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    env: list[dict[str, Any]] = (containers or [{}])[0].get("env") or []
    return env
