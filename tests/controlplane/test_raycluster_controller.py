"""The RayCluster controller against a real API server, kwok nodes and the
operator running as its own process."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from e2e.paths import manifest
from localcluster.controlplane import ControlPlane
from raykube.builders import labels
from raykube.timefmt import now_iso
from tests.kubehelpers import OperatorProcess, apply, get_json, look_again, wait_for

pytestmark = pytest.mark.controlplane


def _manifest(name: str, kind: str = "RayCluster") -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(manifest(name).read_text()) if d]
    return next(d for d in docs if d.get("kind") == kind)


def _pods(cp: ControlPlane, ns: str, cluster: str, extra: str = "") -> list[dict[str, Any]]:
    selector = f"ray.io/cluster={cluster}" + (f",{extra}" if extra else "")
    pods: list[dict[str, Any]] = get_json(cp, "pods", "-n", ns, "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _status(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = get_json(cp, "raycluster", name, "-n", ns).get("status") or {}
    return status


def _ready(cp: ControlPlane, ns: str, name: str, workers: int) -> dict[str, Any] | None:
    status = _status(cp, ns, name)
    if status.get("state") == "ready" and status.get("readyWorkerReplicas") == workers:
        return status
    return None


def _worker_count(cp: ControlPlane, ns: str, name: str) -> int:
    return len(_pods(cp, ns, name, "ray.io/node-type=worker"))


def test_sample_cluster_comes_up_with_kuberay_shaped_pods(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    rc = _manifest("ray-cluster.sample.yaml")
    apply(control_plane, namespace, rc)
    name = rc["metadata"]["name"]
    status = wait_for(lambda: _ready(control_plane, namespace, name, 1), timeout=90)
    assert status["desiredWorkerReplicas"] == 1
    assert status["head"]["serviceName"] == f"{name}-head-svc"
    assert status["endpoints"]["dashboard"] == "8265"
    heads = _pods(control_plane, namespace, name, "ray.io/node-type=head")
    assert len(heads) == 1
    head = heads[0]
    assert head["metadata"]["name"].startswith(f"{name}-head-")
    labels = head["metadata"]["labels"]
    assert labels["ray.io/identifier"] == f"{name}-head"
    assert labels["app.kubernetes.io/created-by"] == "raykube"
    owner = head["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("RayCluster", name, True)
    args = head["spec"]["containers"][0]["args"][0]
    assert "ray start --head" in args and "--dashboard-host=0.0.0.0" in args
    svc = get_json(control_plane, "service", f"{name}-head-svc", "-n", namespace)
    assert svc["spec"]["selector"] == {
        "ray.io/cluster": name,
        "ray.io/node-type": "head",
        "ray.io/identifier": f"{name}-head",
        "app.kubernetes.io/name": "kuberay",
    }
    stored = get_json(control_plane, "raycluster", name, "-n", namespace)
    group = stored["spec"]["workerGroupSpecs"][0]
    assert group["scaleStrategy"] == {} or "workersToDelete" not in group["scaleStrategy"]
    conds = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conds["HeadPodReady"] == "True" and conds["RayClusterProvisioned"] == "True"
    events = control_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"CreatedHeadPod", "CreatedWorkerPod"} <= reasons


def _gpu_cluster(name: str) -> dict[str, Any]:
    rc = _manifest("ray-cluster.sample.yaml")
    rc = copy.deepcopy(rc)
    rc["metadata"]["name"] = name
    worker = rc["spec"]["workerGroupSpecs"][0]
    worker["groupName"] = "gpu-group"
    worker["replicas"] = 2
    tpl = worker["template"]["spec"]
    tpl["containers"][0]["resources"] = {
        "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
        "requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    tpl["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return rc


def test_gpu_group_lands_on_gpu_nodes_with_num_gpus(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    apply(control_plane, namespace, _gpu_cluster("gpu-rc"))
    status = wait_for(lambda: _ready(control_plane, namespace, "gpu-rc", 2), timeout=90)
    assert status["desiredGPU"] == "2"
    workers = _pods(control_plane, namespace, "gpu-rc", "ray.io/node-type=worker")
    assert {w["spec"]["nodeName"][:9] for w in workers} == {"kwok-gpu-"}
    for w in workers:
        assert "--num-gpus=1" in w["spec"]["containers"][0]["args"][0]
    head = _pods(control_plane, namespace, "gpu-rc", "ray.io/node-type=head")[0]
    assert head["spec"]["nodeName"].startswith("kwok-cpu-")


def _patch_group(cp: ControlPlane, ns: str, name: str, patch: list[dict[str, Any]]) -> None:
    cp.kubectl("patch", "raycluster", name, "-n", ns, "--type=json", "-p", json.dumps(patch))


def test_scale_up_down_and_workers_to_delete(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    rc = _manifest("ray-cluster.sample.yaml")
    name = rc["metadata"]["name"]
    apply(control_plane, namespace, rc)
    wait_for(lambda: _ready(control_plane, namespace, name, 1), timeout=90)
    _patch_group(
        control_plane,
        namespace,
        name,
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 4}],
    )
    wait_for(lambda: _ready(control_plane, namespace, name, 4), timeout=90)
    victim = sorted(
        p["metadata"]["name"]
        for p in _pods(control_plane, namespace, name, "ray.io/node-type=worker")
    )[0]
    # What Ray's autoscaler sends: one JSON patch replacing replicas and scaleStrategy.
    _patch_group(
        control_plane,
        namespace,
        name,
        [
            {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3},
            {
                "op": "replace",
                "path": "/spec/workerGroupSpecs/0/scaleStrategy",
                "value": {"workersToDelete": [victim]},
            },
        ],
    )
    wait_for(lambda: _worker_count(control_plane, namespace, name) == 3, timeout=60)
    names = {
        p["metadata"]["name"]
        for p in _pods(control_plane, namespace, name, "ray.io/node-type=worker")
    }
    assert victim not in names
    _patch_group(
        control_plane,
        namespace,
        name,
        [
            {"op": "replace", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {}},
            {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1},
        ],
    )
    wait_for(lambda: _ready(control_plane, namespace, name, 1), timeout=60)
    assert _worker_count(control_plane, namespace, name) == 1


def test_autoscaling_cluster_never_deletes_at_random(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    rc = copy.deepcopy(_manifest("ray-cluster.autoscaler.yaml"))
    name = rc["metadata"]["name"]
    rc["spec"]["workerGroupSpecs"][0]["replicas"] = 2
    apply(control_plane, namespace, rc)
    wait_for(lambda: _ready(control_plane, namespace, name, 2), timeout=90)
    head = _pods(control_plane, namespace, name, "ray.io/node-type=head")[0]
    assert [c["name"] for c in head["spec"]["containers"]][1] == "autoscaler"
    account = labels.autoscaler_account_name(name)
    assert head["spec"]["serviceAccountName"] == account
    for kind in ("serviceaccount", "rolebinding"):
        get_json(control_plane, kind, account, "-n", namespace)
    binding = get_json(control_plane, "rolebinding", account, "-n", namespace)
    assert binding["roleRef"]["kind"] == "ClusterRole"
    _patch_group(
        control_plane,
        namespace,
        name,
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1}],
    )
    # Nothing named: both workers stay, however often the operator looks.
    look_again(control_plane, operator, namespace, "raycluster", name, "RayCluster")
    assert _worker_count(control_plane, namespace, name) == 2


def test_deleted_head_is_recreated(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    rc = _manifest("ray-cluster.sample.yaml")
    name = rc["metadata"]["name"]
    apply(control_plane, namespace, rc)
    wait_for(lambda: _ready(control_plane, namespace, name, 1), timeout=90)
    old = _pods(control_plane, namespace, name, "ray.io/node-type=head")[0]["metadata"]["name"]
    workers = {
        p["metadata"]["name"]
        for p in _pods(control_plane, namespace, name, "ray.io/node-type=worker")
    }
    # Pod times have one-second precision and kwok starts pods at once: a head
    # replaced within the second its worker started is indistinguishable from
    # one the worker started under. Real pods take seconds; let the clock move.
    started = max(
        str(cs["state"].get("running", {}).get("startedAt", ""))
        for p in _pods(control_plane, namespace, name, "ray.io/node-type=worker")
        for cs in p["status"].get("containerStatuses", [])
    )
    wait_for(lambda: now_iso() > started, timeout=5, interval=0.1)
    control_plane.kubectl("delete", "pod", old, "-n", namespace, "--wait=false")

    def new_head() -> str | None:
        heads = _pods(control_plane, namespace, name, "ray.io/node-type=head")
        fresh = [h["metadata"]["name"] for h in heads if h["metadata"]["name"] != old]
        return fresh[0] if len(heads) == 1 and fresh else None

    wait_for(new_head, timeout=90)
    wait_for(lambda: _ready(control_plane, namespace, name, 1), timeout=90)

    # No GCS fault tolerance: the new head is a new Ray cluster, so the worker
    # whose Ray joined the old one is replaced once the new head is Ready.
    def replaced() -> set[str] | None:
        selector = "ray.io/node-type=worker"
        after = {p["metadata"]["name"] for p in _pods(control_plane, namespace, name, selector)}
        return after if after and not after & workers else None

    wait_for(replaced, timeout=90)
    wait_for(lambda: _ready(control_plane, namespace, name, 1), timeout=90)


def test_suspend_deletes_pods_and_resume_recreates(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    rc = _manifest("ray-cluster.sample.yaml")
    name = rc["metadata"]["name"]
    apply(control_plane, namespace, rc)
    wait_for(lambda: _ready(control_plane, namespace, name, 1), timeout=90)
    control_plane.kubectl(
        "patch",
        "raycluster",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"suspend": true}}',
    )
    wait_for(
        lambda: _status(control_plane, namespace, name).get("state") == "suspended", timeout=90
    )
    assert _pods(control_plane, namespace, name) == []
    conds = {c["type"]: c for c in _status(control_plane, namespace, name)["conditions"]}
    assert conds["RayClusterSuspended"]["status"] == "True"
    control_plane.kubectl(
        "patch",
        "raycluster",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"suspend": false}}',
    )
    wait_for(lambda: _ready(control_plane, namespace, name, 1), timeout=90)


def test_invalid_pod_template_reports_and_creates_nothing(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    rc = copy.deepcopy(_manifest("ray-cluster.sample.yaml"))
    rc["metadata"]["name"] = "bad-template"
    rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = (
        "Sometimes"
    )
    apply(control_plane, namespace, rc)

    def failure() -> dict[str, Any] | None:
        conds = _status(control_plane, namespace, "bad-template").get("conditions", [])
        return next(
            (c for c in conds if c["type"] == "ReplicaFailure" and c["status"] == "True"), None
        )

    cond = wait_for(failure, timeout=60)
    assert "imagePullPolicy" in cond["message"]
    assert _pods(control_plane, namespace, "bad-template") == []
    events = json.loads(
        control_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    )
    warnings = [
        e
        for e in events["items"]
        if e["type"] == "Warning" and e["reason"] == "FailedCreateHeadPod"
    ]
    assert len(warnings) == 1


def test_operator_restart_mid_scale_leaves_no_duplicates(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    rc = copy.deepcopy(_manifest("ray-cluster.sample.yaml"))
    rc["metadata"]["name"] = "restart-rc"
    apply(control_plane, namespace, rc)
    wait_for(lambda: _ready(control_plane, namespace, "restart-rc", 1), timeout=90)
    _patch_group(
        control_plane,
        namespace,
        "restart-rc",
        [
            {"op": "replace", "path": "/spec/workerGroupSpecs/0/maxReplicas", "value": 10},
            {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 8},
        ],
    )
    wait_for(
        lambda: _worker_count(control_plane, namespace, "restart-rc") >= 3,
        timeout=60,
        interval=0.05,
    )
    operator.stop(kill=True)
    operator.start()
    wait_for(lambda: _ready(control_plane, namespace, "restart-rc", 8), timeout=120)
    # The restarted operator looks again and still sees nothing to add.
    look_again(control_plane, operator, namespace, "raycluster", "restart-rc", "RayCluster")
    assert _worker_count(control_plane, namespace, "restart-rc") == 8
    assert len(_pods(control_plane, namespace, "restart-rc", "ray.io/node-type=head")) == 1


def test_metrics_and_json_logs(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    rc = _manifest("ray-cluster.sample.yaml")
    apply(control_plane, namespace, rc)
    wait_for(lambda: _ready(control_plane, namespace, rc["metadata"]["name"], 1), timeout=90)
    text = operator.metrics()
    for name in (
        'raykube_reconcile_total{kind="RayCluster"}',
        'raykube_reconcile_duration_seconds_count{kind="RayCluster"}',
        'raykube_pods_created_total{node_type="head"}',
        'raykube_rayclusters{state="ready"}',
        "raykube_kube_requests_total",
    ):
        assert name in text, name
    lines = [ln for ln in operator.log.read_text().splitlines() if ln.startswith("{")]
    assert lines, "the operator wrote no JSON log lines"
    entries = [json.loads(ln) for ln in lines]
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in entries)
    assert any("status: ready" in e["msg"] for e in entries)
