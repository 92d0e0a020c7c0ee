"""Environment of the Ray container (pure).

Values the pod only knows at run time (its own name, namespace, group) come
from the downward API, so one pod template serves every replica. A variable
the user's container already sets is never added (the user's value wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raykube.builders import gcs_storage, labels
from raykube.builders.autoscaler import autoscaler_v2
from raykube.builders.labels import NodeType
from raykube.models.clusterspec import AUTOSCALER_V2_ENV
from raykube.models.raycluster import RayCluster

#: The head's Redis credentials (KubeRay's names): ``ray start`` reads them as
#: ``$REDIS_USERNAME``/``$REDIS_PASSWORD``, the Redis cleanup Job from the env.
REDIS_USERNAME, REDIS_PASSWORD = "REDIS_USERNAME", "REDIS_PASSWORD"
#: Lets worker raylets outlive a GCS restart long enough for it to come back.
GCS_RECONNECT_TIMEOUT_S = "600"
#: On every Ray container (KubeRay's): the dashboard shows the pod's disk usage.
DISK_USAGE = {"RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE": "1"}
#: On every Ray container of a RayService's cluster (KubeRay's): Serve fails
#: over quickly when a node or the GCS is gone instead of waiting on timeouts.
SERVE_SLA = {
    "RAY_timeout_ms_task_wait_for_death_info": "0",
    "RAY_gcs_server_request_timeout_seconds": "5",
    "RAY_SERVE_KV_TIMEOUT_S": "5",
}


def gcs_fault_tolerant(cluster: RayCluster) -> bool:
    """GCS fault tolerance as KubeRay reads it: ``gcsFaultToleranceOptions``, or
    the older ``ray.io/ft-enabled: "true"`` annotation on the RayCluster."""
    if cluster.spec.gcs_fault_tolerance_options is not None:
        return True
    return cluster.metadata.annotations.get(labels.FT_ENABLED, "").lower() == "true"


def redis_fault_tolerant(cluster: RayCluster) -> bool:
    """GCS fault tolerance kept in Redis (every kind but backend rocksdb): the
    cluster's keys there are deleted on deletion (the cleanup finalizer)."""
    return gcs_fault_tolerant(cluster) and not gcs_storage.embedded(cluster)


def storage_namespace(cluster: RayCluster) -> str:
    """Ray's ``external_storage_namespace`` (its keys' prefix in Redis):
    ``externalStorageNamespace``, else the RayCluster's
    ``ray.io/external-storage-namespace`` annotation, else its UID."""
    ft = cluster.spec.gcs_fault_tolerance_options
    if ft is not None and ft.external_storage_namespace:
        return ft.external_storage_namespace
    chosen = cluster.metadata.annotations.get(labels.EXTERNAL_STORAGE_NAMESPACE)
    return chosen or cluster.metadata.uid or cluster.metadata.name


def _field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def _gcs_ft_env(cluster: RayCluster, node_type: NodeType) -> dict[str, dict[str, Any]]:
    if not gcs_fault_tolerant(cluster):
        return {}
    if node_type == "worker":
        return {"RAY_gcs_rpc_server_reconnect_timeout_s": {"value": GCS_RECONNECT_TIMEOUT_S}}
    if gcs_storage.embedded(cluster):
        return gcs_storage.head_env(cluster)
    env: dict[str, dict[str, Any]] = {
        "RAY_external_storage_namespace": {"value": storage_namespace(cluster)}
    }
    ft = cluster.spec.gcs_fault_tolerance_options
    if ft is None:
        return env
    if ft.redis_address:
        env["RAY_REDIS_ADDRESS"] = {"value": ft.redis_address}
    for name, credential in (
        (REDIS_USERNAME, ft.redis_username),
        (REDIS_PASSWORD, ft.redis_password),
    ):
        if credential is not None and credential.value_from:
            env[name] = {"valueFrom": dict(credential.value_from)}
        elif credential is not None and credential.value is not None:
            env[name] = {"value": credential.value}
    return env


def ray_env(
    cluster: RayCluster,
    node_type: NodeType,
    container: Mapping[str, Any],
    start_command: str,
    cluster_domain: str,
    head_port: str,
    serve: bool = False,
) -> list[dict[str, Any]]:
    """The user's env first (theirs win), then every variable Ray expects.

    ``head_port`` is the GCS port (the head's ``rayStartParams.port``);
    ``serve``: the cluster belongs to a RayService."""
    ours: dict[str, dict[str, Any]] = {
        "RAY_CLUSTER_NAME": _field(f"metadata.labels['{labels.CLUSTER}']"),
        "RAY_CLUSTER_NAMESPACE": _field("metadata.namespace"),
        "RAY_CLOUD_INSTANCE_ID": _field("metadata.name"),
        "RAY_NODE_TYPE_NAME": _field(f"metadata.labels['{labels.GROUP}']"),
        "KUBERAY_GEN_RAY_START_CMD": {"value": start_command},
        "RAY_USAGE_STATS_KUBERAY_IN_USE": {"value": "1"},
        "RAY_PORT": {"value": head_port},
    }
    if node_type == "head":
        ours["RAY_ADDRESS"] = {"value": f"127.0.0.1:{head_port}"}
    else:
        svc = labels.head_service_name(cluster.metadata.name)
        fqdn = f"{svc}.{cluster.metadata.namespace}.svc.{cluster_domain}"
        ours["RAY_IP"] = {"value": fqdn}
        ours["FQ_RAY_IP"] = {"value": fqdn}
        ours["RAY_ADDRESS"] = {"value": f"{fqdn}:{head_port}"}
    ours.update({k: {"value": v} for k, v in DISK_USAGE.items()})
    if serve:
        ours.update({k: {"value": v} for k, v in SERVE_SLA.items()})
    ours.update(_gcs_ft_env(cluster, node_type))
    if node_type == "head" and autoscaler_v2(cluster):
        ours[AUTOSCALER_V2_ENV] = {"value": "true"}
    env = [dict(e) for e in container.get("env") or []]
    present = {e.get("name") for e in env}
    env += [{"name": k, **v} for k, v in ours.items() if k not in present]
    return env
