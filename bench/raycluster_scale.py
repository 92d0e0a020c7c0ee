"""Scale benchmark: N RayClusters (1 head + 3 workers) on kwok nodes.

Starts its own control plane (kwok nodes sized for the pods), runs the
operator as a real process, creates N RayClusters at once and measures:

- seconds until every cluster reports ``state: ready``;
- p50/p99 seconds from a cluster's creation to all 4 of its pods existing
  (times taken by this process when the create returned and when a pod watch
  delivered the 4th pod);
- the operator's peak RSS (VmHWM);
- API requests per second the operator sends while everything is idle.

Usage: ``.venv/bin/python -m bench.raycluster_scale [--clusters 100]``.
Prints the figures and writes ``bench/results/raycluster_scale-<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from localcluster import controlplane, kwok, processes
from tests.kubehelpers import OperatorProcess

REPO = Path(__file__).resolve().parent.parent
WORKERS_PER_CLUSTER = 3
PODS_PER_NODE = 250


def cluster_manifest(
    name: str, workers: int = WORKERS_PER_CLUSTER, namespace: str = "bench"
) -> dict[str, Any]:
    """The benchmarks' RayCluster: 1 head + ``workers`` of 1 CPU each."""
    container = {
        "name": "ray",
        "image": "rayproject/ray:2.60.0",
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }
    template = {"spec": {"containers": [container]}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {"rayStartParams": {}, "template": template},
            "workerGroupSpecs": [
                {
                    "groupName": "w",
                    "replicas": workers,
                    "minReplicas": 0,
                    "maxReplicas": 10,
                    "rayStartParams": {},
                    "template": template,
                }
            ],
        },
    }


class PodWatch(threading.Thread):
    """Records when the Nth pod of each cluster first appears."""

    def __init__(self, cp: controlplane.ControlPlane) -> None:
        super().__init__(daemon=True)
        self.cp = cp
        self.seen: dict[str, set[str]] = {}
        self.complete: dict[str, float] = {}
        self.proc: subprocess.Popen[str] | None = None

    def run(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(self.cp.bin / "kubectl"),
                f"--kubeconfig={self.cp.kubeconfig}",
                "get",
                "pods",
                "-n",
                "bench",
                "--watch",
                "-o",
                "custom-columns=NAME:.metadata.name,CLUSTER:.metadata.labels.ray\\.io/cluster",
                "--no-headers",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if len(parts) != 2:
                continue
            pod, cluster = parts
            pods = self.seen.setdefault(cluster, set())
            pods.add(pod)
            if len(pods) == 1 + WORKERS_PER_CLUSTER and cluster not in self.complete:
                self.complete[cluster] = time.monotonic()

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def ready_count(cp: controlplane.ControlPlane) -> int:
    out = cp.kubectl(
        "get",
        "rayclusters",
        "-n",
        "bench",
        "-o",
        'jsonpath={range .items[*]}{.status.state}{"\\n"}{end}',
        timeout=300,
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip() == "ready")


def _requests_total(op: OperatorProcess) -> float:
    pattern = re.compile(r"^raykube_kube_requests_total\{[^}]*\} ([0-9.e+]+)$", re.M)
    return sum(float(v) for v in pattern.findall(op.metrics()))


def _settle(op: OperatorProcess, quiet_window: float = 5.0, limit: float = 300.0) -> float:
    """Wait until the operator's deferred work (events) is done: a window with
    no request at all, or ``limit`` seconds. Returns how long that took."""
    started = time.monotonic()
    last = _requests_total(op)
    while time.monotonic() - started < limit:
        time.sleep(quiet_window)
        now = _requests_total(op)
        if now == last:
            break
        last = now
    return time.monotonic() - started


def _peak_rss_mib(op: OperatorProcess) -> float:
    assert op.proc is not None
    return processes.memory_mib(op.proc.pid)[1]


def node_plan(pods: int) -> kwok.NodePlan:
    """kwok nodes enough for ``pods`` pods of the benchmarks' clusters."""
    return kwok.NodePlan(
        cpu_nodes=max(2, math.ceil(pods / PODS_PER_NODE) + 1),
        gpu_nodes=0,
        max_pods=PODS_PER_NODE,
        cpus="1000",
        memory="4Ti",
    )


def run(n: int, idle_seconds: float) -> dict[str, Any]:
    pods = n * (1 + WORKERS_PER_CLUSTER)
    plan = node_plan(pods)
    state = Path(tempfile.mkdtemp(prefix="raykube-bench-"))
    cp = controlplane.up(state, crds=REPO / "crds", nodes=plan, quiet=True)
    op = OperatorProcess(cp, state / "logs")
    watch = PodWatch(cp)
    try:
        op.start()
        cp.kubectl("create", "namespace", "bench")
        watch.start()
        created: dict[str, float] = {}
        started = time.monotonic()
        batch = 50
        for first in range(0, n, batch):
            names = [f"rc-{i:04d}" for i in range(first, min(n, first + batch))]
            doc = {
                "apiVersion": "v1",
                "kind": "List",
                "items": [cluster_manifest(x) for x in names],
            }
            cp.kubectl("create", "-f", "-", input=json.dumps(doc), timeout=300)
            now = time.monotonic()
            created.update(dict.fromkeys(names, now))
        print(f"created {n} RayClusters in {time.monotonic() - started:.1f}s", file=sys.stderr)
        deadline = started + max(600, n * 2)
        while ready_count(cp) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"not all RayClusters became ready in {deadline - started:.0f}s")
            time.sleep(2)
        all_ready = time.monotonic() - started
        latencies = [watch.complete[c] - t for c, t in created.items() if c in watch.complete]
        settle = _settle(op)
        before = _requests_total(op)
        time.sleep(idle_seconds)
        idle_rps = (_requests_total(op) - before) / idle_seconds
        return {
            "benchmark": "raycluster_scale",
            "clusters": n,
            "pods": pods,
            "all_ready_seconds": round(all_ready, 2),
            "pods_created_p50_seconds": round(statistics.median(latencies), 3),
            "pods_created_p99_seconds": round(_percentile(latencies, 0.99), 3),
            "clusters_measured": len(latencies),
            "operator_peak_rss_mib": round(_peak_rss_mib(op), 1),
            "idle_api_requests_per_second": round(idle_rps, 3),
            "idle_window_seconds": idle_seconds,
            "settle_seconds_after_ready": round(settle, 1),
        }
    finally:
        watch.stop()
        op.stop()
        controlplane.down(state)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    result = run(args.clusters, args.idle_seconds)
    out = REPO / "bench" / "results" / f"raycluster_scale-{args.clusters}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
