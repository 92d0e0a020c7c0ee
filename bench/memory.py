"""Memory benchmark: the operator's RSS at start, per RayCluster and per pod.

Two parts:

- imports: for each heavy dependency, the RSS of a fresh interpreter after
  importing it alone (minus a bare interpreter's), and which other heavy
  packages it pulled in; then the same for the operator's own entry point;
- operator: ``python -m raykube`` as a real process against a fresh control
  plane with kwok nodes. Its VmRSS once healthy with no object ("start"); after
  N RayClusters of 1 head + 3 workers are ready; and after every cluster is
  scaled to ``--scale-to`` workers (more pods, same clusters). The scale step
  gives the cost of a pod; the first step less its pods gives that of a cluster.

Each reading is taken once the operator has sent no API request for a quiet
window, so deferred work (events, status writes) is done.

Usage: ``.venv/bin/python -m bench.memory [--clusters 250] [--scale-to 7]
[--apply]`` (``--imports-only`` skips the control plane; ``--apply`` creates
the clusters with ``kubectl apply``, as users do, which stores a copy of each
manifest in an annotation, instead of ``kubectl create``). Prints the figures and writes
``bench/results/memory.json``. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.raycluster_scale import (
    WORKERS_PER_CLUSTER,
    _settle,
    cluster_manifest,
    node_plan,
    ready_count,
)
from localcluster import controlplane, processes
from tests.kubehelpers import OperatorProcess, wait_for

REPO = Path(__file__).resolve().parent.parent

#: What the operator's process may import, heaviest suspects first; the last
#: entries are the operator's own layers and its entry point.
MODULES = [
    "kopf",
    "kubernetes_asyncio.client",
    "aiohttp",
    "httpx",
    "pydantic",
    "prometheus_client",
    "yaml",
    "raykube.models",
    "raykube.adapters.kube",
    "raykube.handlers.registration",
    "raykube.cli",
]
#: Packages whose presence in ``sys.modules`` the table reports.
HEAVY = ["kubernetes_asyncio", "kopf", "aiohttp", "httpx", "pydantic", "prometheus_client", "yaml"]

_PROBE = """
import json, re, sys
def rss():
    status = open('/proc/self/status').read()
    return int(re.search(r'VmRSS:\\s+(\\d+)', status).group(1)) / 1024
name = sys.argv[1]
bare = rss()
try:
    __import__(name)
except ImportError:
    print(json.dumps({"missing": True}))
    raise SystemExit(0)
print(json.dumps({"rss": rss(), "bare": bare, "loaded": [
    m for m in sys.argv[2:] if m in sys.modules]}))
"""


def _import_cost(name: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, name, *HEAVY],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    found: dict[str, Any] = json.loads(out)
    return found


def imports() -> list[dict[str, Any]]:
    """Each module's RSS over a bare interpreter, the median of three runs."""
    rows = []
    for name in MODULES:
        runs = [_import_cost(name) for _ in range(3)]
        if runs[0].get("missing"):
            rows.append({"module": name, "not_installed": True})
            continue
        deltas = sorted(r["rss"] - r["bare"] for r in runs)
        rows.append(
            {
                "module": name,
                "rss_over_bare_mib": round(deltas[1], 1),
                "rss_mib": round(sorted(r["rss"] for r in runs)[1], 1),
                "also_loaded": [m for m in runs[0]["loaded"] if not name.startswith(m)],
            }
        )
    return rows


def _rss_mib(op: OperatorProcess) -> float:
    assert op.proc is not None
    return processes.memory_mib(op.proc.pid)[0]


def _running_pods(cp: controlplane.ControlPlane) -> int:
    out = cp.kubectl(
        "get", "pods", "-n", "bench", "-o", "jsonpath={.items[*].status.phase}", timeout=300
    ).stdout
    return out.split().count("Running")


def _names(n: int) -> list[str]:
    return [f"rc-{i:04d}" for i in range(n)]


