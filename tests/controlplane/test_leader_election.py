"""Two operator processes with leader election, each running as the chart's
ServiceAccount with the chart's namespaced RBAC: one leads, the other waits;
killing the leader hands over within 30 s, a graceful stop hands over at
once, and no pod is ever created twice."""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from e2e.paths import manifest
from localcluster.controlplane import ControlPlane
from raykube.builders import labels
from tests.chart.test_chart import render
from tests.conftest import _FIGURES
from tests.kubehelpers import (
    OperatorProcess,
    apply,
    get_json,
    look_again,
    reconciles,
    wait_for,
)

pytestmark = pytest.mark.controlplane

LEASE = "raykube-leader"
RELEASE = "rk"


class AsServiceAccount:
    """The control plane as seen with another kubeconfig (for OperatorProcess)."""

    def __init__(self, cp: ControlPlane, kubeconfig: Path) -> None:
        self.cp, self.kubeconfig = cp, kubeconfig

    def env(self) -> dict[str, str]:
        return {**self.cp.env(), "KUBECONFIG": str(self.kubeconfig)}


def _install_chart_rbac(cp: ControlPlane, ns: str) -> tuple[str, str]:
    """The chart's ServiceAccount, Roles, RoleBindings for ``ns`` and the
    autoscaler's ClusterRole; the ServiceAccount's and the ClusterRole's names."""
    docs = render({"replicaCount": "2", "watchNamespaces": f"{{{ns}}}"}, f"--namespace={ns}")
    wanted = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    # Nothing cluster-wide is granted: the one ClusterRole is the autoscaler's,
    # bound by the operator per namespace.
    (autoscaler,) = [d for d in docs if d["kind"].startswith("Cluster")]
    assert autoscaler["kind"] == "ClusterRole"
    apply(cp, ns, yaml.safe_dump_all([*wanted, autoscaler]))
    (sa,) = [d["metadata"]["name"] for d in wanted if d["kind"] == "ServiceAccount"]
    return str(sa), str(autoscaler["metadata"]["name"])


