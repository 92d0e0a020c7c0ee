"""Soak: the walkthrough RayService under steady load for an hour (by default)
while its spec changes every few minutes.

    .venv/bin/python -m bench.soak [--minutes 60] [--every 180] [--clients 8]

It starts its own local cluster with a real node (state under
``cache_root()/clusters/soak-<pid>``), builds and imports the images, installs
the operator with Helm and applies the walkthrough sample. Then, phase after
phase, ``--every`` seconds each, it applies one change and keeps the load on:

1. serve edit: MangoStand's price 3 -> 4 (answers 6 -> 8), in place;
2. scale: the worker group 1 -> 2;
3. cluster upgrade: a new env var in the Ray containers (blue-green);
4. serve edit: the price back to 3;
5. scale: 2 -> 1;
6. cluster upgrade again; and round again until the time is up.

Every answer is checked (6 or 8, status 200). Each phase gets its own load
report (requests, failed, p50/p99); the operator's RSS (its container's
processes, from /proc) is sampled every 30 s. It prints both and writes
``bench/results/soak.json``; the cluster is stopped at the end. A benchmark,
not a test: it is not part of CI.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e import sample, stack
from e2e.kube import Kubectl, eventually, is_ready, live, serve_url, wait_routed
from e2e.load import BackgroundLoad, LoadReport
from localcluster import node, versions
from localcluster.node import LocalCluster

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
NAMESPACE = "default"
FRUIT: tuple[str, Any] = ("/fruit/", ["MANGO", 2])
ANSWERS = (6, 8)
RSS_EVERY_S = 30.0
DELETION_DELAY = 20

Change = Callable[[dict[str, Any], int], tuple[str, dict[str, Any]]]


def _price(doc: dict[str, Any], round_: int) -> tuple[str, dict[str, Any]]:
    config = sample.serve_config(doc)
    mango = sample.deployment(config, "fruit_app", "MangoStand")
    old = mango["user_config"]["price"]
    mango["user_config"]["price"] = 4 if old == 3 else 3
    return f"serve edit: price {old} -> {mango['user_config']['price']}", sample.with_serve_config(
        doc, config
    )


def _scale(doc: dict[str, Any], round_: int) -> tuple[str, dict[str, Any]]:
    out = copy.deepcopy(doc)
    group = out["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    old = group["replicas"]
    group["replicas"] = 2 if old == 1 else 1
    group["maxReplicas"] = max(group.get("maxReplicas", 2), 2)
    return f"scale: workers {old} -> {group['replicas']}", out


def _upgrade(doc: dict[str, Any], round_: int) -> tuple[str, dict[str, Any]]:
    out = copy.deepcopy(doc)
    for _, container in sample.containers(out):
        env = [e for e in container.get("env") or [] if e.get("name") != "SOAK_ROUND"]
        container["env"] = [*env, {"name": "SOAK_ROUND", "value": str(round_)}]
    return f"cluster upgrade: SOAK_ROUND={round_}", out


CHANGES: tuple[Change, ...] = (_price, _scale, _upgrade)


@dataclass(eq=False)  # a Thread must stay hashable
class RssSampler(threading.Thread):
    """The operator container's RSS (MiB), every ``RSS_EVERY_S`` seconds."""

    cluster: LocalCluster
    ops: Kubectl
    started: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        while not self.stopped.is_set():
            mib = self.rss_mib()
            if mib:
                self.samples.append((time.monotonic() - self.started, mib))
            self.stopped.wait(RSS_EVERY_S)

    def rss_mib(self) -> float:
        try:
            pods = live(self.ops.items("pods", f"app.kubernetes.io/name={stack.RELEASE}"))
            if not pods:
                return 0.0
            pids = stack.container_pids(self.cluster, pods[0])
        except Exception:  # a sample missed (the API server busy) is not a failure
            return 0.0
        total_kib = 0
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        return total_kib / 1024


