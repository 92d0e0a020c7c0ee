"""An in-place serveConfigV2 edit whose ``reconfigure`` raises, on a real Ray head,
under continuous requests: Ready turns False naming the app, and the operator
rolls back to the last good config after its window; with rollback switched
off the application stays down. The failed-request window is measured both ways."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml

from localcluster.controlplane import ControlPlane
from raykube.builders import labels
from tests.conftest import _FIGURES
from tests.kubehelpers import OperatorProcess, apply, look_again, wait_for

from .rayservice_heads import mapped_heads
from .test_rayservice_controller import (
    _start_and_serve,
    annotation,
    cond_message,
    condition,
    conds,
    events,
    rayservice,
    status,
)

pytestmark = pytest.mark.controlplane

#: Requests are sent every this many seconds (bounded: see Prober).
PERIOD = 0.1


def picky_config(version: int, fail: bool = False) -> str:
    user_config: dict[str, Any] = {"version": version}
    if fail:
        user_config["fail"] = True
    config = {
        "applications": [
            {
                "name": "picky",
                "import_path": "broken_apps:picky",
                "route_prefix": "/picky",
                "deployments": [{"name": "Picky", "user_config": user_config}],
            }
        ]
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Prober:
    """GETs ``url`` every PERIOD s in a thread, for at most ``limit`` s; each
    answer is checked against ``expected`` (the body, not only the status)."""

    url: str
    expected: set[str]
    limit: float = 300.0
    results: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        started = time.monotonic()
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set() and time.monotonic() - started < self.limit:
                sent = time.monotonic()
                try:
                    resp = client.get(self.url)
                    ok = resp.status_code == 200 and resp.text in self.expected
                except httpx.HTTPError:
                    ok = False
                self.results.append((sent, ok))
                self._stop.wait(max(0.0, PERIOD - (time.monotonic() - sent)))

    def since(self, t0: float) -> tuple[int, int, float]:
        """Requests sent since ``t0``, how many failed, and the seconds from
        the first to the last failure."""
        window = [(t, ok) for t, ok in self.results if t >= t0]
        failed = [t for t, ok in window if not ok]
        span = failed[-1] - failed[0] if failed else 0.0
        return len(window), len(failed), span

    def answering(self) -> bool:
        """The last three answers were good."""
        tail = self.results[-3:]
        return len(tail) == 3 and all(ok for _, ok in tail)


def _fail(
    cp: ControlPlane, ns: str, name: str, doc: dict[str, Any], version: int
) -> tuple[float, dict[str, Any]]:
    """Apply an in-place edit whose reconfigure raises; when, and the status
    once Ready is False."""
    t0 = time.monotonic()
    doc["spec"]["serveConfigV2"] = picky_config(version, fail=True)
    apply(cp, ns, doc)

    def ready_false() -> dict[str, Any] | None:
        st = status(cp, ns, name)
        return st if conds(st).get("Ready", ("", ""))[0] == "False" else None

    st = wait_for(ready_false, timeout=180, interval=0.5)
    # Serve may first report the deployment without a running replica, then the app failed.
    assert conds(st)["Ready"][1] in (
        "ServeNoRunningReplicas",
        "ServeDeployFailed",
        "ServeApplicationUnhealthy",
    )
    assert "picky" in cond_message(st, "Ready")
    return t0, st


def _rolled_back(cp: ControlPlane, ns: str, name: str, probe: Prober) -> None:
    wait_for(
        condition(cp, ns, name, "ServeConfigApplied", ("False", "ServeConfigRolledBack")),
        timeout=180,
        interval=0.5,
    )
    wait_for(probe.answering, timeout=180, interval=0.5)
    wait_for(condition(cp, ns, name, "Ready", ("True", "NonZeroServeEndpoints")), 60, 0.5)


def _report(label: str, probe: Prober, t0: float, ready_false: float) -> str:
    sent, failed, span = probe.since(t0)
    line = (
        f"Ready=False after {ready_false:.1f}s; {failed} of {sent} requests failed, "
        f"first to last failure {span:.1f}s"
    )
    print(f"\nreconfigure raises, {label}: {line}")
    _FIGURES[f"failing reconfigure, {label}"] = line
    return line


def test_a_failing_reconfigure_is_rolled_back_within_its_window(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-rollback"
    doc = rayservice(name)
    doc["spec"]["serveConfigV2"] = picky_config(1)
    doc["metadata"]["annotations"] = {labels.AUTO_ROLLBACK: "false"}
    with mapped_heads(cp, ns, name) as heads:
        first, _ = _start_and_serve(cp, ns, doc, heads)
        good_hash = annotation(cp, ns, first, labels.SERVE_CONFIG_HASH)
        with Prober(heads.head(first).serve_url + "/picky", expected={"v1"}) as probe:
            wait_for(probe.answering, timeout=60, interval=0.5)

            # Before: rollback off. The app stays down; only Ready says so.
            t0, _ = _fail(cp, ns, name, doc, 2)
            ready_false = time.monotonic() - t0
            # Past the 15 s a rollback would take, and still down.
            wait_for(lambda: probe.results[-1][0] - t0 > 25, timeout=120, interval=0.5)
            assert not probe.answering()
            assert conds(status(cp, ns, name))["ServeConfigApplied"][0] == "False"
            _report("rollback off, first 25 s", probe, t0, ready_false)

            # Switched on: the window has long passed, so it rolls back at once.
            del doc["metadata"]["annotations"]
            apply(cp, ns, doc)
            _rolled_back(cp, ns, name, probe)
            assert annotation(cp, ns, first, labels.SERVE_CONFIG_HASH) == good_hash

            # After: a new failing edit, rollback on (default 15 s window).
            t1, _ = _fail(cp, ns, name, doc, 3)
            ready_false = time.monotonic() - t1
            _rolled_back(cp, ns, name, probe)
            st = status(cp, ns, name)
            assert conds(st)["RollbackInProgress"] == ("False", "RollbackComplete")
            assert "picky" in cond_message(st, "ServeConfigApplied")
            _report("rollback on", probe, t1, ready_false)

        # The failed config is not sent again until the spec changes.
        look_again(cp, operator, ns, "rayservice", name, "RayService", passes=3)
        assert annotation(cp, ns, first, labels.SERVE_CONFIG_HASH) == good_hash
        rolled = annotation(cp, ns, first, labels.SERVE_CONFIG_ROLLED_BACK)
        assert rolled and rolled != good_hash
        warnings = [r for kind, r, _ in events(cp, ns) if kind == "Warning"]
        assert warnings.count("RollbackInProgress") == 2
        assert "ServeConfigRolledBack" in warnings
