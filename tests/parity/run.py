"""The parity run: KubeRay, then raykube, on one control plane with kwok nodes.

1. a namespace per sample and operator (``kr-...``, ``rk-...``);
2. KubeRay's CRDs; each sample is dry-run against them and the fields they
   refuse are removed (``samples.py``);
3. KubeRay's operator (a process on loopback, its own namespaces only,
   leader election off); every sample applied; wait until the children stop
   changing; collect them; stop KubeRay;
4. raykube's CRDs replace KubeRay's (server-side apply by the same field
   manager, so the schema becomes exactly raykube's); raykube's operator
   (``OperatorProcess``, its own namespaces only); the same samples; collect;
   stop.

KubeRay's objects stay in their namespaces (raykube never watches them), so
nothing has to be deleted between the phases.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.paths import REPO
from localcluster import build, controlplane, processes
from localcluster.controlplane import ControlPlane
from tests.kubehelpers import OperatorProcess
from tests.parity import normalise
from tests.parity.samples import Prepared, Sample, expected_pods, prepare, strip_refused

#: Every kind of child either operator may create, as kubectl names them.
KINDS = ",".join(
    [
        "pods",
        "services",
        "serviceaccounts",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "secrets",
        "configmaps",
        "networkpolicies.networking.k8s.io",
        "ingresses.networking.k8s.io",
        "jobs.batch",
        "rayclusters.ray.io",
    ]
)
#: Present in every namespace before any operator runs.
NOT_CHILDREN = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
#: KubeRay's CRDs the comparison needs (RayJob's is replaced by a stand-in).
KUBERAY_CRDS = ("ray.io_rayclusters.yaml", "ray.io_rayservices.yaml")
#: KubeRay's manager refuses to start without the RayJob kind, which the parity
#: tier does not compare: a schema-less stand-in saves installing (and the API
#: server compiling) its 1.3 MB schema.
RAYJOB_STANDIN: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "rayjobs.ray.io"},
    "spec": {
        "group": "ray.io",
        "names": {
            "kind": "RayJob",
            "listKind": "RayJobList",
            "plural": "rayjobs",
            "singular": "rayjob",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
                "subresources": {"status": {}},
            }
        ],
    },
}
#: Children stop changing this long before they are collected.
QUIET_SECONDS = 3.0
SETTLE_TIMEOUT = 90.0


@dataclass
class Phase:
    """What one operator created, per sample id."""

    operator: str
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    settled: bool = True
    seconds: float = 0.0


@dataclass
class ParityRun:
    prepared: list[Prepared]
    kuberay: Phase
    raykube: Phase
    seconds: dict[str, float] = field(default_factory=dict)


def _apply_namespaces(cp: ControlPlane, names: list[str]) -> None:
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
    cp.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )

    def accounts_exist() -> bool:
        got = json.loads(cp.kubectl("get", "serviceaccounts", "-A", "-o", "json").stdout)
        have = {
            i["metadata"]["namespace"] for i in got["items"] if i["metadata"]["name"] == "default"
        }
        return set(names) <= have

    # Pods are refused until the namespace's default ServiceAccount exists.
    processes.wait_until(
        "default ServiceAccounts of the parity namespaces", accounts_exist, timeout=60, interval=0.5
    )


def install_kuberay_crds(cp: ControlPlane) -> None:
    directory = cp.state / "parity-kuberay-crds"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for name in KUBERAY_CRDS:
        shutil.copyfile(build.kuberay_crds() / name, directory / name)
    (directory / "ray.io_rayjobs.yaml").write_text(yaml.safe_dump(RAYJOB_STANDIN))
    controlplane.install_crds(cp, directory)


def fit_to_kuberay(cp: ControlPlane, prepared: Prepared, namespace: str) -> str | None:
    """Dry-run the sample against KubeRay's CRDs, removing what they refuse;
    the refusal that removing fields cannot cure, if any."""
    for _ in range(5):
        proc = cp.kubectl(
            "apply",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            input=prepared.yaml(),
            check=False,
        )
        if proc.returncode == 0:
            return None
        if not strip_refused(prepared, proc.stderr):
            return proc.stderr.strip()
    return "KubeRay 1.6.2 still refuses the sample after removing fields 5 times"


def _children(objects: list[dict[str, Any]], prepared: Prepared) -> list[dict[str, Any]]:
    applied = prepared.applied() | NOT_CHILDREN
    out = []
    for obj in objects:
        if (obj["kind"], obj["metadata"]["name"]) in applied:
            continue
        owners = [
            o["kind"] for o in obj["metadata"].get("ownerReferences") or [] if o.get("controller")
        ]
        # Pods of the sample's own Deployments (a Redis) are not the operator's.
        if obj["kind"] == "Pod" and owners != ["RayCluster"]:
            continue
        out.append(obj)
    return out


def collect(cp: ControlPlane, spaces: dict[str, Prepared]) -> dict[str, list[dict[str, Any]]]:
    """namespace -> everything of ``KINDS`` there (and its RayServices), in one request."""
    items = json.loads(cp.kubectl("get", f"{KINDS},rayservices.ray.io", "-A", "-o", "json").stdout)
    found: dict[str, list[dict[str, Any]]] = {ns: [] for ns in spaces}
    for obj in items["items"]:
        ns = obj["metadata"].get("namespace")
        if ns in found:
            found[ns].append(obj)
    return found


class _Settle:
    """Polled by ``wait_until``: true once every namespace has its pods and
    nothing changed for ``QUIET_SECONDS``."""

    def __init__(self, cp: ControlPlane, spaces: dict[str, Prepared], skip: set[str]) -> None:
        self.cp, self.spaces, self.skip = cp, spaces, skip
        self.fingerprint = ""
        self.since = time.monotonic()
        self.objects: dict[str, list[dict[str, Any]]] = {}

    def views(self) -> dict[str, dict[str, Any]]:
        return {
            ns: normalise.views(ns, _children(objs, self.spaces[ns]), objs)
            for ns, objs in self.objects.items()
        }

    def __call__(self) -> bool:
        self.objects = collect(self.cp, self.spaces)
        fingerprint = json.dumps(self.views(), sort_keys=True)
        if fingerprint != self.fingerprint:
            self.fingerprint, self.since = fingerprint, time.monotonic()
        enough = all(
            sum(o["kind"] == "Pod" for o in _children(objs, self.spaces[ns]))
            >= expected_pods(self.spaces[ns])
            for ns, objs in self.objects.items()
            if ns not in self.skip
        )
        return enough and time.monotonic() - self.since >= QUIET_SECONDS


def run_phase(
    cp: ControlPlane,
    operator: str,
    prepared: list[Prepared],
    start: Callable[[list[str]], Callable[[], None]],
) -> Phase:
    """Start ``operator`` for its namespaces, apply every sample, wait, collect, stop."""
    began = time.monotonic()
    phase = Phase(operator)
    spaces = {p.sample.namespace(operator): p for p in prepared}
    stop = start(sorted(spaces))
    try:
        for ns, p in spaces.items():
            proc = cp.kubectl("apply", "-n", ns, "-f", "-", input=p.yaml(), check=False)
            if proc.returncode != 0:
                phase.errors[p.sample.id] = proc.stderr.strip()
        settle = _Settle(
            cp, spaces, {ns for ns, p in spaces.items() if p.sample.id in phase.errors}
        )
        try:
            processes.wait_until(
                f"{operator}'s children to settle", settle, timeout=SETTLE_TIMEOUT, interval=1.0
            )
        except processes.WaitTimeout:
            phase.settled = False
        views = settle.views()
    finally:
        stop()
    phase.views = {p.sample.id: views[ns] for ns, p in spaces.items()}
    phase.seconds = time.monotonic() - began
    return phase


def start_kuberay(
    cp: ControlPlane,
    kubeconfig: Path,
    namespaces: list[str],
    *extra: str,
    wrap: Sequence[str] = (),
) -> int:
    """KubeRay's operator on loopback, watching ``namespaces``; its PID once
    ready. ``wrap`` is a command that ``exec``s its arguments (the PID stays
    KubeRay's)."""
    health = processes.free_port()
    argv = [
        *wrap,
        str(build.kuberay_binary()),
        f"--kubeconfig={kubeconfig}",
        f"--metrics-addr=127.0.0.1:{processes.free_port()}",
        f"--health-probe-bind-address=127.0.0.1:{health}",
        "--enable-leader-election=false",
        f"--watch-namespace={','.join(namespaces)}",
        "--log-stdout-encoder=console",
        *extra,
    ]
    pid = processes.start("kuberay", argv, cp.state, env=cp.env())
    processes.wait_until(
        "kuberay",
        lambda: processes.http_ok(f"http://127.0.0.1:{health}/readyz"),
        state=cp.state,
        pid=pid,
        timeout=60,
    )
    return pid


def kuberay_starter(cp: ControlPlane) -> Callable[[list[str]], Callable[[], None]]:
    def start(namespaces: list[str]) -> Callable[[], None]:
        pid = start_kuberay(cp, cp.kubeconfig, namespaces)

        def stop() -> None:
            processes.stop_pid(pid)
            (cp.state / "pids" / "kuberay").unlink(missing_ok=True)

        return stop

    return start


def raykube_starter(cp: ControlPlane, log_dir: Path) -> Callable[[list[str]], Callable[[], None]]:
    def start(namespaces: list[str]) -> Callable[[], None]:
        op = OperatorProcess(cp, log_dir, *(f"--namespace={ns}" for ns in namespaces))
        op.start()
        return op.stop

    return start


def run(cp: ControlPlane, prepared_samples: list[Prepared], log_dir: Path) -> ParityRun:
    """Both phases over every sample; the caller compares."""
    seconds: dict[str, float] = {}
    began = time.monotonic()
    _apply_namespaces(cp, [p.sample.namespace(o) for p in prepared_samples for o in ("kr", "rk")])
    install_kuberay_crds(cp)
    seconds["namespaces and KubeRay's CRDs"] = time.monotonic() - began
    refused = {}
    for p in prepared_samples:
        why = fit_to_kuberay(cp, p, p.sample.namespace("kr"))
        if why:
            refused[p.sample.id] = why
    kuberay = run_phase(cp, "kr", prepared_samples, kuberay_starter(cp))
    kuberay.errors.update(refused)
    mark = time.monotonic()
    controlplane.install_crds(cp, REPO / "crds")
    seconds["raykube's CRDs"] = time.monotonic() - mark
    raykube = run_phase(cp, "rk", prepared_samples, raykube_starter(cp, log_dir))
    seconds["KubeRay phase"], seconds["raykube phase"] = kuberay.seconds, raykube.seconds
    return ParityRun(prepared_samples, kuberay, raykube, seconds)


def prepare_all(samples: list[Sample]) -> list[Prepared]:
    return [prepare(s) for s in samples]
