"""``kubectl apply`` -> the first correct answer, on the real node.

    .venv/bin/python -m bench.first_answer [--runs 2]

One local cluster with a real node (state under
``cache_root()/clusters/first-answer-<pid>``), the images built and imported,
the operator installed with Helm. Then, ``--runs`` times, in turn:

- **raykube**: the walkthrough RayService (localized as the e2e tier does)
  applied; timed from the apply: the head pod Ready, every worker Ready, the
  RayService Ready, the serve Service routed by kube-proxy, and the first
  200 answer of ``/fruit/`` with the right price; then a blue-green upgrade
  (a new env var) timed from its apply to the status naming the new cluster
  as the one that serves (``activeServiceStatus.rayClusterName``); then deleted,
  and the next run waits until its pods are gone;
- **KubeRay** (v1.6.2, the parity tier's build): the same manifest and the
  same timings, with raykube's Deployment scaled to 0 and KubeRay's CRDs in
  place of raykube's. KubeRay runs on the host (loopback metrics and health
  ports) in a mount namespace of its own whose ``/etc/resolv.conf`` names
  the node's CoreDNS, since it reaches each head's dashboard by the head
  Service's cluster DNS name; the host has routes to pod and Service
  addresses. raykube's CRDs and Deployment come back after it;
- **plain Ray**: one pod of the same image with the cluster's resources
  added up (head and workers) running ``ray start --head`` and ``serve
  deploy`` of the same serve config, timed from the apply to the first right
  answer at the pod's address (the floor: no operator, no Service, no
  second node).

The order alternates from one round to the next (raykube, KubeRay, plain
Ray; then the reverse).

Every answer is checked. Pods, the RayService's status and events are
followed by ``kubectl get --watch`` streams (each change marked when it
arrives); the first right answer by polling every 0.25 s.
Prints a table and writes ``bench/results/first_answer.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from e2e import sample, stack
from e2e.kube import Kubectl, eventually, is_ready, live, pod_ready, serve_url
from localcluster import controlplane, node, processes, versions
from localcluster.node import LocalCluster
from tests.parity.run import install_kuberay_crds, start_kuberay

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
NAMESPACE = "default"
PATH, BODY, ANSWER = "/fruit/", ["MANGO", 2], 6
POLL_S = 0.25
READ_S = 0.5
LIMIT_S = 900.0
PLAIN = "plain-ray"


def _answers(url: str) -> bool:
    try:
        response = httpx.post(f"{url}{PATH}", json=BODY, timeout=5)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    try:
        return bool(response.json() == ANSWER)
    except ValueError:
        return response.text.strip() == str(ANSWER)


@dataclass
class Moments:
    """Seconds after the apply at which each thing was first seen."""

    started: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)

    def mark(self, what: str) -> None:
        self.seen.setdefault(what, round(time.monotonic() - self.started, 2))


#: What each watch prints per change, one line each (kubectl's jsonpath).
POD_LINE = (
    "{.metadata.name} {.metadata.labels.ray\\.io/node-type} "
    '{.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\\n"}'
)
SERVICE_LINE = (
    '{.status.conditions[?(@.type=="Ready")].status} '
    '{.status.activeServiceStatus.applicationStatuses.*.status}{"\\n"}'
)
EVENT_LINE = '{.reason}{"\\n"}'


class Watches:
    """Three ``kubectl get --watch`` streams (the Ray pods, the RayService,
    new events), each change marked the moment it arrives: no polling, so
    the moments are exact to the stream's delivery and the bench adds no
    load of its own while Ray starts."""

    def __init__(self, k: Kubectl, name: str, moments: Moments) -> None:
        self.moments = moments
        self.pods: dict[str, tuple[str, bool]] = {}
        self.procs: list[subprocess.Popen[str]] = []
        self.threads: list[threading.Thread] = []
        self._open(k, self._pod, "pods", "-l", "ray.io/is-ray-node=yes", "--watch", POD_LINE)
        field = f"--field-selector=metadata.name={name}"
        self._open(k, self._service, "rayservices", field, "--watch", SERVICE_LINE)
        self._open(k, self._event, "events", "--watch-only", EVENT_LINE)

    def _open(self, k: Kubectl, handle: Callable[[list[str]], None], *args: str) -> None:
        *head, template = args
        argv = [
            str(k.cp.bin / "kubectl"), f"--kubeconfig={k.cp.kubeconfig}", "-n", k.namespace,
            "get", *head, "-o", f"jsonpath={template}",
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self.procs.append(proc)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                handle(line.split())

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _pod(self, words: list[str]) -> None:
        if len(words) < 2:
            return
        name, role = words[0], words[1]
        gone = len(words) > 3  # a deletionTimestamp
        if gone:
            self.pods.pop(name, None)
        else:
            self.pods[name] = (role, len(words) > 2 and words[2] == "True")
        heads = [ready for role, ready in self.pods.values() if role == "head"]
        workers = [ready for role, ready in self.pods.values() if role != "head"]
        if heads and all(heads):
            self.moments.mark("head pod Ready")
        if workers and all(workers):
            self.moments.mark("workers Ready")

    def _service(self, words: list[str]) -> None:
        if words and words[0] == "True":
            self.moments.mark("RayService Ready")
            words = words[1:]
        elif words and words[0] == "False":
            words = words[1:]
        if words and all(w == "RUNNING" for w in words):
            self.moments.mark("applications RUNNING")

    def _event(self, words: list[str]) -> None:
        if words:
            self.moments.mark(f"event {words[0]}")

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)
        for thread in self.threads:
            thread.join(timeout=30)


def _first_answer(url: Callable[[], str | None], moments: Moments) -> None:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        target = url()
        if target is not None and _answers(target):
            moments.mark("first right answer")
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"no right answer within {LIMIT_S:.0f} s")


class Operators:
    """Which operator owns ``ray.io`` now: raykube (installed by Helm) or
    KubeRay (a host process); switching stops one before the other starts."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.active = "raykube"
        self.kuberay_pid: int | None = None

    def use(self, which: str) -> None:
        if which == self.active:
            return
        cp = self.cluster.cp
        if which == "KubeRay":
            self._raykube_replicas(0)
            install_kuberay_crds(cp)
            self.kuberay_pid = self._start_kuberay()
        else:
            self.stop_kuberay()
            controlplane.install_crds(cp, REPO / "crds")
            self._raykube_replicas(1)
        self.active = which

    def stop_kuberay(self) -> None:
        if self.kuberay_pid is not None:
            processes.stop_pid(self.kuberay_pid)
            self.kuberay_pid = None

    def _raykube_replicas(self, count: int) -> None:
        k = Kubectl(self.cluster.cp, stack.OPERATOR_NAMESPACE)
        k.run("scale", f"deploy/{stack.RELEASE}", f"--replicas={count}")

        def settled() -> bool:
            pods = live(k.items("pods", f"app.kubernetes.io/name={stack.RELEASE}"))
            return len(pods) == count and all(pod_ready(p) for p in pods)

        eventually(settled, 300, f"raykube at {count} replicas", every=READ_S)

    def _start_kuberay(self) -> int:
        cp, net = self.cluster.cp, self.cluster.node.net
        resolv = cp.state / "first-answer-resolv.conf"
        resolv.write_text(
            f"nameserver {net.dns_ip}\n"
            f"search {NAMESPACE}.svc.cluster.local svc.cluster.local cluster.local\n"
        )
        # A private mount namespace: only this process sees the cluster's DNS.
        wrap = [
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"', "kuberay",
        ]  # fmt: skip
        return start_kuberay(cp, cp.kubeconfig, [NAMESPACE], wrap=wrap)


