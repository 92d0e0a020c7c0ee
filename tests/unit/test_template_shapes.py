"""Pod templates whose fields the builders read have the shapes Kubernetes gives
them; anything else is refused by the models, naming the field, and a whole pass
ends on the invalid-spec path (condition and Warning), never in an exception."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from raykube.adapters.kube import RAYCLUSTERS, RAYSERVICES
from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.builders.services import build_head_service
from raykube.decisions import cluster_status
from raykube.decisions.scaling import intent_of
from raykube.models import parse_raycluster, parse_rayservice
from raykube.models.base import validation_message
from tests.unit.harness import NS, Harness, load
from tests.unit.rayservice_helpers import BASE

CLUSTER: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayCluster",
    "metadata": {"name": "rc", "namespace": NS, "uid": "rc-uid", "generation": 1},
    "spec": copy.deepcopy(BASE["spec"]["rayClusterConfig"]),
}


def with_worker_container(**fields: Any) -> dict[str, Any]:
    doc = copy.deepcopy(CLUSTER)
    doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].update(fields)
    return doc


def refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        parse_raycluster(doc)
    return validation_message(err.value)


WORKER = "spec.workerGroupSpecs.0.template"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"resources": {"limits": {"cpu": "NaN"}}}, "containers[0].resources.limits.cpu"),
        ({"resources": {"limits": {"cpu": "Infinity"}}}, "invalid quantity 'Infinity'"),
        ({"resources": {"requests": {"memory": "1Gb"}}}, "resources.requests.memory"),
        ({"resources": {"limits": {"nvidia.com/gpu": True}}}, "limits.nvidia.com/gpu"),
        ({"resources": {"limits": ["cpu"]}}, "resources.limits: must be a mapping"),
        ({"resources": "2 cpus"}, "containers[0].resources: must be a mapping"),
        ({"ports": {"containerPort": 80}}, "containers[0].ports: must be a list"),
        ({"ports": [8080]}, "containers[0].ports[0]: must be a mapping"),
        ({"ports": [{"containerPort": "8080"}]}, "ports[0].containerPort: must be an integer"),
        ({"ports": [{"containerPort": 0}]}, "ports[0].containerPort: must be an integer"),
        ({"ports": [{"containerPort": 80, "name": 5}]}, "ports[0].name: must be a string"),
        ({"env": {"A": "1"}}, "containers[0].env: must be a list"),
        ({"env": [{"value": "1"}]}, "containers[0].env[0].name: must be a string"),
        ({"env": [{"name": "A", "value": 1}]}, "containers[0].env[0].value: must be a string"),
        ({"env": ["A=1"]}, "containers[0].env[0]: must be a mapping"),
        ({"command": "ray start"}, "containers[0].command: must be a list of strings"),
        ({"args": [1, 2]}, "containers[0].args: must be a list of strings"),
        ({"image": ["ray"]}, "containers[0].image: must be a string"),
    ],
)
def test_wrong_shapes_are_refused_naming_the_field(fields: dict[str, Any], expected: str) -> None:
    message = refusal(with_worker_container(**fields))
    assert message.startswith(WORKER)
    assert expected in message


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (["x"], "template: metadata: must be a mapping"),
        ({"labels": ["a"]}, "metadata.labels: must be a mapping of strings"),
        ({"annotations": {"a": 1}}, "metadata.annotations: must be a mapping of strings"),
    ],
)
def test_template_metadata_must_be_string_maps(metadata: Any, expected: str) -> None:
    doc = copy.deepcopy(CLUSTER)
    doc["spec"]["headGroupSpec"]["template"]["metadata"] = metadata
    assert expected in refusal(doc)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"metadata": {"annotations": ["a"]}},
            "metadata.annotations: must be a mapping of strings",
        ),
        ({"spec": ["a"]}, "headService: spec: must be a mapping"),
        ({"spec": {"ports": {"port": 80}}}, "headService: spec.ports: must be a list"),
        ({"spec": {"ports": [{"port": "80"}]}}, "spec.ports[0].port: must be an integer"),
        ({"spec": {"type": 1}}, "headService: spec.type: must be one of ClusterIP"),
        ({"spec": {"type": "ExternalName"}}, "headService: spec.type: ExternalName is refused"),
    ],
)
def test_head_service_override_must_be_service_shaped(
    override: dict[str, Any], expected: str
) -> None:
    doc = copy.deepcopy(CLUSTER)
    doc["spec"]["headGroupSpec"]["headService"] = override
    assert expected in refusal(doc)


def test_kubernetes_shapes_are_accepted_and_built() -> None:
    doc = with_worker_container(
        resources={"limits": {"cpu": 2, "memory": "4Gi"}, "requests": {"cpu": "500m"}},
        ports=[{"containerPort": 8080, "name": "metrics", "protocol": "TCP"}],
        env=[{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {}}}],
        command=["/bin/bash", "-c"],
        args=["--"],
    )
    cluster = parse_raycluster(doc)
    ctx = BuildContext(created_by="test", cluster_domain="cluster.local")
    build_head_pod(cluster, ctx)
    build_worker_pod(cluster, cluster.spec.worker_group_specs[0], ctx)
    build_head_service(cluster, ctx)
    cluster_status.desired_resources(cluster, intent_of(cluster))


def test_a_rayservice_with_a_bad_quantity_is_refused_by_the_models() -> None:
    doc = copy.deepcopy(BASE)
    head = doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    head["containers"][0]["resources"] = {"limits": {"cpu": "1e99999999999999999999"}}
    with pytest.raises(ValidationError) as err:
        parse_rayservice(doc)
    assert "rayClusterConfig.headGroupSpec.template" in validation_message(err.value)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"resources": {"limits": {"cpu": "NaN"}}}, "resources.limits.cpu: invalid quantity 'NaN'"),
        ({"resources": {"limits": {"cpu": "1e1000000000000000000000"}}}, "limits.cpu"),
        ({"ports": "8080"}, "containers[0].ports: must be a list"),
        ({"ports": [{"name": "x"}]}, "ports[0].containerPort: must be an integer"),
        ({"command": "ray start"}, "containers[0].command: must be a list of strings"),
        ({"env": {"A": "1"}}, "containers[0].env: must be a list"),
    ],
)
async def test_a_raycluster_with_a_bad_container_ends_on_the_invalid_spec_path(
    harness: Harness, manifests: Path, fields: dict[str, Any], expected: str
) -> None:
    h = harness
    doc = load(manifests, "ray-cluster.sample.yaml", "RayCluster")
    container = doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    container.update(fields)
    h.kube.put(doc)
    name = doc["metadata"]["name"]

    again = await h.cluster_pass(name)

    assert again is None  # not retried until the spec changes
    status = h.cluster(name)["status"]
    assert status["state"] == "failed"
    (failure,) = [c for c in status["conditions"] if c["type"] == "ReplicaFailure"]
    assert failure["reason"] == cluster_status.INVALID_SPEC
    assert expected in failure["message"]
    await h.events_posted()
    (warning,) = [e for e in h.kube.events if e.type == "Warning"]
    assert warning.reason == cluster_status.INVALID_SPEC
    assert h.pods(name) == []


async def test_a_rayservice_with_wrong_typed_env_says_why(harness: Harness) -> None:
    h = harness
    doc = copy.deepcopy(BASE)
    worker = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    worker["containers"][0]["env"] = [{"name": "A", "value": 1}]
    h.kube.put(doc)

    await h.service_pass("rs")

    status = h.rayservice("rs")["status"]
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "ValidationFailed"
    assert "env[0].value: must be a string" in ready["message"]
    assert h.kube.all(RAYCLUSTERS, NS) == []
    assert h.kube.stored(RAYSERVICES, NS, "rs") is not None
