"""The embedding RayService on a GPU worker group: placed only where GPUs are,
and served on CPU on the real node once the GPU request is removed.

``e2e/manifests/rayservice-embeddings-gpu.yaml`` (the runtime's sample) with
its image pointed at the local one and the head made to fit the real node. Its
GPU workers request ``nvidia.com/gpu: 1`` and tolerate the ``nvidia.com/gpu``
taint: the scheduler may only put them on the kwok GPU nodes, which advertise
4 GPUs each (kwok runs no containers, so Ray never starts there; what is shown
is the placement and the ``ray start --num-gpus=1`` the operator derives).
This cluster taints every kwok node, so the test adds that one toleration.

Then the same RayService without the GPU request (``num_gpus`` dropped from the
replica's options too, workers sized for the node): a new cluster whose worker
runs on the real node, and ``POST /embed/`` answers 384-dimensional vectors
computed with numpy on CPU, through the serve Service.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from e2e import sample, stack
from e2e.kube import Kubectl, eventually, is_ready, live, post, wait_routed
from localcluster import kwok
from localcluster.node_config import REAL_NODE_SELECTOR

from .conftest import Stack

pytestmark = pytest.mark.e2e

MANIFEST = stack.REPO / "e2e" / "manifests" / "rayservice-embeddings-gpu.yaml"
NAME = "embeddings-gpu"
GPU = kwok.GPU_RESOURCE
KWOK_TOLERATION = {"key": kwok.MANAGED_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"}
#: The walkthrough's worker sizing with room for the model's weights.
CPU_WORKER_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "1Gi"},
    "limits": {"cpu": "1", "memory": "3Gi"},
}


def gpu_service(image: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    cluster = doc["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    head["nodeSelector"] = dict(REAL_NODE_SELECTOR)
    head["containers"][0].update(image=image, imagePullPolicy="Never")
    head["containers"][0]["resources"] = copy.deepcopy(sample.HEAD_RESOURCES)
    for group in cluster["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        pod["tolerations"] = [*pod.get("tolerations", []), dict(KWOK_TOLERATION)]
        pod["containers"][0].update(image=image, imagePullPolicy="Never")
    return doc


def cpu_service(gpu_doc: dict[str, Any]) -> dict[str, Any]:
    """The same service with no GPU anywhere: request, toleration, num_gpus."""
    doc = copy.deepcopy(gpu_doc)
    for group in doc["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        pod.pop("tolerations", None)
        pod["nodeSelector"] = dict(REAL_NODE_SELECTOR)
        pod["containers"][0]["resources"] = copy.deepcopy(CPU_WORKER_RESOURCES)
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    for app in config["applications"]:
        for deployment in app["deployments"]:
            (deployment.get("ray_actor_options") or {}).pop("num_gpus", None)
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)
    return doc


def workers(k: Kubectl) -> list[dict[str, Any]]:
    return live(k.items("pods", "ray.io/node-type=worker"))


def scheduled(k: Kubectl, count: int) -> list[dict[str, Any]] | None:
    found = [w for w in workers(k) if w["spec"].get("nodeName")]
    return found if len(found) >= count else None


@pytest.fixture(scope="module")
def k(e2e_stack: Stack, e2e_namespace: str) -> Kubectl:
    return e2e_stack.kubectl(e2e_namespace)


def test_gpu_workers_are_placed_only_on_gpu_nodes(k: Kubectl, e2e_stack: Stack) -> None:
    doc = gpu_service(e2e_stack.images.runtime.ref)
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = 3
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = 3
    k.apply(doc)
    placed = eventually(lambda: scheduled(k, 3), 180, "three GPU workers scheduled")
    nodes = {w["spec"]["nodeName"]: k.get("node", w["spec"]["nodeName"]) for w in placed}
    for name, node in nodes.items():
        assert node is not None
        kind = node["metadata"]["labels"][kwok.NODE_KIND_LABEL]
        assert kind == "kwok-gpu", f"a GPU worker landed on {name} ({kind})"
        assert int(node["status"]["allocatable"][GPU]) > 0
    for worker in placed:
        container = worker["spec"]["containers"][0]
        assert container["resources"]["limits"][GPU] in ("1", 1)
        command = " ".join(container.get("args", []) + container.get("command", []))
        assert "--num-gpus=1" in command, command


def test_without_the_gpu_request_it_serves_on_cpu_on_the_real_node(
    k: Kubectl, e2e_stack: Stack
) -> None:
    gpu_doc = gpu_service(e2e_stack.images.runtime.ref)
    k.apply(cpu_service(gpu_doc))
    eventually(lambda: is_ready(k.get("rayservice", NAME)), 600, f"{NAME} Ready on CPU")
    svc = k.get("service", f"{NAME}-serve-svc")
    assert svc is not None
    url = f"http://{svc['spec']['clusterIP']}:8000"
    body = {"texts": ["A man is eating food.", "A man is eating a piece of bread."]}
    answer = wait_routed(url, "/embed/", body, programmed=stack.routes(e2e_stack.cluster, url))
    assert answer["dim"] == 384 and answer["backend"] == "numpy"
    assert len(answer["embeddings"]) == 2 and len(answer["embeddings"][0]) == 384
    real = e2e_stack.cluster.node.name
    serving = svc["spec"]["selector"]["ray.io/cluster"]
    cpu_workers = [w for w in workers(k) if w["metadata"]["labels"]["ray.io/cluster"] == serving]
    assert cpu_workers and {w["spec"]["nodeName"] for w in cpu_workers} == {real}
    assert all(GPU not in w["spec"]["containers"][0]["resources"].get("limits", {})
               for w in cpu_workers)  # fmt: skip
    assert post(url, "/embed/", {"text": "ok"}).status_code == 200
    k.run("delete", "rayservice", NAME, "--wait=false")