def run_raykube(cluster: LocalCluster, built: stack.Images) -> dict[str, Any]:
    return _run_operator(cluster, built, "raykube")


def run_kuberay(cluster: LocalCluster, built: stack.Images) -> dict[str, Any]:
    return _run_operator(cluster, built, "KubeRay")


def _run_operator(cluster: LocalCluster, built: stack.Images, who: str) -> dict[str, Any]:
    k = Kubectl(cluster.cp, NAMESPACE)
    doc = sample.localize(sample.load_sample(), built.runtime.ref).doc
    name = str(doc["metadata"]["name"])
    moments = Moments()
    watches = Watches(k, name, moments)
    time.sleep(1.0)  # the watches' first (empty) lists are in
    moments = watches.moments = Moments()
    k.apply(doc)

    found: dict[str, Any] = {"url": None, "looked": 0.0}

    def routed() -> str | None:
        # kubectl and iptables-save cost CPU that Ray's start needs: the
        # Service is looked up until found, its rules once a second until
        # the applications run (the watch says so), then at every poll.
        now = time.monotonic()
        pace = 0.0 if "applications RUNNING" in moments.seen else 1.0
        if now - found["looked"] < pace:
            return None
        found["looked"] = now
        if found["url"] is None:
            try:
                found["url"] = serve_url(k, name)
            except AssertionError:
                return None
        url = str(found["url"])
        if "serve Service routed" not in moments.seen:
            if not stack.routes(cluster, url)():
                return None
            moments.mark("serve Service routed")
        return url

    try:
        _first_answer(routed, moments)
        eventually(lambda: is_ready(k.get("rayservice", name)), LIMIT_S, f"{name} Ready")
        upgrade = _upgraded(doc)
        before = _active_cluster(k, name)
        switched = Moments()
        k.apply(upgrade)
        eventually(
            lambda: _active_cluster(k, name) not in ("", before),
            LIMIT_S,
            "traffic switched to the new cluster",
            every=READ_S,
        )
        switched.mark("traffic switched")
    finally:
        watches.close()
        k.run("delete", "rayservice", name, "--wait=true", "--timeout=300s", check=False)
        eventually(lambda: not live(k.items("pods", "ray.io/is-ray-node=yes")), 300, "pods gone")
    return {"run": who, **moments.seen, **switched.seen}


