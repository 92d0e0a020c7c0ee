"""raykube and KubeRay side by side on one RayCluster workload (kwok nodes).

Each run gets a fresh control plane with an audit log, only its operator's
CRDs, and its operator under a client certificate of its own
(``raykube-operator`` / ``kuberay-operator``), so the audit log counts that
operator's requests and nobody else's. The workload, per run:

1. create N RayClusters of 1 head + 3 workers (50 per ``kubectl create``);
   wait until every one reports ``status.state: ready``;
2. scale every cluster from 3 to 5 workers (one server-side apply of all);
   wait until every cluster has its 6 pods;
3. delete every RayCluster; wait until the last pod is gone;
4. stay idle for ``--idle-seconds``.

Each phase ends when the operator has sent no request for ``QUIET_SECONDS``
(its events and status writes included). Per phase: wall seconds, the
operator's CPU seconds (``/proc/<pid>/stat``), its requests by verb and
resource (audit log); plus create -> ready per cluster (p50/p99, from a watch),
RSS before the first create and peak (VmHWM).

Configurations: raykube (its default 8 workers), KubeRay v1.6.2 at its default
``--reconcile-concurrency`` (1) and at raykube's worker count (8). Runs
alternate their order from one N to the next.

Usage: ``.venv/bin/python -m bench.sidebyside [--clusters 100 300 1000]
[--configs raykube kuberay-1 kuberay-8] [--idle-seconds 30]``.
Prints a table and writes ``bench/results/sidebyside-<N>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import percentile
from bench.raycluster_scale import cluster_manifest, node_plan
from e2e.kube import pod_ready
from localcluster import controlplane, processes
from localcluster.controlplane import ControlPlane
from tests.kubehelpers import OperatorProcess, metric
from tests.parity.run import install_kuberay_crds, start_kuberay

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
NAMESPACE = "bench"
WORKERS, SCALED_WORKERS = 3, 5
CREATE_BATCH = 50
#: A phase is over once the operator has been silent this long.
QUIET_SECONDS = 5.0
PHASE_LIMIT_SECONDS = 1800.0
RAYKUBE_WORKERS = 8
CONFIGS = ("raykube", "kuberay-1", f"kuberay-{RAYKUBE_WORKERS}")


def _names(n: int) -> list[str]:
    return [f"rc-{i:04d}" for i in range(n)]


def _as_list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


class Watch(threading.Thread):
    """A watch of one resource in the bench namespace, straight from the API
    server (as admin): ``on_event`` gets each event's type and object."""

    def __init__(
        self, cp: ControlPlane, path: str, on_event: Callable[[str, dict[str, Any]], None]
    ) -> None:
        super().__init__(daemon=True)
        self.cp = cp
        self.url = f"{cp.server}{path}?watch=1&allowWatchBookmarks=false"
        self.on_event = on_event
        self.stopped = threading.Event()

    def run(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.cp.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.cp.pki / "admin.crt"), str(self.cp.pki / "admin.key"))
        while not self.stopped.is_set():
            try:
                with urllib.request.urlopen(self.url, context=ctx, timeout=3600) as response:
                    for line in response:
                        event = json.loads(line)
                        self.on_event(event["type"], event["object"])
            except (OSError, ValueError):
                if not self.stopped.is_set():
                    time.sleep(0.5)

    def stop(self) -> None:
        # Closing the response under the reading thread blocks on its lock; the
        # read ends with an error once the control plane goes down.
        self.stopped.set()


