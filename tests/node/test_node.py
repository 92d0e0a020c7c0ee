"""A real node runs real pods: images built here, Services that route,
DNS that resolves, probes that gate traffic, logs and exec through the
apiserver."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from localcluster import images, node_config, processes
from localcluster.node import LocalCluster

pytestmark = pytest.mark.node

REAL = node_config.REAL_NODE_SELECTOR


def _eventually(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    return processes.wait_until(what or "a condition", check, timeout=timeout, interval=0.5)


def _apply(cluster: LocalCluster, ns: str, *docs: dict[str, Any]) -> None:
    items = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)})
    cluster.cp.kubectl("apply", "-n", ns, "-f", "-", input=items)


def _get(cluster: LocalCluster, ns: str, *args: str) -> Any:
    return json.loads(cluster.cp.kubectl("get", "-n", ns, *args, "-o", "json").stdout)


def _web_pods(cluster: LocalCluster, ns: str) -> list[dict[str, Any]]:
    items = _get(cluster, ns, "pods", "-l", "app=web")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _ready_endpoints(cluster: LocalCluster, ns: str) -> set[str]:
    slices = _get(cluster, ns, "endpointslices", "-l", "kubernetes.io/service-name=web")
    return {
        ep["targetRef"]["name"]
        for s in slices["items"]
        for ep in s.get("endpoints") or []
        if ep["conditions"].get("ready")
    }


def _exec(cluster: LocalCluster, ns: str, pod: str, *cmd: str) -> str:
    return cluster.cp.kubectl("exec", "-n", ns, pod, "--", *cmd, timeout=60).stdout


def _http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _web_manifests(image: str) -> list[dict[str, Any]]:
    labels = {"app": "web"}
    container = {
        "name": "web",
        "image": image,
        "imagePullPolicy": "Never",
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": REAL,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [container],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    client = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "nodeSelector": REAL,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "infinity"],
                }
            ],
        },
    }
    return [deployment, service, client]


@pytest.fixture(scope="module")
def web(local_cluster: LocalCluster, node_namespace: str, web_image: images.Image) -> str:
    """The web Deployment, its Service and a client pod, all Ready."""
    _apply(local_cluster, node_namespace, *_web_manifests(web_image.ref))
    kubectl = local_cluster.cp.kubectl
    kubectl("rollout", "status", "-n", node_namespace, "deploy/web", "--timeout=180s", timeout=200)
    kubectl("wait", "-n", node_namespace, "--for=condition=Ready", "pod/client", "--timeout=120s")
    # Ready pods are not yet routed ones: kube-proxy follows the endpoints a
    # moment later, as on any cluster.
    ip = _get(local_cluster, node_namespace, "service", "web")["spec"]["clusterIP"]
    _eventually(lambda: _answers(f"http://{ip}/"), 30, "the Service to route")
    return node_namespace


def _answers(url: str) -> bool:
    try:
        return "hello from" in _http_get(url)
    except OSError:
        return False


def test_real_node_is_ready_beside_tainted_kwok_nodes(local_cluster: LocalCluster) -> None:
    nodes = json.loads(local_cluster.cp.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    real = [n for n in nodes if n["metadata"]["labels"].get(node_config.REAL_NODE_LABEL) == "real"]
    assert [n["metadata"]["name"] for n in real] == [local_cluster.node.name]
    kwok = [n for n in nodes if n not in real]
    assert kwok and all(n["spec"].get("taints") for n in kwok)
    status = real[0]["status"]
    assert {"type": "InternalIP", "address": local_cluster.node.net.node_ip} in status["addresses"]


def test_deployment_of_local_image_becomes_ready(local_cluster: LocalCluster, web: str) -> None:
    pods = _web_pods(local_cluster, web)
    assert len(pods) == 2 and all(_ready(p) for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} == {local_cluster.node.name}
    prefix = local_cluster.node.net.pod_cidr.rsplit(".", 2)[0]
    assert all(p["status"]["podIP"].startswith(prefix) for p in pods)


def test_pod_reaches_service_by_dns_name(local_cluster: LocalCluster, web: str) -> None:
    url = f"http://web.{web}.svc.cluster.local/"
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read())"
    out = _exec(local_cluster, web, "client", "python3", "-c", code)
    assert "hello from web-" in out


def test_host_reaches_service_by_cluster_ip(local_cluster: LocalCluster, web: str) -> None:
    ip = _get(local_cluster, web, "service", "web")["spec"]["clusterIP"]
    assert "hello from web-" in _http_get(f"http://{ip}/")


def test_pod_reaches_apiserver_through_kubernetes_service(
    local_cluster: LocalCluster, web: str
) -> None:
    """What an in-cluster operator does: service-account token, CA, ClusterIP."""
    code = (
        "import ssl, urllib.request\n"
        "d = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
        "ctx = ssl.create_default_context(cafile=d + 'ca.crt')\n"
        "req = urllib.request.Request('https://kubernetes.default.svc/version',\n"
        "    headers={'Authorization': 'Bearer ' + open(d + 'token').read()})\n"
        "print(urllib.request.urlopen(req, context=ctx, timeout=5).read().decode())\n"
    )
    out = _exec(local_cluster, web, "client", "python3", "-c", code)
    assert json.loads(out)["gitVersion"].startswith("v1.")


def test_logs_and_exec_work(local_cluster: LocalCluster, web: str) -> None:
    pod = _web_pods(local_cluster, web)[0]["metadata"]["name"]
    logs = local_cluster.cp.kubectl("logs", "-n", web, pod).stdout
    assert f"serving on :8080 as {pod}" in logs
    assert _exec(local_cluster, web, pod, "cat", "/etc/hostname").strip() == pod


def test_readiness_probe_gates_service_endpoints(local_cluster: LocalCluster, web: str) -> None:
    pods = sorted(p["metadata"]["name"] for p in _web_pods(local_cluster, web))
    unready, ready = pods
    ip = _get(local_cluster, web, "service", "web")["spec"]["clusterIP"]
    _exec(local_cluster, web, unready, "touch", "/tmp/unready")
    try:
        _eventually(lambda: _ready_endpoints(local_cluster, web) == {ready}, 30, "endpoint drop")
        # kube-proxy follows the endpoints; give it its sync to apply them.
        _eventually(
            lambda: all(ready in _http_get(f"http://{ip}/") for _ in range(10)),
            30,
            "traffic only to the ready pod",
        )
        answers = {_http_get(f"http://{ip}/") for _ in range(20)}
        assert answers == {f"hello from {ready}"}
    finally:
        _exec(local_cluster, web, unready, "rm", "-f", "/tmp/unready")
    _eventually(lambda: _ready_endpoints(local_cluster, web) == set(pods), 30, "endpoint back")


def test_deleted_pod_is_replaced(local_cluster: LocalCluster, web: str) -> None:
    before = {p["metadata"]["name"] for p in _web_pods(local_cluster, web)}
    victim = sorted(before)[0]
    local_cluster.cp.kubectl("delete", "pod", "-n", web, victim, "--wait=true", timeout=120)

    def replaced() -> bool:
        pods = _web_pods(local_cluster, web)
        names = {p["metadata"]["name"] for p in pods}
        return len(pods) == 2 and victim not in names and all(_ready(p) for p in pods)

    _eventually(replaced, 90, "a Ready replacement pod")
    ip = _get(local_cluster, web, "service", "web")["spec"]["clusterIP"]
    assert "hello from web-" in _http_get(f"http://{ip}/")
