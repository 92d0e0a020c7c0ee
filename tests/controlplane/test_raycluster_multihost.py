"""Multi-host worker groups (slices) and upgradeStrategy Recreate against a
real API server, kwok nodes and the operator as its own process."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from e2e.paths import REPO, manifest
from localcluster.controlplane import ControlPlane
from raykube.builders import labels
from tests.kubehelpers import OperatorProcess, apply, get_json, look_again, wait_for

pytestmark = pytest.mark.controlplane

SLICE_HOSTS = 4


def _multihost() -> dict[str, Any]:
    """The multi-host sample, on kwok's CPU nodes: no TPU, no TPU node selector."""
    doc: dict[str, Any] = yaml.safe_load((REPO / "samples/raycluster-multihost.yaml").read_text())
    doc = copy.deepcopy(doc)
    group = doc["spec"]["workerGroupSpecs"][0]
    group.update(replicas=2, numOfHosts=SLICE_HOSTS)
    spec = group["template"]["spec"]
    spec.pop("nodeSelector")
    spec["containers"][0]["resources"] = {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "100m", "memory": "256Mi"},
    }
    return doc


def _workers(cp: ControlPlane, ns: str, cluster: str) -> list[dict[str, Any]]:
    selector = f"{labels.CLUSTER}={cluster},{labels.NODE_TYPE}=worker"
    pods: list[dict[str, Any]] = get_json(cp, "pods", "-n", ns, "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _slices(cp: ControlPlane, ns: str, cluster: str) -> dict[str, dict[str, str]]:
    """slice name -> {host index: pod name} of the live workers."""
    out: dict[str, dict[str, str]] = {}
    for p in _workers(cp, ns, cluster):
        lbl = p["metadata"]["labels"]
        out.setdefault(lbl[labels.REPLICA_NAME], {})[lbl[labels.HOST_INDEX]] = p["metadata"]["name"]
    return out


def _whole(slices: dict[str, dict[str, str]], count: int) -> bool:
    hosts = {str(h) for h in range(SLICE_HOSTS)}
    return len(slices) == count and all(set(s) == hosts for s in slices.values())


def _ready(cp: ControlPlane, ns: str, name: str, workers: int) -> bool:
    status = get_json(cp, "raycluster", name, "-n", ns).get("status") or {}
    return status.get("state") == "ready" and status.get("readyWorkerReplicas") == workers


def _patch(cp: ControlPlane, ns: str, name: str, patch: list[dict[str, Any]]) -> None:
    cp.kubectl("patch", "raycluster", name, "-n", ns, "--type=json", "-p", json.dumps(patch))


def test_slices_are_created_scaled_and_replaced_whole(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    rc = _multihost()
    name = rc["metadata"]["name"]
    apply(cp, ns, rc)
    wait_for(lambda: _ready(cp, ns, name, 2 * SLICE_HOSTS), timeout=120)
    slices = _slices(cp, ns, name)
    assert _whole(slices, 2), slices
    by_slice = {
        p["metadata"]["labels"][labels.REPLICA_NAME]: p["metadata"]["labels"]
        for p in _workers(cp, ns, name)
    }
    assert sorted(lbl[labels.REPLICA_INDEX] for lbl in by_slice.values()) == ["0", "1"]
    assert all(s.startswith("tpu-") for s in slices)
    status = get_json(cp, "raycluster", name, "-n", ns)["status"]
    assert status["desiredWorkerReplicas"] == 2 * SLICE_HOSTS
    svc = get_json(cp, "service", labels.headless_service_name(name), "-n", ns)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {labels.CLUSTER: name, labels.NODE_TYPE: "worker"}
    assert svc["metadata"]["labels"][labels.HEADLESS_SERVICE] == name

    # One host deleted by hand: its whole slice goes and a whole new one comes.
    broken, kept = sorted(slices)
    victim = slices[broken]["2"]
    cp.kubectl("delete", "pod", victim, "-n", ns, "--wait=false")

    def replaced() -> dict[str, dict[str, str]] | None:
        now = _slices(cp, ns, name)
        return now if broken not in now and _whole(now, 2) else None

    after = wait_for(replaced, timeout=120)
    assert after[kept] == slices[kept]  # the other slice was left alone
    (fresh,) = set(after) - {kept}
    fresh_index = _workers(cp, ns, name)
    index = {
        p["metadata"]["labels"][labels.REPLICA_INDEX]
        for p in fresh_index
        if p["metadata"]["labels"][labels.REPLICA_NAME] == fresh
    }
    assert index == {by_slice[broken][labels.REPLICA_INDEX]}  # the freed index is reused
    wait_for(lambda: _ready(cp, ns, name, 2 * SLICE_HOSTS), timeout=120)

    # 2 -> 1: one whole slice goes.
    _patch(
        cp, ns, name, [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1}]
    )
    wait_for(lambda: _whole(_slices(cp, ns, name), 1), timeout=90)
    wait_for(lambda: _ready(cp, ns, name, SLICE_HOSTS), timeout=90)
    look_again(cp, operator, ns, "raycluster", name, "RayCluster")
    assert _whole(_slices(cp, ns, name), 1)
    assert len(_workers(cp, ns, name)) == SLICE_HOSTS


def _sample(name: str, recreate: bool) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(manifest("ray-cluster.sample.yaml").read_text()) if d]
    rc: dict[str, Any] = copy.deepcopy(next(d for d in docs if d.get("kind") == "RayCluster"))
    rc["metadata"]["name"] = name
    rc["spec"]["workerGroupSpecs"][0].update(replicas=2, maxReplicas=5)
    if recreate:
        rc["spec"]["upgradeStrategy"] = {"type": "Recreate"}
    return rc