def _serving(k: Kubectl, name: str) -> bool:
    rs = k.get("rayservice", name) or {}
    status = rs.get("status") or {}
    return is_ready(rs) and not (status.get("pendingServiceStatus") or {}).get("rayClusterName")


def soak(
    cluster: LocalCluster, built: stack.Images, minutes: float, every: float, clients: int
) -> dict[str, Any]:
    k = Kubectl(cluster.cp, NAMESPACE)
    doc = sample.localize(sample.load_sample(), built.runtime.ref).doc
    doc["spec"]["rayClusterDeletionDelaySeconds"] = DELETION_DELAY
    name = str(doc["metadata"]["name"])
    k.apply(doc)
    eventually(lambda: is_ready(k.get("rayservice", name)), 900, f"{name} Ready")
    url = serve_url(k, name)
    wait_routed(url, *FRUIT, programmed=stack.routes(cluster, url))
    started = time.monotonic()
    sampler = RssSampler(cluster, Kubectl(cluster.cp, stack.OPERATOR_NAMESPACE), started)
    sampler.start()
    phases: list[dict[str, Any]] = []
    deadline = started + minutes * 60
    index = 0
    try:
        while time.monotonic() < deadline:
            change = CHANGES[index % len(CHANGES)]
            what, doc = change(doc, index // len(CHANGES) + 1)
            load = BackgroundLoad(
                what, url, *FRUIT, accept=ANSWERS, concurrency=clients,
                max_requests=10**7, max_seconds=every + 600,
            ).start()  # fmt: skip
            began = time.monotonic() - started
            k.apply(doc)
            end = min(deadline, time.monotonic() + every)
            time.sleep(max(0.0, end - time.monotonic()))
            settled = _serving(k, name)
            report = load.stop()
            phases.append(_phase(report, began, settled))
            print(_line(phases[-1]), flush=True)
            index += 1
    finally:
        sampler.stopped.set()
        sampler.join(timeout=60)
    return {
        "minutes": minutes,
        "every_s": every,
        "clients": clients,
        "phases": phases,
        "rss_mib": [[round(t), round(m, 1)] for t, m in sampler.samples],
        "failed": sum(p["failed"] for p in phases),
        "requests": sum(p["requests"] for p in phases),
    }


def _phase(report: LoadReport, began: float, settled: bool) -> dict[str, Any]:
    return {
        "change": report.name,
        "at_s": round(began),
        "requests": report.requests,
        "failed": len(report.failures),
        "failures": report.failure_kinds(),
        "p50_ms": round(report.p50_ms, 1),
        "p99_ms": round(report.p99_ms, 1),
        "rate": round(report.rate, 1),
        "settled_at_end": settled,
    }


def _line(p: dict[str, Any]) -> str:
    return (
        f"+{p['at_s']:>5}s  {p['change']:<34} {p['requests']:>6} req  {p['failed']:>3} failed  "
        f"p50 {p['p50_ms']:>7.1f} ms  p99 {p['p99_ms']:>7.1f} ms"
        + ("" if p["settled_at_end"] else "  (not settled at the phase's end)")
    )


def summary(result: dict[str, Any]) -> str:
    lines = [_line(p) for p in result["phases"]]
    rss = result["rss_mib"]
    if rss:
        first, last = rss[0][1], rss[-1][1]
        peak = max(m for _, m in rss)
        lines.append(
            f"operator RSS: {first:.1f} MiB at start, {last:.1f} MiB at the end, "
            f"peak {peak:.1f} MiB ({len(rss)} samples, every {RSS_EVERY_S:.0f} s)"
        )
    lines.append(f"total: {result['requests']} requests, {result['failed']} failed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=180.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    built = stack.build_images()
    state = versions.cache_root() / "clusters" / f"soak-{os.getpid()}"
    cluster = stack.cluster_up(state, quiet=True)
    try:
        stack.load_images(cluster, built)
        stack.install_operator(cluster, built.operator)
        result = soak(cluster, built, args.minutes, args.every, args.clients)
    finally:
        node.cluster_down(state)
        shutil.rmtree(state, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"wrote {args.out}")
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