@dataclass
class Observed:
    """What the watches saw, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pods: dict[str, set[str]] = field(default_factory=dict)
    ready_at: dict[str, float] = field(default_factory=dict)
    seen_at: dict[str, float] = field(default_factory=dict)
    #: Where create -> ready goes: the first pod of a cluster seen, and every
    #: pod of its first size Ready (the nodes' share, not the operator's).
    first_pod_at: dict[str, float] = field(default_factory=dict)
    pods_ready_at: dict[str, float] = field(default_factory=dict)
    ready_pods: dict[str, set[str]] = field(default_factory=dict)

    def on_pod(self, event: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        cluster = pod["metadata"].get("labels", {}).get("ray.io/cluster", "")
        ready = pod_ready(pod)
        now = time.monotonic()
        with self.lock:
            members = self.pods.setdefault(cluster, set())
            ready_ones = self.ready_pods.setdefault(cluster, set())
            if event == "DELETED":
                members.discard(name)
                ready_ones.discard(name)
                return
            members.add(name)
            self.first_pod_at.setdefault(cluster, now)
            if ready:
                ready_ones.add(name)
            if len(ready_ones) == 1 + WORKERS:
                self.pods_ready_at.setdefault(cluster, now)

    def split(self) -> dict[str, float]:
        """p50 of each leg of create -> ready: seen -> first pod (the
        operator's first pass), first pod -> all pods Ready (pod creation and
        the nodes), all pods Ready -> ``ready`` (the operator's last pass)."""
        with self.lock:
            legs: dict[str, list[float]] = {
                "seen_to_first_pod": [],
                "first_pod_to_pods_ready": [],
                "pods_ready_to_ready": [],
            }
            for c, seen in self.seen_at.items():
                first, pods, ready = (
                    self.first_pod_at.get(c),
                    self.pods_ready_at.get(c),
                    self.ready_at.get(c),
                )
                if first is None or pods is None or ready is None:
                    continue
                legs["seen_to_first_pod"].append(first - seen)
                legs["first_pod_to_pods_ready"].append(pods - first)
                legs["pods_ready_to_ready"].append(ready - pods)
        return {k: round(statistics.median(v), 2) for k, v in legs.items() if v}

    def on_cluster(self, event: str, cluster: dict[str, Any]) -> None:
        name = cluster["metadata"]["name"]
        with self.lock:
            # Both times from this watch: a batch's `kubectl create` returns
            # after a fast operator has made its first clusters ready.
            self.seen_at.setdefault(name, time.monotonic())
            if event != "DELETED" and (cluster.get("status") or {}).get("state") == "ready":
                self.ready_at.setdefault(name, time.monotonic())

    def clusters_with(self, pods: int) -> int:
        with self.lock:
            return sum(1 for members in self.pods.values() if len(members) == pods)

    def pod_total(self) -> int:
        with self.lock:
            return sum(len(members) for members in self.pods.values())


class Audit:
    """Reads the API server's audit log for one client's requests."""

    def __init__(self, cp: ControlPlane, user: str) -> None:
        self.path = controlplane.audit_log(cp)
        self.user = user
        self.offset = 0
        #: (epoch seconds received, verb, resource, seconds the server took)
        self.requests: list[tuple[float, str, str, float]] = []

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            if self.user.encode() not in line:
                continue
            entry = json.loads(line)
            if entry.get("stage") != "ResponseComplete":
                continue
            if entry.get("user", {}).get("username") != self.user:
                continue
            ref = entry.get("objectRef") or {}
            resource = ref.get("resource", "") + (
                "/" + ref["subresource"] if ref.get("subresource") else ""
            )
            when = datetime.datetime.fromisoformat(entry["requestReceivedTimestamp"])
            done = datetime.datetime.fromisoformat(entry.get("stageTimestamp") or when.isoformat())
            code = (entry.get("responseStatus") or {}).get("code", 0)
            verb = entry.get("verb", "") + ("" if 200 <= code < 300 else f" ({code})")
            took = (done - when).total_seconds()
            self.requests.append((when.timestamp(), verb, resource, took))

    def last(self) -> float:
        self.read()
        return self.requests[-1][0] if self.requests else 0.0

    def between(self, start: float, end: float) -> Counter[str]:
        self.read()
        return Counter(f"{v} {r}" for t, v, r, _ in self.requests if start <= t < end)

    def latency(self, start: float, end: float) -> tuple[float, float]:
        """p50 and p99 seconds the API server took over this client's
        requests (watches excluded) received in [start, end)."""
        self.read()
        took = sorted(x for t, v, _, x in self.requests if start <= t < end and v != "watch")
        if not took:
            return 0.0, 0.0
        return statistics.median(took), percentile(took, 99)


class Operator:
    """One operator process under its own client identity."""

    def __init__(self, cp: ControlPlane, config: str) -> None:
        self.cp = cp
        self.config = config
        self.user = "raykube-operator" if config == "raykube" else "kuberay-operator"
        self.kubeconfig = controlplane.user_kubeconfig(cp, self.user)
        self.pid = 0
        self._raykube: OperatorProcess | None = None

    def start(self) -> None:
        if self.config == "raykube":
            op = OperatorProcess(
                self.cp,
                self.cp.state / "logs",
                f"--namespace={NAMESPACE}",
                f"--workers={RAYKUBE_WORKERS}",
                kubeconfig=self.kubeconfig,
            )
            op.start()
            assert op.proc is not None
            self._raykube, self.pid = op, op.proc.pid
            return
        concurrency = int(self.config.rpartition("-")[2])
        self.pid = start_kuberay(
            self.cp, self.kubeconfig, [NAMESPACE], f"--reconcile-concurrency={concurrency}"
        )

    def stop(self) -> None:
        if self._raykube is not None:
            self._raykube.stop()
        elif self.pid:
            processes.stop_pid(self.pid)

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()
        # utime and stime are fields 14 and 15 of stat (11 and 12 after the name).
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def passes(self) -> tuple[float, float]:
        """raykube's RayCluster reconciles so far and their summed seconds, from
        its metrics ((0, 0) for KubeRay)."""
        if self._raykube is None:
            return 0.0, 0.0
        name = "raykube_reconcile_duration_seconds"
        return (
            metric(self._raykube, f"{name}_count", kind="RayCluster"),
            metric(self._raykube, f"{name}_sum", kind="RayCluster"),
        )

    def memory_mib(self) -> tuple[float, float]:
        """(RSS, peak RSS)."""
        return processes.memory_mib(self.pid)


_TICKS = 100.0


def _wait(what: str, done: Callable[[], bool], limit: float = PHASE_LIMIT_SECONDS) -> float:
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > limit:
            raise SystemExit(f"{what}: not done in {limit:.0f}s")
        time.sleep(0.5)
    return time.monotonic() - started


def _quiet(audit: Audit, limit: float = 300.0) -> None:
    """Until the operator has sent nothing for QUIET_SECONDS."""
    started = time.time()
    while time.time() - started < limit:
        time.sleep(1.0)
        if time.time() - max(audit.last(), started) >= QUIET_SECONDS:
            return


@dataclass
class PhaseFigures:
    seconds: float
    cpu_seconds: float
    requests: Counter[str]
    #: raykube's RayCluster passes in the phase: how many, and their summed wall time.
    passes: tuple[float, float] = (0.0, 0.0)
    #: p50 and p99 seconds the API server took over the operator's requests.
    latency: tuple[float, float] = (0.0, 0.0)

    def as_json(self) -> dict[str, Any]:
        count, seconds = self.passes
        return {
            "seconds": round(self.seconds, 2),
            "operator_cpu_seconds": round(self.cpu_seconds, 2),
            "api_requests": sum(self.requests.values()),
            "api_requests_by_kind": dict(self.requests.most_common()),
            "raycluster_passes": int(count),
            "raycluster_pass_mean_ms": round(1000 * seconds / count, 1) if count else None,
            "api_latency_p50_ms": round(1000 * self.latency[0], 1),
            "api_latency_p99_ms": round(1000 * self.latency[1], 1),
        }


class Profiler:
    """py-spy sampling the operator through one phase: collapsed stacks
    (``--format raw``) in ``directory``, one file per phase."""

    def __init__(self, directory: Path | None, op: Operator, n: int) -> None:
        self.directory, self.op, self.n = directory, op, n
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, phase: str) -> None:
        if self.directory is None or self.op.config != "raykube":
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        out = self.directory / f"profile-{self.op.config}-{self.n}-{phase}.txt"
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                "--nonblocking",
                "-o",
                str(out),
                "--pid",
                str(self.op.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)
            self.proc = None