def _token_kubeconfig(cp: ControlPlane, ns: str, sa: str, path: Path) -> Path:
    token = cp.kubectl("create", "token", sa, "-n", ns, "--duration=2h").stdout.strip()
    admin = json.loads(cp.kubeconfig.read_text())
    config = copy.deepcopy(admin)
    config["users"] = [{"name": sa, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = sa
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def _holder(cp: ControlPlane, ns: str) -> str:
    proc = cp.kubectl(
        "get", "lease", LEASE, "-n", ns, "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _candidate(
    cp: AsServiceAccount, logs: Path, ns: str, name: str, autoscaler_role: str
) -> OperatorProcess:
    (logs / name).mkdir(parents=True, exist_ok=True)
    return OperatorProcess(
        cast(ControlPlane, cp),
        logs / name,
        f"--autoscaler-cluster-role={autoscaler_role}",
        "--leader-election",
        f"--lease-namespace={ns}",
        f"--lease-name={LEASE}",
        f"--lease-identity={name}",
        f"--namespace={ns}",
    )


def _sigkill(op: OperatorProcess) -> None:
    """SIGKILL alone: no handler runs, the Lease is not released."""
    assert op.proc is not None
    os.killpg(op.proc.pid, signal.SIGKILL)
    op.proc.wait(10)
    op.proc = None


def _pods(cp: ControlPlane, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(cp, "pods", "-n", ns)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _roles(cp: ControlPlane, ns: str, cluster: str, want: dict[str, int]) -> bool:
    pods = [p for p in _pods(cp, ns) if p["metadata"]["labels"].get("ray.io/cluster") == cluster]
    counts: dict[str, int] = {}
    for p in pods:
        role = p["metadata"]["labels"]["ray.io/node-type"]
        counts[role] = counts.get(role, 0) + 1
    return counts == want


def _created_events(cp: ControlPlane, ns: str) -> dict[str, int]:
    events = get_json(cp, "events", "-n", ns)["items"]
    counts: dict[str, int] = {}
    for e in events:
        if e["reason"].startswith("Created"):
            counts[e["reason"]] = counts.get(e["reason"], 0) + int(e.get("count") or 1)
    return counts


def _leading(op: OperatorProcess) -> float:
    for line in op.metrics().splitlines():
        if line.startswith("raykube_leader_election_leading "):
            return float(line.split()[1])
    raise AssertionError("no leader gauge")


def _cluster(ns: str) -> dict[str, Any]:
    doc = yaml.safe_load(manifest("ray-cluster.sample.yaml").read_text())
    # The autoscaler sidecar makes the operator bind the autoscaler's
    # ClusterRole: with the chart's RBAC that takes `bind` on exactly that name.
    doc["spec"]["enableInTreeAutoscaling"] = True
    return cast(dict[str, Any], doc)


def test_one_leader_takeover_after_kill_and_graceful_handover(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    cp, ns = control_plane, namespace
    # The session's cluster-wide operator would reconcile this namespace too.
    operator.stop()
    sa, role = _install_chart_rbac(cp, ns)
    identity = AsServiceAccount(cp, _token_kubeconfig(cp, ns, sa, tmp_path / "sa.kubeconfig"))
    logs = cp.state / "logs" / f"leader-{ns}"
    a, b = _candidate(identity, logs, ns, "a", role), _candidate(identity, logs, ns, "b", role)
    try:
        a.start()
        wait_for(lambda: _holder(cp, ns) == "a", timeout=30)
        b.start()  # healthy while waiting: its standby /healthz answers
        rc = _cluster(ns)
        apply(cp, ns, rc)
        name = rc["metadata"]["name"]
        wait_for(lambda: _roles(cp, ns, name, {"head": 1, "worker": 1}), timeout=90)
        assert _holder(cp, ns) == "a"
        assert (_leading(a), _leading(b)) == (1.0, 0.0)
        assert reconciles(a, "RayCluster") > 0 and reconciles(b, "RayCluster") == 0
        sa_objects = get_json(cp, "serviceaccounts,roles,rolebindings", "-n", ns)["items"]
        ours = {
            (o["kind"], o["metadata"]["name"])
            for o in sa_objects
            if o["metadata"]["name"].startswith(name)
        }
        account = labels.autoscaler_account_name(name)
        assert ours == {("ServiceAccount", account), ("RoleBinding", account)}

        killed = time.monotonic()
        _sigkill(a)
        # Ask for one more worker: only a reconciling leader can create it.
        cp.kubectl(
            "patch", "raycluster", name, "-n", ns, "--type=json",
            "-p", '[{"op":"replace","path":"/spec/workerGroupSpecs/0/replicas","value":2}]',
        )  # fmt: skip
        wait_for(lambda: _holder(cp, ns) == "b", timeout=40, interval=0.2)
        takeover = time.monotonic() - killed
        wait_for(lambda: _roles(cp, ns, name, {"head": 1, "worker": 2}), timeout=40, interval=0.2)
        reconciled = time.monotonic() - killed
        print(
            f"\nleader killed: Lease taken over in {takeover:.1f}s,"
            f" reconciling in {reconciled:.1f}s"
        )
        _FIGURES["leader takeover after SIGKILL: Lease / first reconcile (s)"] = (
            f"{takeover:.1f} / {reconciled:.1f}"
        )
        assert takeover < 30 and reconciled < 30
        assert _leading(b) == 1.0

        # Graceful: a comes back as a candidate, b stops on SIGTERM and releases.
        a = _candidate(identity, logs, ns, "a2", role)
        a.start()
        stopped = time.monotonic()
        b.stop()
        wait_for(lambda: _holder(cp, ns) == "a2", timeout=20, interval=0.2)
        handover = time.monotonic() - stopped
        print(f"graceful stop: Lease handed over in {handover:.1f}s")
        _FIGURES["leader handover after SIGTERM (s)"] = f"{handover:.1f}"
        assert handover < 10
        wait_for(lambda: _leading(a) == 1.0, timeout=10)

        # Each pod was created once: no second leader ever reconciled, and the
        # new leader, made to look again, finds nothing to create.
        look_again(cp, a, ns, "raycluster", name, "RayCluster")
        assert _roles(cp, ns, name, {"head": 1, "worker": 2})
        assert _created_events(cp, ns) == {"CreatedHeadPod": 1, "CreatedWorkerPod": 2}
    finally:
        for op in (a, b):
            op.stop()
        operator.start()