def _create(cp: controlplane.ControlPlane, n: int, verb: str = "create") -> None:
    names = _names(n)
    for first in range(0, n, 50):
        items = [cluster_manifest(x) for x in names[first : first + 50]]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        cp.kubectl(verb, "-f", "-", input=json.dumps(doc), timeout=300)


def _scale(cp: controlplane.ControlPlane, n: int, workers: int) -> None:
    patch = json.dumps(
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": workers}]
    )
    for name in _names(n):
        cp.kubectl("patch", "-n", "bench", "raycluster", name, "--type=json", "-p", patch)


def operator(n: int, scale_to: int, crds: Path, verb: str = "create") -> dict[str, Any]:
    pods = n * (1 + WORKERS_PER_CLUSTER)
    scaled_pods = n * (1 + scale_to)
    plan = node_plan(scaled_pods)
    state = Path(tempfile.mkdtemp(prefix="raykube-bench-memory-"))
    cp = controlplane.up(state, crds=crds, nodes=plan, quiet=True)
    op = OperatorProcess(cp, state / "logs")
    limit = max(600.0, n * 3.0)
    try:
        op.start()
        cp.kubectl("create", "namespace", "bench")
        _settle(op)
        start = _rss_mib(op)
        print(f"start: {start:.1f} MiB", file=sys.stderr)

        _create(cp, n, verb)
        wait_for(lambda: ready_count(cp) >= n, timeout=limit, interval=3, what="ready")
        wait_for(lambda: _running_pods(cp) >= pods, timeout=limit, interval=3, what="pods")
        _settle(op)
        with_clusters = _rss_mib(op)
        print(f"{n} clusters, {pods} pods: {with_clusters:.1f} MiB", file=sys.stderr)

        _scale(cp, n, scale_to)
        wait_for(lambda: _running_pods(cp) >= scaled_pods, timeout=limit, interval=3, what="scaled")
        _settle(op)
        scaled = _rss_mib(op)
        print(f"{n} clusters, {scaled_pods} pods: {scaled:.1f} MiB", file=sys.stderr)

        per_pod = (scaled - with_clusters) / (scaled_pods - pods)
        per_cluster = (with_clusters - start - per_pod * pods) / n
        return {
            "created_by": f"kubectl {verb}",
            "clusters": n,
            "pods_before_scale": pods,
            "pods_after_scale": scaled_pods,
            "start_rss_mib": round(start, 1),
            "rss_with_clusters_mib": round(with_clusters, 1),
            "rss_after_scale_mib": round(scaled, 1),
            "peak_rss_mib": round(_peak_mib(op), 1),
            "mib_per_1000_pods": round(per_pod * 1000, 1),
            "mib_per_1000_clusters": round(per_cluster * 1000, 1),
            "mib_per_1000_clusters_with_their_4_pods": round((with_clusters - start) / n * 1000, 1),
        }
    finally:
        op.stop()
        controlplane.down(state)


def _peak_mib(op: OperatorProcess) -> float:
    assert op.proc is not None
    return processes.memory_mib(op.proc.pid)[1]


def _print_imports(rows: list[dict[str, Any]]) -> None:
    print(f"{'import':34} {'MiB over bare':>13} {'RSS MiB':>8}  also loaded")
    for row in rows:
        if row.get("not_installed"):
            print(f"{row['module']:34} {'(not installed)':>13}")
            continue
        also = ", ".join(row["also_loaded"])
        print(f"{row['module']:34} {row['rss_over_bare_mib']:13.1f} {row['rss_mib']:8.1f}  {also}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=250)
    parser.add_argument("--scale-to", type=int, default=7, help="workers per cluster, step 2")
    parser.add_argument("--imports-only", action="store_true")
    parser.add_argument("--apply", action="store_true", help="kubectl apply, not create")
    parser.add_argument("--crds", type=Path, default=REPO / "crds", help="CRD directory")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "memory.json")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "memory", "imports": imports()}
    _print_imports(result["imports"])
    if not args.imports_only:
        verb = "apply" if args.apply else "create"
        result["operator"] = operator(args.clusters, args.scale_to, args.crds, verb)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result.get("operator", {}), indent=2))
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
