"""autoscalerOptions.version: v2 and gcsFaultToleranceOptions.redisUsername, as
KubeRay 1.6.2 builds them: what the pods get, and the specs refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from e2e.paths import REPO, sample
from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.models.raycluster import RayCluster, parse_raycluster
from tests.unit.harness import NS, Harness

CTX = BuildContext()


def _doc(file: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(sample(file).read_text()) if d]
    doc: dict[str, Any] = next(d for d in docs if d["kind"] == "RayCluster")
    doc["metadata"].update(namespace="ns", uid="0000-uid")
    return doc


def _env(pod: dict[str, Any], container: int = 0) -> dict[str, Any]:
    return {e["name"]: e for e in pod["spec"]["containers"][container]["env"]}


def _v2(change: Any = None) -> RayCluster:
    doc = _doc("raycluster-autoscaling-v2.yaml")
    if change is not None:
        change(doc)
    return parse_raycluster(doc)


def test_v2_turns_autoscaler_v2_on_in_the_heads_ray_container_only() -> None:
    cluster = _v2()
    head = build_head_pod(cluster, CTX)
    assert _env(head)["RAY_enable_autoscaler_v2"] == {
        "name": "RAY_enable_autoscaler_v2",
        "value": "true",
    }
    # The sidecar is v1's: it reads the version from the GCS.
    assert head["spec"]["containers"][1]["name"] == "autoscaler"
    assert "RAY_enable_autoscaler_v2" not in _env(head, 1)
    worker = build_worker_pod(cluster, cluster.spec.worker_group_specs[0], CTX)
    assert "RAY_enable_autoscaler_v2" not in _env(worker)


def test_v2_pods_are_never_restarted_in_place() -> None:
    cluster = _v2()
    head = build_head_pod(cluster, CTX)
    worker = build_worker_pod(cluster, cluster.spec.worker_group_specs[0], CTX)
    assert head["spec"]["restartPolicy"] == worker["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("version", [None, "v1"])
def test_v1_and_no_version_keep_the_v1_pods(version: str | None) -> None:
    def change(doc: dict[str, Any]) -> None:
        if version is None:
            del doc["spec"]["autoscalerOptions"]["version"]
        else:
            doc["spec"]["autoscalerOptions"]["version"] = version

    cluster = _v2(change)
    head = build_head_pod(cluster, CTX)
    assert "RAY_enable_autoscaler_v2" not in _env(head)
    assert head["spec"]["restartPolicy"] == "Always"


def test_v2_without_the_autoscaler_changes_nothing() -> None:
    cluster = _v2(lambda doc: doc["spec"].update(enableInTreeAutoscaling=False))
    head = build_head_pod(cluster, CTX)
    assert "RAY_enable_autoscaler_v2" not in _env(head)
    assert head["spec"]["restartPolicy"] == "Always"


def test_v2_refuses_a_pod_template_that_restarts() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["restartPolicy"] = "Always"

    with pytest.raises(ValidationError, match="small's is Always"):
        _v2(change)
    # Never, written out, is what v2 sets anyway.
    never = _v2(
        lambda doc: doc["spec"]["headGroupSpec"]["template"]["spec"].update(restartPolicy="Never")
    )
    assert build_head_pod(never, CTX)["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_version_and_the_heads_own_v2_env_var_are_refused_together(version: str) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["spec"]["autoscalerOptions"]["version"] = version
        head = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        head["env"] = [{"name": "RAY_enable_autoscaler_v2", "value": "1"}]

    with pytest.raises(ValidationError, match="RAY_enable_autoscaler_v2 are both set"):
        _v2(change)


# --- redisUsername --------------------------------------------------------------------------


def _ft(username: dict[str, Any] | None) -> RayCluster:
    doc = _doc("raycluster-fault-tolerant.yaml")
    options = doc["spec"]["gcsFaultToleranceOptions"]
    options.pop("redisUsername", None)
    if username is not None:
        options["redisUsername"] = copy.deepcopy(username)
    return parse_raycluster(doc)


def _start_command(pod: dict[str, Any]) -> str:
    return str(_env(pod)["KUBERAY_GEN_RAY_START_CMD"]["value"])


def test_redis_username_from_a_secret_reaches_ray_start_through_the_env() -> None:
    ref = {"secretKeyRef": {"name": "fault-tolerant-redis", "key": "username"}}
    head = build_head_pod(_ft({"valueFrom": ref}), CTX)
    assert _env(head)["REDIS_USERNAME"] == {"name": "REDIS_USERNAME", "valueFrom": ref}
    command = _start_command(head)
    assert "--redis-username=$REDIS_USERNAME" in command
    assert "--redis-password=$REDIS_PASSWORD" in command


def test_an_inline_redis_username_is_an_env_value() -> None:
    head = build_head_pod(_ft({"value": "ray"}), CTX)
    assert _env(head)["REDIS_USERNAME"] == {"name": "REDIS_USERNAME", "value": "ray"}
    # The value stays in the env: the command names the variable.
    assert "--redis-username=$REDIS_USERNAME" in _start_command(head)


def test_without_redis_username_there_is_no_user_name() -> None:
    cluster = _ft(None)
    head = build_head_pod(cluster, CTX)
    assert "REDIS_USERNAME" not in _env(head)
    assert "--redis-username" not in _start_command(head)
    worker = build_worker_pod(cluster, cluster.spec.worker_group_specs[0], CTX)
    assert "REDIS_USERNAME" not in _env(worker)


async def test_the_controller_reports_a_v2_template_that_restarts(harness: Harness) -> None:
    h = harness
    path = REPO / "tests" / "badinput" / "accepted" / "raycluster-autoscaler-v2-restart-policy.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["namespace"] = NS
    name = h.kube.put(doc)["metadata"]["name"]
    await h.cluster_pass(name)
    assert h.pods(name) == []
    status = h.cluster(name)["status"]
    assert status["state"] == "failed"
    await h.events_posted()
    (event,) = [e for e in h.kube.events if e.reason == "InvalidRayClusterSpec"]
    assert "autoscalerOptions" in event.message and "restartPolicy Never" in event.message
