"""One tenant cannot hurt another (issue 14), against a real API server with the
operator as its own process.

Beside a healthy RayService (its head a real Ray head on loopback) and a
healthy RayCluster, each hostile input of ``e2e/hostile.py`` is applied in
turn. For each: its object ends as the catalogue expects (refused at
admission, or a status and Warning saying why), the objects someone else
created come through untouched, both healthy objects still apply a spec
change (worker replicas: pods created or deleted), and the operator is the
same process, never restarted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from e2e import hostile
from e2e.hostile import HEALTHY_CLUSTER, HEALTHY_SERVICE, Hostile, SharedHead
from e2e.kube import Kubectl, is_ready
from localcluster.controlplane import ControlPlane
from tests.kubehelpers import OperatorProcess, look_again, wait_for

from .rayservice_heads import HeadMapper, mapped_heads

pytestmark = pytest.mark.controlplane

#: A real Ray head and Serve on this shared 2-core machine take their time.
SERVE_TIMEOUT = 420
#: Generous: a loaded machine must not fail a case that is only slow.
SETTLE_TIMEOUT = 120
CASES = hostile.catalogue()


@dataclass
class Healthy:
    k: Kubectl
    mapper: HeadMapper
    head: SharedHead
    pid: int


def _serving(k: Kubectl) -> str:
    cluster = hostile.active_cluster(k, HEALTHY_SERVICE)
    ok = is_ready(k.get("rayservice", HEALTHY_SERVICE)) and hostile.worker_pods(k, cluster) >= 1
    return cluster if ok else ""


def _ready(k: Kubectl, name: str) -> bool:
    return ((k.get("raycluster", name) or {}).get("status") or {}).get("state") == "ready"


@pytest.fixture(scope="module")
def healthy(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[Healthy]:
    ns = f"healthy-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", ns)
    k = Kubectl(control_plane, ns)
    try:
        with mapped_heads(control_plane, ns, HEALTHY_SERVICE) as mapper:
            k.apply(hostile.healthy_rayservice())
            k.apply(hostile.healthy_raycluster())
            cluster = wait_for(
                lambda: _serving(k), timeout=SERVE_TIMEOUT, interval=2, what="healthy serving"
            )
            wait_for(lambda: _ready(k, HEALTHY_CLUSTER), timeout=120, what="healthy ready")
            assert not mapper.errors, mapper.errors
            head = mapper.head(cluster)
            assert operator.proc is not None
            yield Healthy(
                k, mapper, SharedHead(head.dashboard_url, head.serve_url), operator.proc.pid
            )
    finally:
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _change_applied(k: Kubectl, kind: str, name: str, cluster: str) -> None:
    """Toggle ``kind/name``'s worker replicas between 1 and 2; the operator
    creates or deletes the worker pod of ``cluster``."""
    target = 2 if hostile.worker_pods(k, cluster) <= 1 else 1
    hostile.scale_workers(k, kind, name, target)
    wait_for(
        lambda: hostile.worker_pods(k, cluster) == target,
        timeout=120,
        what=f"{kind} {name}: {target} worker pods",
    )


def _same_operator(operator: OperatorProcess, pid: int) -> None:
    assert operator.proc is not None and operator.proc.pid == pid, "the operator was restarted"
    assert operator.proc.poll() is None, f"the operator exited:\n{operator.log.read_text()[-4000:]}"


@pytest.mark.parametrize("case", CASES, ids=[h.name for h in CASES])
def test_hostile_input_hurts_no_one(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    healthy: Healthy,
    namespace: str,
    case: Hostile,
) -> None:
    k = healthy.k if case.beside_healthy else Kubectl(control_plane, namespace)
    if case.beside_healthy:
        # Not the healthy RayService's clusters, whatever their labels say: no Ray head for them.
        healthy.mapper.retired.update(n for kind, n in case.targets if kind == "RayCluster")
    assert not hostile.apply_all(k, [b.manifest for b in case.bystanders if b.manifest])
    before = {b.name: hostile.fingerprint(k, b) for b in case.bystanders}
    try:
        refused = hostile.apply_all(k, case.manifests)
        first, left = hostile.settle(k, case, refused, healthy.head, SETTLE_TIMEOUT)
        assert not left, f"{first.summary()}: {left}"

        # Both healthy objects still reconcile: a spec change is carried out.
        hk = healthy.k
        _change_applied(hk, "raycluster", HEALTHY_CLUSTER, HEALTHY_CLUSTER)
        serving = hostile.active_cluster(hk, HEALTHY_SERVICE)
        _change_applied(hk, "rayservice", HEALTHY_SERVICE, serving)
        assert is_ready(hk.get("rayservice", HEALTHY_SERVICE))
        assert hostile.active_cluster(hk, HEALTHY_SERVICE) == serving
        if case.expect.persists:
            # Passes of the healthy RayService that began after the hostile object existed.
            look_again(
                control_plane, operator, hk.namespace, "rayservice", HEALTHY_SERVICE, "RayService"
            )

        last = hostile.observe(k, case, refused)
        assert not hostile.problems(case, last), last.summary()
        assert not hostile.replaced(first, last)
        for b in case.bystanders:
            assert not hostile.bystander_problems(b, before[b.name], hostile.fingerprint(k, b))
        _same_operator(operator, healthy.pid)
    finally:
        if case.beside_healthy:
            for kind, name in case.targets:
                k.run("delete", kind.lower(), name, "--wait=false", "--ignore-not-found")
