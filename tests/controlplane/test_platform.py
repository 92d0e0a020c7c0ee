"""The control-plane tier tests itself: CRDs, watches, status subresource,
scheduling onto kwok nodes (CPU and GPU) and garbage collection."""

from __future__ import annotations

import json
import subprocess
from typing import IO, Any

import pytest

from localcluster.controlplane import ControlPlane
from tests.kubehelpers import wait_for

pytestmark = pytest.mark.controlplane

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.platform.test.raykube.io"},
    "spec": {
        "group": "platform.test.raykube.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer"}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def _get(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def widget_crd(control_plane: ControlPlane) -> str:
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    name = f"crd/{WIDGET_CRD['metadata']['name']}"
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", name)
    return name


def _next_event(stream: IO[str]) -> dict[str, Any]:
    """The next watch event that ``kubectl get --watch -o json`` prints (indented JSON)."""
    decoder, buffer = json.JSONDecoder(), ""
    while True:
        line = stream.readline()
        assert line, "watch ended before the next event arrived"
        buffer += line
        try:
            event: dict[str, Any] = decoder.raw_decode(buffer.strip())[0]
        except json.JSONDecodeError:
            continue
        return event


def test_crd_installs_and_custom_resource_is_watched(
    control_plane: ControlPlane, widget_crd: str, namespace: str
) -> None:
    def widget(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "platform.test.raykube.io/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"size": 3},
        }

    control_plane.kubectl("create", "-f", "-", input=json.dumps(widget("w0")))
    watch = subprocess.Popen(
        [
            str(control_plane.bin / "kubectl"),
            f"--kubeconfig={control_plane.kubeconfig}",
            "get",
            "widgets",
            "-n",
            namespace,
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
            "--request-timeout=30s",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        # w0 existed before the watch: its ADDED comes from the initial list, so
        # once it is read the watch is open and w1 can only come through it.
        first = _next_event(watch.stdout)
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "w0")
        control_plane.kubectl("create", "-f", "-", input=json.dumps(widget("w1")))
        event = _next_event(watch.stdout)
        assert event["type"] == "ADDED"
        assert event["object"]["metadata"]["name"] == "w1"
    finally:
        watch.terminate()
        watch.wait(10)


def test_status_subresource_is_separate_from_spec(
    control_plane: ControlPlane, widget_crd: str, namespace: str
) -> None:
    widget = {
        "apiVersion": "platform.test.raykube.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w2", "namespace": namespace},
        "spec": {"size": 1},
        "status": {"phase": "ignored-on-create"},
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(widget))
    obj = _get(control_plane, "widget", "w2", "-n", namespace)
    assert "status" not in obj, "status must be ignored on the main resource"
    control_plane.kubectl(
        "patch",
        "widget",
        "w2",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready"}}',
    )
    obj = _get(control_plane, "widget", "w2", "-n", namespace)
    assert obj["status"] == {"phase": "Ready"}
    assert obj["metadata"]["generation"] == 1, "a status write must not bump generation"


def _deployment(name: str, namespace: str, replicas: int, pod_spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
            },
        }
    )


def _pods(cp: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _get(cp, "pods", "-n", namespace, "-l", selector)["items"]
    return items


def test_deployment_pods_run_on_kwok_cpu_nodes(control_plane: ControlPlane, namespace: str) -> None:
    spec = {"containers": [{"name": "app", "image": "example.invalid/app:1"}]}
    control_plane.kubectl("apply", "-f", "-", input=_deployment("web", namespace, 3, spec))

    def running() -> list[dict[str, Any]] | None:
        pods = _pods(control_plane, namespace, "app=web")
        ok = len(pods) == 3 and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None

    pods = wait_for(running, timeout=90)
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert all(n.startswith("kwok-cpu-") for n in nodes), nodes
    assert all(p["status"].get("podIP") for p in pods)


def test_gpu_pods_land_only_on_gpu_nodes(control_plane: ControlPlane, namespace: str) -> None:
    gpu_container = {
        "name": "train",
        "image": "example.invalid/cuda:1",
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    tolerating = {"containers": [gpu_container], "tolerations": [toleration]}
    control_plane.kubectl("apply", "-f", "-", input=_deployment("gpu", namespace, 2, tolerating))
    intolerant = {"containers": [gpu_container]}
    control_plane.kubectl("apply", "-f", "-", input=_deployment("nogpu", namespace, 1, intolerant))

    def gpu_running() -> list[dict[str, Any]] | None:
        pods = _pods(control_plane, namespace, "app=gpu")
        ok = len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None

    pods = wait_for(gpu_running, timeout=90)
    assert {p["spec"]["nodeName"][:9] for p in pods} == {"kwok-gpu-"}

    def unschedulable() -> dict[str, Any] | None:
        pods = _pods(control_plane, namespace, "app=nogpu")
        for pod in pods:
            for cond in pod["status"].get("conditions", []):
                if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                    return pod
        return None

    pod = wait_for(unschedulable, timeout=60)
    assert not pod["spec"].get("nodeName")


def test_owner_reference_garbage_collection(
    control_plane: ControlPlane, widget_crd: str, namespace: str
) -> None:
    owner = {
        "apiVersion": "platform.test.raykube.io/v1",
        "kind": "Widget",
        "metadata": {"name": "parent", "namespace": namespace},
        "spec": {"size": 1},
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(owner))
    uid = _get(control_plane, "widget", "parent", "-n", namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "platform.test.raykube.io/v1",
                    "kind": "Widget",
                    "name": "parent",
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {"k": "v"},
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(child))
    control_plane.kubectl("delete", "widget", "parent", "-n", namespace, "--wait=true")

    def gone() -> bool:
        res = control_plane.kubectl("get", "configmap", "child", "-n", namespace, check=False)
        return res.returncode != 0 and "NotFound" in res.stderr

    wait_for(gone, timeout=60)
