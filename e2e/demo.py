"""``./dev demo``: the walkthrough's RayService, served on a real local Kubernetes.

1. builds the operator and Ray runtime images from the Dockerfile (cached);
2. starts the local cluster: control plane, kwok nodes and a real node;
3. imports the images into the node and ``helm install``s the operator;
4. applies the project's walkthrough sample, ``samples/rayservice-walkthrough.yaml``,
   changed only where this machine needs it (each change is printed);
5. waits, showing progress, until the RayService is Ready;
6. sends the walkthrough's two requests through ``rayservice-sample-serve-svc``;
7. prints how to reach the service and how to take everything down.

The cluster is left running for you. It lives in the default state directory,
so ``python -m localcluster down`` stops it (a cluster already running there is
replaced).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e import sample, stack
from e2e.kube import Kubectl, is_ready, post, serve_url, summary, wait_routed
from localcluster import controlplane, processes
from localcluster.node import LocalCluster
from localcluster.progress import Progress

NAMESPACE = "default"
REQUESTS: list[tuple[str, Any, Any]] = [
    ("/fruit/", ["MANGO", 2], 6),
    ("/calc/", ["MUL", 3], "15 pizzas please!"),
]


@dataclass
class Timings:
    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[str, float]] = field(default_factory=list)
    _last: float = field(default_factory=time.monotonic)

    def done(self, step: str) -> None:
        now = time.monotonic()
        self.steps.append((step, now - self._last))
        self._last = now

    def table(self) -> str:
        lines = [f"  {name:<44} {_duration(seconds):>9}" for name, seconds in self.steps]
        total = time.monotonic() - self.started
        return "\n".join([*lines, f"  {'total':<44} {_duration(total):>9}"])


def _duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:04.1f} s" if minutes else f"{rest:.1f} s"


def say(text: str = "") -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        say("The demo needs root: the real node creates namespaces, cgroups and mounts.")
        return 2
    progress, timings = Progress("demo"), Timings()
    state = controlplane.default_state()
    built = _images(progress, timings)
    cluster = _cluster(state, built, progress, timings)
    k = Kubectl(cluster.cp, NAMESPACE)
    name, manifest = _apply(k, built, state)
    timings.done("RayService applied")
    if not _wait_ready(k, name, progress, args.timeout):
        _diagnose(k, name)
        return 1
    timings.done("RayService Ready")
    url = serve_url(k, name)
    wait_routed(url, *REQUESTS[0][:2], programmed=stack.routes(cluster, url))
    ok = _requests(url, name)
    timings.done("two requests answered")
    _next_steps(k, name, url, manifest)
    say("\nHow long each step took:\n" + timings.table())
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.demo",
        description="The walkthrough's RayService, served on a real local Kubernetes.",
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for the RayService to be Ready"
    )
    return parser


def _images(progress: Progress, timings: Timings) -> stack.Images:
    progress.step("building the operator and Ray runtime images (buildah; cached by input hash)")
    built = stack.build_images(progress)
    progress.step(f"images: {built.operator.ref}, {built.runtime.ref}")
    timings.done("images built (or found in the cache)")
    return built


def _cluster(
    state: Path, built: stack.Images, progress: Progress, timings: Timings
) -> LocalCluster:
    if controlplane.status(state):
        progress.step(f"a local cluster in {state} is running: replacing it with a fresh one")
    progress.step("starting the local cluster: control plane, kwok nodes and a real node")
    cluster = stack.cluster_up(state)
    timings.done("local cluster up (real node Ready)")
    progress.step("importing the images into the node's containerd")
    stack.load_images(cluster, built)
    timings.done("images imported into the node")
    progress.step(f"helm install {stack.RELEASE} charts/raykube -n {stack.OPERATOR_NAMESPACE}")
    stack.install_operator(cluster, built.operator)
    timings.done("operator installed with Helm (rolled out)")
    return cluster


def _apply(k: Kubectl, built: stack.Images, state: Path) -> tuple[str, Path]:
    localized = sample.localize(sample.load_sample(), built.runtime.ref)
    manifest = state / sample.SAMPLE.name
    manifest.write_text(yaml.safe_dump(localized.doc, sort_keys=False))
    shown = sample.SAMPLE.relative_to(stack.REPO)
    say(f"\nApplying {shown} with these changes for this machine:")
    for change in localized.changes:
        say(f"  - {change}")
    say(f"(the manifest as applied: {manifest})\n")
    say(k.run("apply", "-f", str(manifest)).strip())
    return str(localized.doc["metadata"]["name"]), manifest


def _wait_ready(k: Kubectl, name: str, progress: Progress, timeout: float) -> bool:
    """Print a line whenever what the cluster shows changes, until Ready."""
    last, last_print = "", 0.0

    def ready() -> bool:
        nonlocal last, last_print
        line = summary(k, name)
        if line != last or time.monotonic() - last_print > 30:
            progress.step(line)
            last, last_print = line, time.monotonic()
        return is_ready(k.get("rayservice", name))

    try:
        processes.wait_until(f"RayService {name} Ready", ready, timeout=timeout, interval=2)
    except processes.WaitTimeout:
        say(f"\nThe RayService was not Ready within {timeout:.0f}s.")
        return False
    final = summary(k, name)
    if final != last:
        progress.step(final)
    return True


def _diagnose(k: Kubectl, name: str) -> None:
    say(k.run("describe", "rayservice", name, check=False))
    say(k.run("get", "pods", "-o", "wide", check=False))
    logs = k.cp.kubectl(
        "logs", "-n", stack.OPERATOR_NAMESPACE, f"deployment/{stack.RELEASE}", "--tail=40",
        check=False,
    )  # fmt: skip
    say("operator log (last 40 lines):\n" + logs.stdout + logs.stderr)


def _requests(url: str, name: str) -> bool:
    say(f"\nRequests through Service {name}-serve-svc (ClusterIP {url.removeprefix('http://')}):")
    ok = True
    for path, body, want in REQUESTS:
        response = post(url, path, body)
        answer = response.text
        good = response.status_code == 200 and response.json() == want
        ok &= good
        mark = "" if good else f"   <-- expected {want!r} (HTTP {response.status_code})"
        say(f"  POST {path:<8} {json.dumps(body):<14} -> {answer}{mark}")
    return ok


def _next_steps(k: Kubectl, name: str, url: str, manifest: Path) -> None:
    kubectl = k.cp.bin / "kubectl"
    say(
        f"""