def _upgraded(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for _, container in sample.containers(out):
        container["env"] = [*(container.get("env") or []), {"name": "BENCH", "value": "1"}]
    return out


def _active_cluster(k: Kubectl, name: str) -> str:
    """The cluster the RayService's status says serves (both operators write
    ``activeServiceStatus.rayClusterName`` when traffic moves)."""
    status = (k.get("rayservice", name) or {}).get("status") or {}
    return str((status.get("activeServiceStatus") or {}).get("rayClusterName") or "")


_UNITS = {"m": 0.001, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}


def _quantity(text: str) -> float:
    for unit in ("Ki", "Mi", "Gi", "m", ""):
        if text.endswith(unit) and text[: len(text) - len(unit)].replace(".", "").isdigit():
            return float(text[: len(text) - len(unit)]) * _UNITS[unit]
    raise ValueError(f"quantity {text!r}")


def cluster_resources(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The head's and every worker's requests and limits added up: what the
    one plain Ray pod gets, so it runs on the CPUs the cluster had."""
    rc = doc["spec"]["rayClusterConfig"]
    pods = [(rc["headGroupSpec"]["template"], 1)] + [
        (g["template"], int(g.get("replicas") or 0)) for g in rc.get("workerGroupSpecs") or []
    ]
    total: dict[str, dict[str, float]] = {}
    for template, count in pods:
        resources = template["spec"]["containers"][0].get("resources") or {}
        for kind in ("requests", "limits"):
            for name, value in (resources.get(kind) or {}).items():
                sums = total.setdefault(kind, {})
                sums[name] = sums.get(name, 0.0) + count * _quantity(str(value))
    return {
        kind: {
            n: f"{round(v * 1000)}m" if n == "cpu" else f"{round(v / 2**20)}Mi"
            for n, v in sums.items()
        }
        for kind, sums in total.items()
    }


def plain_ray_objects(doc: dict[str, Any], image: str) -> list[dict[str, Any]]:
    """A ConfigMap with the walkthrough's serve config and one pod that runs
    Ray and deploys it, on the real node, with the whole cluster's resources
    (the head's and the workers' added up)."""
    config = sample.serve_config(doc)
    head = doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    script = (
        "ray start --head --dashboard-host=0.0.0.0 --disable-usage-stats "
        "&& serve deploy /serve/config.yaml && sleep infinity"
    )
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": PLAIN},
            "data": {"config.yaml": yaml.safe_dump(config, sort_keys=False)},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": PLAIN, "labels": {"app": PLAIN}},
            "spec": {
                "nodeSelector": dict(head.get("nodeSelector") or {}),
                "containers": [
                    {
                        "name": "ray",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["bash", "-c", script],
                        "resources": cluster_resources(doc),
                        "volumeMounts": [{"name": "serve", "mountPath": "/serve"}],
                    }
                ],
                "volumes": [{"name": "serve", "configMap": {"name": PLAIN}}],
            },
        },
    ]


def run_plain(cluster: LocalCluster, built: stack.Images) -> dict[str, Any]:
    k = Kubectl(cluster.cp, NAMESPACE)
    doc = sample.localize(sample.load_sample(), built.runtime.ref).doc
    moments = Moments()
    for obj in plain_ray_objects(doc, built.runtime.ref):
        k.apply(obj)

    def address() -> str | None:
        pod = k.get("pod", PLAIN) or {}
        ip = (pod.get("status") or {}).get("podIP")
        return f"http://{ip}:8000" if ip else None

    try:
        _first_answer(address, moments)
    finally:
        k.run("delete", "pod,configmap", PLAIN, "--wait=true", "--timeout=300s", check=False)
    return {"run": PLAIN, **moments.seen}


def table(runs: list[dict[str, Any]]) -> str:
    keys = [
        "head pod Ready",
        "workers Ready",
        "applications RUNNING",
        "serve Service routed",
        "RayService Ready",
        "first right answer",
        "traffic switched",
    ]
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for r in runs:
        lines.append(f"| {r['run']} | " + " | ".join(str(r.get(x, "")) for x in keys) + " |")
    for r in runs:  # every moment of each run, events included, in order
        order = sorted((v, k) for k, v in r.items() if k != "run" and isinstance(v, float))
        lines.append(f"{r['run']}: " + ", ".join(f"{k} {v}" for v, k in order))
    for who in ("raykube", "KubeRay", PLAIN):
        firsts = [r["first right answer"] for r in runs if r["run"] == who]
        if firsts:
            lines.append(f"{who}: first right answer, median {statistics.median(firsts):.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.first_answer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--only",
        nargs="+",
        default=["raykube", "KubeRay", PLAIN],
        choices=["raykube", "KubeRay", PLAIN],
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "first_answer.json")
    args = parser.parse_args(argv)
    built = stack.build_images()
    state = versions.cache_root() / "clusters" / f"first-answer-{os.getpid()}"
    cluster = stack.cluster_up(state, quiet=True)
    runs: list[dict[str, Any]] = []
    operators = Operators(cluster)
    legs: dict[str, Callable[[LocalCluster, stack.Images], dict[str, Any]]] = {
        "raykube": run_raykube,
        "KubeRay": run_kuberay,
        PLAIN: run_plain,
    }
    try:
        stack.load_images(cluster, built)
        stack.install_operator(cluster, built.operator)
        for index in range(args.runs):
            order = [w for w in ("raykube", "KubeRay", PLAIN) if w in args.only]
            for who in order if index % 2 == 0 else reversed(order):
                if who != PLAIN:
                    operators.use(who)
                runs.append(legs[who](cluster, built))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        operators.stop_kuberay()
        node.cluster_down(state)
        shutil.rmtree(state, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(table(runs))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
