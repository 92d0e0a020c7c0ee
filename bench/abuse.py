"""Abuse benchmark (issue 14): one tenant's hostile inputs against the operator
every tenant shares.

Starts its own control plane (etcd, kube-apiserver, controllers, kwok nodes)
and the operator as a real process (``--dashboard-url-annotations``), a
healthy RayService (its cluster's head a real ``ray start --head`` on
loopback, as the control-plane tier does) and a healthy RayCluster. Then, for
each input of ``e2e/hostile.py`` in turn:

- applies it (in a namespace of its own unless it must meet the healthy
  objects) and waits, at most ``--settle-seconds``, for what it expects;
- changes the healthy RayCluster's and the healthy RayService's worker
  replicas and times each until the operator has created or deleted the pod;
- samples, all along, the operator's RSS (``/proc/<pid>/status``) and the
  time its ``/healthz`` takes to answer: kopf serves it on the operator's
  one event loop, so a request sent during a blocked loop waits for the block
  to end, and the slowest answer bounds the longest stall from below (to the
  probe's 50 ms period);
- records what the hostile object's status and Warning events say, whether
  the bystander objects came through untouched, and whether the operator
  process is the same one, alive.

Usage: ``.venv/bin/python -m bench.abuse [--only NAME ...]``. Prints a table
and writes ``bench/results/abuse.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from e2e import hostile
from e2e.hostile import HEALTHY_CLUSTER, HEALTHY_SERVICE, Hostile, SharedHead
from e2e.kube import Kubectl, is_ready
from localcluster import controlplane, processes
from localcluster.controlplane import ControlPlane
from tests.controlplane.rayservice_heads import HeadMapper, mapped_heads
from tests.kubehelpers import OperatorProcess

REPO = Path(__file__).resolve().parent.parent
#: The chart's memory limit for the operator (charts/raykube/values.yaml).
CHART_LIMIT_MIB = 512
PROBE_PERIOD = 0.05
#: A real Ray head and Serve on this shared 2-core machine take their time.
SERVE_TIMEOUT = 420
CHANGE_TIMEOUT = 120


class Probe(threading.Thread):
    """The operator's /healthz latency and RSS, sampled every ``PROBE_PERIOD``;
    ``window()`` returns the worst since the last call."""

    def __init__(self, op: OperatorProcess) -> None:
        super().__init__(daemon=True, name="probe")
        self.op = op
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._stall = 0.0
        self._rss = 0.0
        self.failures = 0

    def run(self) -> None:
        while not self._halt.is_set():
            proc = self.op.proc
            if proc is None:
                self._halt.wait(PROBE_PERIOD)
                continue
            started = time.monotonic()
            try:
                url = f"http://127.0.0.1:{self.op.health_port}/healthz"
                with urllib.request.urlopen(url, timeout=60) as answer:
                    answer.read()
            except urllib.error.HTTPError:
                pass  # an answer all the same: the loop ran
            except OSError:
                self.failures += 1
            took = time.monotonic() - started
            rss = _status_kib(proc.pid, "VmRSS") / 1024
            with self._lock:
                self._stall = max(self._stall, took)
                self._rss = max(self._rss, rss)
            self._halt.wait(PROBE_PERIOD)

    def window(self) -> tuple[float, float]:
        """(longest /healthz answer in seconds, peak RSS in MiB) since the last call."""
        with self._lock:
            found = (self._stall, self._rss)
            self._stall = self._rss = 0.0
        return found

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=70)


def _status_kib(pid: int, field: str) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    return 0.0


def _namespace(cp: ControlPlane, name: str) -> Kubectl:
    cp.kubectl("create", "namespace", name)
    cp.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
    return Kubectl(cp, name)


def _serving(k: Kubectl) -> str:
    rs = k.get("rayservice", HEALTHY_SERVICE)
    cluster = hostile.active_cluster(k, HEALTHY_SERVICE)
    return cluster if is_ready(rs) and hostile.worker_pods(k, cluster) >= 1 else ""


def _healthy(cp: ControlPlane, k: Kubectl, mapper: HeadMapper) -> SharedHead:
    """The healthy RayService serving and the healthy RayCluster ready."""
    started = time.monotonic()
    k.apply(hostile.healthy_rayservice())
    k.apply(hostile.healthy_raycluster())
    cluster = processes.wait_until(
        "the healthy RayService to serve", lambda: _serving(k), timeout=SERVE_TIMEOUT, interval=2
    )
    processes.wait_until(
        "the healthy RayCluster to be ready",
        lambda: (
            ((k.get("raycluster", HEALTHY_CLUSTER) or {}).get("status") or {}).get("state")
            == "ready"
        ),
        timeout=120,
        interval=1,
    )
    print(f"healthy objects serving in {time.monotonic() - started:.0f} s", file=sys.stderr)
    head = mapper.head(cluster)
    return SharedHead(head.dashboard_url, head.serve_url)


def _change(k: Kubectl, kind: str, name: str, cluster: str) -> float | None:
    """Toggle the worker replicas of ``kind/name`` between 1 and 2; seconds until
    ``cluster`` has that many worker pods (None: not within CHANGE_TIMEOUT)."""
    target = 2 if hostile.worker_pods(k, cluster) <= 1 else 1
    started = time.monotonic()
    hostile.scale_workers(k, kind, name, target)
    try:
        processes.wait_until(
            f"{kind} {name}: {target} workers",
            lambda: hostile.worker_pods(k, cluster) == target,
            timeout=CHANGE_TIMEOUT,
            interval=0.2,
        )
    except processes.WaitTimeout:
        return None
    return time.monotonic() - started


def run_case(
    cp: ControlPlane,
    op: OperatorProcess,
    probe: Probe,
    healthy: Kubectl,
    head: SharedHead,
    mapper: HeadMapper,
    index: int,
    h: Hostile,
    settle_seconds: float,
) -> dict[str, Any]:
    assert op.proc is not None
    pid = op.proc.pid
    k = healthy if h.beside_healthy else _namespace(cp, f"abuse-{index:02d}")
    if h.beside_healthy:
        # Its clusters are not the healthy RayService's: no Ray head for them.
        mapper.retired.update(name for kind, name in h.targets if kind == "RayCluster")
    refused = hostile.apply_all(k, [b.manifest for b in h.bystanders if b.manifest])
    assert not refused, refused
    before = {b.name: hostile.fingerprint(k, b) for b in h.bystanders}
    probe.window()
    started = time.monotonic()
    refused = hostile.apply_all(k, h.manifests)
    first, left = hostile.settle(k, h, refused, head, settle_seconds)
    settled = time.monotonic() - started
    rc_seconds = _change(healthy, "raycluster", HEALTHY_CLUSTER, HEALTHY_CLUSTER)
    serving = hostile.active_cluster(healthy, HEALTHY_SERVICE)
    rs_seconds = _change(healthy, "rayservice", HEALTHY_SERVICE, serving)
    last = hostile.observe(k, h, refused)
    left = hostile.problems(h, last) + hostile.replaced(first, last)
    left += [
        p
        for b in h.bystanders
        for p in hostile.bystander_problems(b, before[b.name], hostile.fingerprint(k, b))
    ]
    stall, rss = probe.window()
    alive = op.proc is not None and op.proc.poll() is None
    row = {
        "input": h.name,
        "finding": h.finding,
        "outcome": last.summary(),
        "outcome_brief": last.brief(),
        "as_expected": not left,
        "problems": left,
        "seconds_to_outcome": round(settled, 1),
        "peak_rss_mib": round(rss, 1),
        "longest_stall_seconds": round(stall, 3),
        "healthy_raycluster_change_seconds": _round(rc_seconds),
        "healthy_rayservice_change_seconds": _round(rs_seconds),
        "healthy_rayservice_ready": is_ready(healthy.get("rayservice", HEALTHY_SERVICE)),
        "operator_same_process": alive and op.proc is not None and op.proc.pid == pid,
    }
    _clean(cp, k, h)
    if not alive:
        print(f"operator exited after {h.name}; restarting it", file=sys.stderr)
        op.proc = None
        op.start()
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _clean(cp: ControlPlane, k: Kubectl, h: Hostile) -> None:
    if not h.beside_healthy:
        cp.kubectl("delete", "namespace", k.namespace, "--wait=false", check=False)
        return
    for kind, name in h.targets:
        k.run("delete", kind.lower(), name, "--wait=false", "--ignore-not-found")


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'input':38} {'ok':3} {'RSS MiB':>7} {'stall s':>7} {'RC s':>6} {'RS s':>6} "
        f"{'same pid':8}  outcome"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        rc, rs = r["healthy_raycluster_change_seconds"], r["healthy_rayservice_change_seconds"]
        lines.append(
            f"{r['input']:38} {'yes' if r['as_expected'] else 'NO':3} {r['peak_rss_mib']:7.1f} "
            f"{r['longest_stall_seconds']:7.3f} {_cell(rc):>6} {_cell(rs):>6} "
            f"{'yes' if r['operator_same_process'] else 'NO':8}  {r['outcome']}"
        )
        lines += [f"{'':40}! {p}" for p in r["problems"]]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(only: list[str], settle_seconds: float) -> dict[str, Any]:
    cases = [h for h in hostile.catalogue() if not only or h.name in only]
    state = Path(tempfile.mkdtemp(prefix="raykube-abuse-"))
    cp = controlplane.up(state, crds=REPO / "crds", quiet=True)
    op = OperatorProcess(cp, state / "logs", "--dashboard-url-annotations")
    probe = Probe(op)
    started = time.monotonic()
    try:
        op.start()
        probe.start()
        healthy = _namespace(cp, "healthy")
        with mapped_heads(cp, healthy.namespace, HEALTHY_SERVICE) as mapper:
            head = _healthy(cp, healthy, mapper)
            stall, rss = probe.window()
            baseline = {"peak_rss_mib": round(rss, 1), "longest_stall_seconds": round(stall, 3)}
            rows = []
            for index, h in enumerate(cases):
                rows.append(
                    run_case(cp, op, probe, healthy, head, mapper, index, h, settle_seconds)
                )
                print("\n".join(_table(rows[-1:]).splitlines()[2:]), flush=True)
        assert op.proc is not None
        return {
            "benchmark": "abuse",
            "chart_memory_limit_mib": CHART_LIMIT_MIB,
            "operator_peak_rss_mib_vmhwm": round(_status_kib(op.proc.pid, "VmHWM") / 1024, 1),
            "healthz_probe_failures": probe.failures,
            "bring_up": baseline,
            "seconds": round(time.monotonic() - started, 1),
            "inputs": rows,
            "operator_log": str(op.log),
        }
    finally:
        probe.stop()
        op.stop()
        controlplane.down(state)
        print(f"operator log and control-plane logs kept in {state}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="an input's name")
    parser.add_argument("--settle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    result = run(args.only, args.settle_seconds)
    out = REPO / "bench" / "results" / "abuse.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result["inputs"]))
    worst = max(result["inputs"], key=lambda r: r["longest_stall_seconds"])
    print(
        f"operator peak RSS (VmHWM) {result['operator_peak_rss_mib_vmhwm']} MiB of "
        f"{CHART_LIMIT_MIB} MiB; longest stall {worst['longest_stall_seconds']} s "
        f"({worst['input']}); {result['seconds']} s in all"
    )
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