The service keeps running. From this machine (ClusterIPs are routed to the node):
  export KUBECONFIG={k.cp.kubeconfig}
  alias kubectl={kubectl}
  kubectl get rayservice,raycluster,pods,services
  kubectl describe rayservice {name}
  curl -X POST -H 'Content-Type: application/json' {url}/fruit/ -d '["MANGO", 2]'
  curl -X POST -H 'Content-Type: application/json' {url}/calc/ -d '["MUL", 3]'
  Ray dashboard: {_dashboard_url(k, name)}
Inside the cluster the same Service is {name}-serve-svc:8000
({name}-serve-svc.{NAMESPACE}.svc.cluster.local).
To try the walkthrough's steps 7 and 8, edit {manifest} and `kubectl apply -f` it.
Operator logs: kubectl logs -n {stack.OPERATOR_NAMESPACE} deployment/{stack.RELEASE}

Tear everything down (every process, by PID; images stay cached):
  {_python()} -m localcluster down"""
    )


def _python() -> str:
    """The interpreter, relative to the repository when it is the project's venv."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(stack.REPO))
    except ValueError:
        return str(exe)


def _dashboard_url(k: Kubectl, name: str) -> str:
    svc = k.get("service", f"{name}-head-svc")
    return f"http://{svc['spec']['clusterIP']}:8265" if svc else "(no head Service yet)"


if __name__ == "__main__":
    raise SystemExit(main())