def _phase(
    op: Operator,
    audit: Audit,
    act: Callable[[], None],
    done: Callable[[], bool],
    what: str,
    profiler: Profiler,
) -> PhaseFigures:
    print(f"[sidebyside]   {what}...", file=sys.stderr, flush=True)
    profiler.start(what.replace(" ", "-"))
    cpu, wall, began = op.cpu_seconds(), time.time(), time.monotonic()
    passes = op.passes()
    act()
    _wait(what, done)
    seconds = time.monotonic() - began
    _quiet(audit)
    profiler.stop()
    after = op.passes()
    spent = (after[0] - passes[0], after[1] - passes[1])
    end = time.time()
    return PhaseFigures(
        seconds,
        op.cpu_seconds() - cpu,
        audit.between(wall, end),
        spent,
        audit.latency(wall, end),
    )


def run(config: str, n: int, idle_seconds: float, profile: Path | None = None) -> dict[str, Any]:
    pods = n * (1 + SCALED_WORKERS)
    plan = node_plan(pods)
    state = Path(tempfile.mkdtemp(prefix="raykube-sidebyside-"))
    kuberay = config != "raykube"
    cp = controlplane.up(
        state, crds=None if kuberay else REPO / "crds", nodes=plan, quiet=True, audit=True
    )
    seen = Observed()
    watches = [
        Watch(cp, f"/api/v1/namespaces/{NAMESPACE}/pods", seen.on_pod),
        Watch(cp, f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters", seen.on_cluster),
    ]
    op: Operator | None = None
    try:
        if kuberay:
            install_kuberay_crds(cp)
        cp.kubectl("create", "namespace", NAMESPACE)
        op = Operator(cp, config)
        op.start()
        audit = Audit(cp, op.user)
        profiler = Profiler(profile, op, n)
        for w in watches:
            w.start()
        _quiet(audit)
        rss_start, _ = op.memory_mib()
        names = _names(n)

        def create() -> None:
            for first in range(0, n, CREATE_BATCH):
                batch = names[first : first + CREATE_BATCH]
                cp.kubectl(
                    "create",
                    "-f",
                    "-",
                    input=_as_list([cluster_manifest(x, WORKERS, NAMESPACE) for x in batch]),
                    timeout=300,
                )

        creating = _phase(op, audit, create, lambda: len(seen.ready_at) >= n, "all ready", profiler)
        latencies = [seen.ready_at[c] - t for c, t in seen.seen_at.items() if c in seen.ready_at]

        def scale() -> None:
            doc = _as_list([cluster_manifest(x, SCALED_WORKERS, NAMESPACE) for x in names])
            cp.kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=bench",
                "-f",
                "-",
                input=doc,
                timeout=600,
            )

        scaling = _phase(
            op,
            audit,
            scale,
            lambda: seen.clusters_with(1 + SCALED_WORKERS) >= n,
            "all scaled",
            profiler,
        )

        def delete() -> None:
            cp.kubectl(
                "delete", "rayclusters", "--all", "-n", NAMESPACE, "--wait=false", timeout=600
            )

        deleting = _phase(
            op, audit, delete, lambda: seen.pod_total() == 0, "all pods gone", profiler
        )
        cpu, wall = op.cpu_seconds(), time.time()
        time.sleep(idle_seconds)
        idle = audit.between(wall, time.time())
        idle_cpu = op.cpu_seconds() - cpu
        rss_end, rss_peak = op.memory_mib()
        return {
            "benchmark": "sidebyside",
            "config": config,
            "operator": "raykube" if not kuberay else "KubeRay v1.6.2",
            "concurrency": RAYKUBE_WORKERS if not kuberay else int(config.rpartition("-")[2]),
            "clusters": n,
            "all_ready_seconds": round(creating.seconds, 2),
            "create_to_ready_p50_seconds": round(statistics.median(latencies), 2),
            "create_to_ready_p99_seconds": round(percentile(sorted(latencies), 99), 2),
            "create_to_ready_p50_legs_seconds": seen.split(),
            "api_requests_per_cluster_created": round(sum(creating.requests.values()) / n, 2),
            "create": creating.as_json(),
            "scale": scaling.as_json(),
            "delete": deleting.as_json(),
            "idle": {
                "seconds": idle_seconds,
                "operator_cpu_seconds": round(idle_cpu, 2),
                "api_requests_per_second": round(sum(idle.values()) / idle_seconds, 3),
                "api_requests_by_kind": dict(idle.most_common()),
            },
            "rss_mib": {
                "before_first_create": round(rss_start, 1),
                "peak": round(rss_peak, 1),
                "after_idle": round(rss_end, 1),
            },
        }
    finally:
        for w in watches:
            w.stop()
        if op is not None:
            op.stop()
        controlplane.down(state)


