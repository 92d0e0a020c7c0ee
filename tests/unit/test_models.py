"""The ray.io models: every shipped manifest parses, keeps every field, and
exposes the attributes other layers build on."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from e2e.paths import manifest_files
from raykube.models import (
    MAX_INT32,
    Condition,
    ConditionStatus,
    RayCluster,
    RayClusterStatus,
    RayService,
    RayServiceStatus,
    RayServiceUpgradeType,
    ScaleStrategy,
    ServingClusterStatus,
    WorkerGroupSpec,
    dump,
    find_condition,
    parse_raycluster,
    parse_rayservice,
)


def _ray_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in manifest_files("*.yaml"):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc and doc.get("apiVersion", "").startswith("ray.io/"):
                docs.append((f"{path.name}#{i}", doc))
    return docs


RAY_DOCS = _ray_documents()


def _parse(doc: dict[str, Any]) -> RayCluster | RayService:
    return parse_raycluster(doc) if doc["kind"] == "RayCluster" else parse_rayservice(doc)


def _cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]
    return spec if doc["kind"] == "RayCluster" else spec["rayClusterConfig"]


def test_the_manifest_corpus_is_there() -> None:
    kinds = sorted(doc["kind"] for _, doc in RAY_DOCS)
    assert kinds.count("RayCluster") == 5
    assert kinds.count("RayService") == 7


@pytest.mark.parametrize(("name", "doc"), RAY_DOCS, ids=[n for n, _ in RAY_DOCS])
def test_manifest_round_trips_unchanged(name: str, doc: dict[str, Any]) -> None:
    original = copy.deepcopy(doc)
    parsed = _parse(doc)
    assert dump(parsed) == original
    assert doc == original, "parsing must not mutate its input"


@pytest.mark.parametrize(("name", "doc"), RAY_DOCS, ids=[n for n, _ in RAY_DOCS])
def test_manifest_typed_view(name: str, doc: dict[str, Any]) -> None:
    parsed = _parse(doc)
    assert parsed.metadata.name == doc["metadata"]["name"]
    raw = _cluster_spec(doc)
    spec = parsed.spec if isinstance(parsed, RayCluster) else parsed.spec.ray_cluster_config
    head = raw["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert spec.head_group_spec.ray_container()["name"] == head["name"]
    for group, raw_group in zip(
        spec.worker_group_specs, raw.get("workerGroupSpecs", []), strict=True
    ):
        assert group.group_name == raw_group["groupName"]
        assert group.replicas == raw_group.get("replicas", 0)
        assert group.min_replicas == raw_group.get("minReplicas", 0)
        assert group.max_replicas == raw_group.get("maxReplicas", MAX_INT32)
        assert group.template is raw_group["template"] or group.template == raw_group["template"]


def test_worker_group_defaults_match_kuberay() -> None:
    group = WorkerGroupSpec.model_validate(
        {"groupName": "g", "template": {"spec": {"containers": [{"name": "ray"}]}}}
    )
    assert (group.replicas, group.min_replicas, group.max_replicas) == (0, 0, MAX_INT32)
    assert group.num_of_hosts == 1
    assert group.scale_strategy == ScaleStrategy()
    assert group.scale_strategy.workers_to_delete == []
    assert group.ray_start_params == {}
    assert group.suspend is None


def test_rayservice_defaults() -> None:
    doc = next(d for n, d in RAY_DOCS if n.startswith("ray-service.sample"))
    spec = parse_rayservice(doc).spec
    assert spec.upgrade_strategy.type is RayServiceUpgradeType.NEW_CLUSTER
    assert spec.upgrade_strategy.timeout_seconds == 1800
    assert spec.ray_cluster_deletion_delay_seconds == 60
    assert spec.service_unhealthy_second_threshold == 900
    assert spec.deployment_unhealthy_second_threshold == 300
    assert spec.serve_config_v2 is not None and "fruit_app" in spec.serve_config_v2
    assert spec.exclude_head_pod_from_serve_svc is None and spec.suspend is None


def test_v1alpha1_rayservice_parses_with_its_thresholds() -> None:
    doc = next(d for n, d in RAY_DOCS if n.startswith("ray_v1alpha1"))
    rs = parse_rayservice(doc)
    assert rs.api_version == "ray.io/v1alpha1"
    assert rs.spec.service_unhealthy_second_threshold == 900
    assert rs.spec.deployment_unhealthy_second_threshold == 300


def test_camel_case_names_and_snake_case_attributes() -> None:
    doc = next(d for n, d in RAY_DOCS if n.startswith("ray-cluster.autoscaler"))
    rc = parse_raycluster(doc)
    assert rc.spec.enable_in_tree_autoscaling is True
    assert rc.spec.autoscaler_options is not None
    assert rc.spec.autoscaler_options.idle_timeout_seconds == 60
    assert rc.spec.head_group_spec.ray_start_params == {"num-cpus": "0"}
    stored = {**doc, "spec": copy.deepcopy(doc["spec"])}
    stored["spec"]["workerGroupSpecs"][0]["scaleStrategy"] = {"workersToDelete": ["a", "b"]}
    stored["spec"]["workerGroupSpecs"][0]["numOfHosts"] = 2
    group = parse_raycluster(stored).spec.worker_group_specs[0]
    assert group.scale_strategy.workers_to_delete == ["a", "b"]
    assert group.num_of_hosts == 2


def test_gcs_fault_tolerance_options() -> None:
    doc = next(d for n, d in RAY_DOCS if n.startswith("ray-cluster.external-redis"))
    ft = parse_raycluster(doc).spec.gcs_fault_tolerance_options
    assert ft is not None and ft.redis_address == "redis:6379"
    assert ft.redis_password is not None and ft.redis_password.value_from is not None
    assert ft.redis_password.value_from["secretKeyRef"]["name"] == "redis-password-secret"


def test_ray_container_accessors() -> None:
    doc = next(d for n, d in RAY_DOCS if n.startswith("ray-service.text-summarizer"))
    spec = parse_rayservice(doc).spec.ray_cluster_config
    gpu = spec.worker_group_specs[0].ray_container_resources()
    assert gpu.limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert gpu.limit_or_request("cpu") == "4"
    assert spec.head_group_spec.pod_spec()["volumes"][0]["name"] == "ray-logs"
    v1alpha1 = next(d for n, d in RAY_DOCS if n.startswith("ray_v1alpha1"))
    head = parse_rayservice(v1alpha1).spec.ray_cluster_config.head_group_spec
    assert head.ray_container_resources().limits == {"cpu": "2", "memory": "2Gi"}


def test_ray_container_requires_a_container() -> None:
    with pytest.raises(ValueError, match="must be a non-empty list"):
        WorkerGroupSpec(group_name="g", template={"spec": {"containers": []}})
    group = WorkerGroupSpec.model_construct(group_name="g", template={"spec": {"containers": []}})
    with pytest.raises(ValueError, match="no containers"):
        group.ray_container()
    assert WorkerGroupSpec(group_name="g", template={"spec": {"containers": [{"name": "r"}]}})


def test_unknown_fields_survive_a_round_trip() -> None:
    doc = copy.deepcopy(next(d for n, d in RAY_DOCS if n.startswith("ray-cluster.sample")))
    doc["spec"]["futureField"] = {"x": 1}
    doc["spec"]["workerGroupSpecs"][0]["futureGroupField"] = "y"
    assert dump(parse_raycluster(doc)) == doc


def test_dump_of_a_built_object_holds_only_what_was_set() -> None:
    status = RayClusterStatus(desired_cpu="2", desired_worker_replicas=0, state="ready")
    assert dump(status) == {"desiredCPU": "2", "desiredWorkerReplicas": 0, "state": "ready"}


def test_status_round_trip_and_wire_formats() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    status = RayServiceStatus(
        service_status="Running",
        num_serve_endpoints=2,
        active_service_status=ServingClusterStatus(
            ray_cluster_name="rs-abcde",
            ray_cluster_status=RayClusterStatus(desired_gpu="1", head={"podIP": "10.0.0.1"}),
        ),
        conditions=[
            Condition(
                type="Ready",
                status=ConditionStatus.TRUE,
                reason="NonZeroServeEndpoints",
                last_transition_time=when,
                observed_generation=3,
            )
        ],
        last_update_time=when,
    )
    wire = dump(status)
    assert wire["numServeEndpoints"] == 2
    assert wire["lastUpdateTime"] == "2025-01-02T03:04:05Z"
    assert wire["conditions"][0]["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert wire["activeServiceStatus"]["rayClusterStatus"] == {
        "desiredGPU": "1",
        "head": {"podIP": "10.0.0.1"},
    }
    again = RayServiceStatus.model_validate(wire)
    assert again.conditions[0].last_transition_time == when.replace(microsecond=0)
    ready = find_condition(again.conditions, "Ready")
    assert ready is not None and ready.status is ConditionStatus.TRUE
    assert find_condition(again.conditions, "UpgradeInProgress") is None


def test_status_quantities_accept_yaml_numbers() -> None:
    status = RayClusterStatus.model_validate({"desiredCPU": 3, "desiredMemory": "4Gi"})
    assert (status.desired_cpu, status.desired_memory) == ("3", "4Gi")


def test_application_statuses_json_names() -> None:
    raw = {
        "rayClusterName": "rs-x",
        "applicationStatuses": {
            "fruit_app": {
                "status": "RUNNING",
                "healthLastUpdateTime": "2025-01-01T00:00:00Z",
                "serveDeploymentStatuses": {"MangoStand": {"status": "HEALTHY"}},
            }
        },
    }
    parsed = ServingClusterStatus.model_validate(raw)
    app = parsed.application_statuses["fruit_app"]
    assert app.serve_deployment_statuses["MangoStand"].status == "HEALTHY"
    assert dump(parsed) == raw


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "workerGroupSpecs", 0, "replicas"), -1),
        (("spec", "workerGroupSpecs", 0, "maxReplicas"), MAX_INT32 + 1),
        (("spec", "workerGroupSpecs", 0, "numOfHosts"), 0),
        (("spec", "workerGroupSpecs", 0, "groupName"), ""),
        (("kind",), "RayService"),
        (("apiVersion",), "ray.io/v2"),
    ],
)
def test_parse_refuses_what_the_crd_refuses(path: tuple[Any, ...], value: object) -> None:
    doc = copy.deepcopy(next(d for n, d in RAY_DOCS if n.startswith("ray-cluster.sample")))
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        parse_raycluster(doc)