def _pods(cp: ControlPlane, ns: str, name: str) -> dict[str, dict[str, Any]]:
    pods = get_json(cp, "pods", "-n", ns, "-l", f"{labels.CLUSTER}={name}")["items"]
    return {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}


def _head_image(cp: ControlPlane, ns: str, name: str, image: str) -> None:
    path = "/spec/headGroupSpec/template/spec/containers/0/image"
    _patch(cp, ns, name, [{"op": "replace", "path": path, "value": image}])


def _events(cp: ControlPlane, ns: str, reason: str) -> list[str]:
    items = json.loads(cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    return [e["message"] for e in items if e["reason"] == reason for _ in range(e.get("count", 1))]


def test_recreate_replaces_every_pod_exactly_once(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "recreate"
    apply(cp, ns, _sample(name, recreate=True))
    wait_for(lambda: _ready(cp, ns, name, 2), timeout=90)
    before = _pods(cp, ns, name)
    assert len(before) == 3
    image = "rayproject/ray:2.60.0-recreated"
    _head_image(cp, ns, name, image)

    def replaced() -> dict[str, dict[str, Any]] | None:
        now = _pods(cp, ns, name)
        return now if len(now) == 3 and not set(now) & set(before) else None

    after = wait_for(replaced, timeout=120)
    wait_for(lambda: _ready(cp, ns, name, 2), timeout=120)
    heads = [p for p in after.values() if p["metadata"]["labels"][labels.NODE_TYPE] == "head"]
    assert [h["spec"]["containers"][0]["image"] for h in heads] == [image]
    stamps = {p["metadata"]["annotations"][labels.POD_TEMPLATE_HASH] for p in after.values()}
    assert len(stamps) == 1
    assert stamps != {
        p["metadata"]["annotations"][labels.POD_TEMPLATE_HASH] for p in before.values()
    }
    # Settled: more passes replace nothing more.
    look_again(cp, operator, ns, "raycluster", name, "RayCluster")
    assert set(_pods(cp, ns, name)) == set(after)
    deleted = _events(cp, ns, "DeletedPodForRecreate")
    assert sorted(deleted) == sorted(
        f"Deleted pod {ns}/{pod} (Recreate: the pod templates changed)" for pod in before
    )


def test_without_recreate_running_pods_keep_their_template(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "keep"
    apply(cp, ns, _sample(name, recreate=False))
    wait_for(lambda: _ready(cp, ns, name, 2), timeout=90)
    before = _pods(cp, ns, name)
    _head_image(cp, ns, name, "rayproject/ray:2.60.0-changed")
    look_again(cp, operator, ns, "raycluster", name, "RayCluster")
    assert set(_pods(cp, ns, name)) == set(before)
    assert _events(cp, ns, "DeletedPodForRecreate") == []