ROWS = (
    ("all clusters ready (s)", lambda r: r["all_ready_seconds"]),
    ("create -> ready, p50 (s)", lambda r: r["create_to_ready_p50_seconds"]),
    (
        "p50 legs: to first pod / pods Ready / to ready (s)",
        lambda r: " / ".join(
            str(v) for v in r.get("create_to_ready_p50_legs_seconds", {}).values()
        ),
    ),
    ("operator CPU while creating (s)", lambda r: r["create"]["operator_cpu_seconds"]),
    (
        "raykube passes while creating / mean wall (ms)",
        lambda r: (
            f"{r['create'].get('raycluster_passes')} / {r['create'].get('raycluster_pass_mean_ms')}"
        ),
    ),
    (
        "API server's time per request while creating, p50 / p99 (ms)",
        lambda r: (
            f"{r['create'].get('api_latency_p50_ms')} / {r['create'].get('api_latency_p99_ms')}"
        ),
    ),
    ("operator CPU while scaling 3->5 (s)", lambda r: r["scale"]["operator_cpu_seconds"]),
    ("operator CPU while deleting (s)", lambda r: r["delete"]["operator_cpu_seconds"]),
    ("API requests per cluster created", lambda r: r["api_requests_per_cluster_created"]),
    ("API requests while scaling", lambda r: r["scale"]["api_requests"]),
    ("API requests while deleting", lambda r: r["delete"]["api_requests"]),
    ("idle API requests/s", lambda r: r["idle"]["api_requests_per_second"]),
    (
        "RSS before first create / peak (MiB)",
        lambda r: f"{r['rss_mib']['before_first_create']:.0f} / {r['rss_mib']['peak']:.0f}",
    ),
)


def table(results: list[dict[str, Any]]) -> str:
    head = ["figure"] + [f"N={r['clusters']} {r['config']}" for r in results]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, get in ROWS:
        lines.append("| " + " | ".join([label] + [str(get(r)) for r in results]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--profile", type=Path, help="write py-spy collapsed stacks of raykube's phases here"
    )
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for index, n in enumerate(args.clusters):
        order = args.configs if index % 2 == 0 else list(reversed(args.configs))
        out = args.results / f"sidebyside-{n}.json"
        for config in order:
            print(f"[sidebyside] N={n} {config}", file=sys.stderr, flush=True)
            result = run(config, n, args.idle_seconds, args.profile)
            results.append(result)
            # Each run is kept as it ends; a run of the same configuration replaces it.
            kept = json.loads(out.read_text()) if out.exists() else []
            kept = [r for r in kept if r["config"] != config] + [result]
            kept.sort(key=lambda r: CONFIGS.index(r["config"]) if r["config"] in CONFIGS else 99)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(kept, indent=2) + "\n")
            print(f"written to {out}", file=sys.stderr)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
