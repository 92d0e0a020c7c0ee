"""What the parity tier found raykube's pods and Services got wrong against
KubeRay 1.6.2 (issue 13), each pinned by a test that failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest

from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.builders.services import build_head_service
from raykube.models.raycluster import RayCluster, parse_raycluster

NS = "ns"
UID = "0d6f1c2e-uid"
SVC = f"rc-head-svc.{NS}.svc.cluster.local"


def _container(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "rayproject/ray:2.60.0",
        "resources": {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"memory": "1Gi"}},
        **extra,
    }


def _cluster(
    head_params: dict[str, str] | None = None,
    worker_params: dict[str, str] | None = None,
    head: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> RayCluster:
    return parse_raycluster(
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {
                "name": "rc",
                "namespace": NS,
                "uid": UID,
                "annotations": annotations or {},
            },
            "spec": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {
                    "rayStartParams": head_params or {},
                    "template": {"spec": {"containers": [head or _container("ray-head")]}},
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "cpu",
                        "replicas": 1,
                        "rayStartParams": worker_params or {},
                        "template": {"spec": {"containers": [worker or _container("ray-worker")]}},
                    }
                ],
                **spec,
            },
        }
    )


def _ray(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


def _env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _ray(pod)["env"]}


def _head(cluster: RayCluster, ctx: BuildContext | None = None) -> dict[str, Any]:
    return build_head_pod(cluster, ctx or BuildContext(), suffix="aaaaa")


def _worker(cluster: RayCluster, ctx: BuildContext | None = None) -> dict[str, Any]:
    group = cluster.spec.worker_group_specs[0]
    return build_worker_pod(cluster, group, ctx or BuildContext(), suffix="bbbbb")


# --- 1. the head's rayStartParams.port reaches the workers and the Service ----------


def test_the_heads_port_is_where_workers_join() -> None:
    cluster = _cluster(head_params={"port": "6380"})
    worker = _worker(cluster)
    assert f"--address={SVC}:6380" in _ray(worker)["args"][0].split()
    env = _env(worker)
    assert f"--address={SVC}:6380" in env["KUBERAY_GEN_RAY_START_CMD"].split()
    assert env["RAY_ADDRESS"] == f"{SVC}:6380"
    assert env["RAY_PORT"] == "6380"
    head_env = _env(_head(cluster))
    assert head_env["RAY_ADDRESS"] == "127.0.0.1:6380"
    assert head_env["RAY_PORT"] == "6380"
    assert "--port=6380" in head_env["KUBERAY_GEN_RAY_START_CMD"].split()


def test_the_head_services_gcs_port_follows_the_heads_port() -> None:
    """With no gcs-server port declared, the default one is where Ray listens."""
    cluster = _cluster(head_params={"port": "6380"})
    ports = {p["name"]: p for p in build_head_service(cluster, BuildContext())["spec"]["ports"]}
    assert ports["gcs-server"]["port"] == ports["gcs-server"]["targetPort"] == 6380
    head_ports = {p["name"]: p["containerPort"] for p in _ray(_head(cluster))["ports"]}
    assert head_ports["gcs-server"] == 6380


def test_a_declared_gcs_port_is_kept() -> None:
    head = _container("ray-head", ports=[{"name": "gcs-server", "containerPort": 6380}])
    cluster = _cluster(head_params={"port": "6380"}, head=head)
    ports = {
        p["name"]: p["port"] for p in build_head_service(cluster, BuildContext())["spec"]["ports"]
    }
    assert ports["gcs-server"] == 6380
    assert 6379 not in ports.values()


def test_head_service_ports_and_selector_are_kuberays() -> None:
    svc = build_head_service(_cluster(), BuildContext())["spec"]
    assert {p["appProtocol"] for p in svc["ports"]} == {"tcp"}
    assert svc["selector"] == {
        "ray.io/cluster": "rc",
        "ray.io/node-type": "head",
        "ray.io/identifier": "rc-head",
        "app.kubernetes.io/name": "kuberay",
    }
    # The head pod carries every label the Service selects.
    head_labels = _head(_cluster())["metadata"]["labels"]
    assert svc["selector"].items() <= head_labels.items()


# --- 2. "false" leaves a flag out ----------------------------------------------------


def test_a_false_param_is_left_out_of_the_pods_command() -> None:
    worker = _worker(_cluster(worker_params={"disable-usage-stats": "False"}))
    assert "disable-usage-stats" not in _ray(worker)["args"][0]
    assert "disable-usage-stats" not in _env(worker)["KUBERAY_GEN_RAY_START_CMD"]


# --- 3. /dev/shm ---------------------------------------------------------------------


def test_shared_memory_is_mounted_as_large_as_the_memory_limit() -> None:
    for pod in (_head(_cluster()), _worker(_cluster())):
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["shared-mem"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
        assert {"name": "shared-mem", "mountPath": "/dev/shm"} in _ray(pod)["volumeMounts"]


def test_shared_memory_falls_back_to_the_request_and_else_has_no_limit() -> None:
    requested = _container("ray-worker", resources={"requests": {"memory": "3Gi"}})
    worker = _worker(_cluster(worker=requested))
    assert worker["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "3Gi"}
    bare = _worker(_cluster(worker=_container("ray-worker", resources={})))
    assert bare["spec"]["volumes"][0]["emptyDir"] == {"medium": "Memory"}


def test_a_users_own_dev_shm_or_plasma_directory_is_left_alone() -> None:
    mounted = _container("ray-worker", volumeMounts=[{"name": "mine", "mountPath": "/dev/shm"}])
    worker = _worker(_cluster(worker=mounted))
    assert "volumes" not in worker["spec"]
    assert _ray(worker)["volumeMounts"] == [{"name": "mine", "mountPath": "/dev/shm"}]
    plasma = _worker(_cluster(worker_params={"plasma-directory": "/data"}))
    assert "volumes" not in plasma["spec"]


# --- 4. the autoscaler ---------------------------------------------------------------


def test_the_autoscaled_head_runs_no_monitor_and_shares_its_logs() -> None:
    head = _head(_cluster(enableInTreeAutoscaling=True))
    assert "--no-monitor" in _ray(head)["args"][0].split()
    assert "--no-monitor" in _env(head)["KUBERAY_GEN_RAY_START_CMD"].split()
    volumes = {v["name"]: v for v in head["spec"]["volumes"]}
    assert volumes["ray-logs"] == {"name": "ray-logs", "emptyDir": {}}
    ray, sidecar = head["spec"]["containers"]
    assert sidecar["name"] == "autoscaler"
    for container in (ray, sidecar):
        assert {"name": "ray-logs", "mountPath": "/tmp/ray"} in container["volumeMounts"]
    plain = _head(_cluster())
    assert "--no-monitor" not in _ray(plain)["args"][0]
    assert "ray-logs" not in {v["name"] for v in plain["spec"]["volumes"]}


# --- 5. probes -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["livenessProbe", "readinessProbe"])
def test_head_probes_wait_five_seconds_and_workers_two(kind: str) -> None:
    assert _ray(_head(_cluster()))[kind]["timeoutSeconds"] == 5
    assert _ray(_worker(_cluster()))[kind]["timeoutSeconds"] == 2


def test_rayservice_workers_check_their_raylet_and_their_own_serve_port() -> None:
    worker = _container("ray-worker", ports=[{"name": "serve", "containerPort": 9000}])
    pod = _worker(_cluster(worker=worker), BuildContext(serve_readiness=True))
    probe = _ray(pod)["readinessProbe"]
    check = " ".join(probe["exec"]["command"])
    assert "http://localhost:52365/api/local_raylet_healthz" in check
    assert "http://localhost:9000/-/healthz" in check
    assert "8000" not in check
    assert probe["failureThreshold"] == 1
    default = _ray(_worker(_cluster(), BuildContext(serve_readiness=True)))["readinessProbe"]
    assert "http://localhost:8000/-/healthz" in " ".join(default["exec"]["command"])


# --- 6. environment ------------------------------------------------------------------

SERVE_ENV = {
    "RAY_SERVE_KV_TIMEOUT_S": "5",
    "RAY_gcs_server_request_timeout_seconds": "5",
    "RAY_timeout_ms_task_wait_for_death_info": "0",
}


def test_every_ray_container_gets_disk_usage_and_the_gcs_port() -> None:
    for pod in (_head(_cluster()), _worker(_cluster())):
        env = _env(pod)
        assert env["RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"] == "1"
        assert env["RAY_PORT"] == "6379"
        assert not SERVE_ENV.keys() & env.keys()


def test_a_rayservices_cluster_gets_the_serve_timeouts() -> None:
    ctx = BuildContext(serve_readiness=True)
    for pod in (_head(_cluster(), ctx), _worker(_cluster(), ctx)):
        assert SERVE_ENV.items() <= _env(pod).items()


def test_the_users_env_wins() -> None:
    own = [{"name": "RAY_SERVE_KV_TIMEOUT_S", "value": "30"}, {"name": "RAY_PORT", "value": "1"}]
    pod = _worker(
        _cluster(worker=_container("ray-worker", env=own)), BuildContext(serve_readiness=True)
    )
    names = [e["name"] for e in _ray(pod)["env"]]
    assert names.count("RAY_SERVE_KV_TIMEOUT_S") == names.count("RAY_PORT") == 1
    assert _env(pod)["RAY_SERVE_KV_TIMEOUT_S"] == "30"


# --- 7. fault tolerance --------------------------------------------------------------


def test_a_cluster_without_fault_tolerance_says_so() -> None:
    annotations = _head(_cluster())["metadata"]["annotations"]
    assert annotations["ray.io/ft-enabled"] == "false"
    assert "ray.io/external-storage-namespace" not in annotations
    assert "RAY_external_storage_namespace" not in _env(_head(_cluster()))


def test_a_fault_tolerant_head_names_its_storage_namespace() -> None:
    cluster = _cluster(gcsFaultToleranceOptions={"redisAddress": "redis:6379"})
    head = _head(cluster)
    assert head["metadata"]["annotations"]["ray.io/ft-enabled"] == "true"
    assert head["metadata"]["annotations"]["ray.io/external-storage-namespace"] == UID
    assert _env(head)["RAY_external_storage_namespace"] == UID
    assert _env(_worker(cluster))["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"


def test_the_storage_namespace_option_wins_over_the_annotation_over_the_uid() -> None:
    by_annotation = _cluster(
        annotations={"ray.io/external-storage-namespace": "chosen"},
        gcsFaultToleranceOptions={"redisAddress": "redis:6379"},
    )
    head = _head(by_annotation)
    assert head["metadata"]["annotations"]["ray.io/external-storage-namespace"] == "chosen"
    assert _env(head)["RAY_external_storage_namespace"] == "chosen"
    by_option = _cluster(
        annotations={"ray.io/external-storage-namespace": "chosen"},
        gcsFaultToleranceOptions={"redisAddress": "r:6379", "externalStorageNamespace": "opt"},
    )
    assert _env(_head(by_option))["RAY_external_storage_namespace"] == "opt"


def test_the_older_ft_annotation_turns_fault_tolerance_on() -> None:
    cluster = _cluster(annotations={"ray.io/ft-enabled": "true"})
    head = _head(cluster)
    assert head["metadata"]["annotations"]["ray.io/ft-enabled"] == "true"
    assert head["metadata"]["annotations"]["ray.io/external-storage-namespace"] == UID
    assert _env(_worker(cluster))["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"


# --- 8. the user's command -------------------------------------------------------------


def test_the_users_command_runs_before_ulimit() -> None:
    head = _container("ray-head", command=["echo 123"], args=["456"])
    script = _ray(_head(_cluster(head=head)))["args"][0]
    assert script.startswith(" echo 123  456  && ulimit -n 65536; ray start --head ")


def test_a_command_that_starts_ray_itself_is_kept() -> None:
    own = ["bash", "-c", "ray start --head --block"]
    pod = _head(_cluster(head=_container("ray-head", command=own)))
    assert _ray(pod)["command"] == own
    assert "args" not in _ray(pod)


def test_the_overwrite_annotation_keeps_the_users_command() -> None:
    own = ["my-entrypoint"]
    cluster = _cluster(
        annotations={"ray.io/overwrite-container-cmd": "true"},
        worker=_container("ray-worker", command=own),
    )
    worker = _worker(cluster)
    assert _ray(worker)["command"] == own
    assert "--address=" in _env(worker)["KUBERAY_GEN_RAY_START_CMD"]
