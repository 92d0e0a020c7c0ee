"""Environment of the Ray container (pure).

Values the pod only knows at run time (its own name, namespace, group) come
from the downward API, so one pod template serves every replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raykube.builders import labels
from raykube.builders.labels import NodeType
from raykube.models.raycluster import RayCluster
from raykube.ports import GCS_PORT

#: Lets worker raylets outlive a GCS restart long enough for it to come back.
GCS_RECONNECT_TIMEOUT_S = "600"


def _field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def _gcs_ft_env(cluster: RayCluster, node_type: NodeType) -> dict[str, dict[str, Any]]:
    ft = cluster.spec.gcs_fault_tolerance_options
    if ft is None:
        return {}
    if node_type == "worker":
        return {"RAY_gcs_rpc_server_reconnect_timeout_s": {"value": GCS_RECONNECT_TIMEOUT_S}}
    env: dict[str, dict[str, Any]] = {}
    if ft.redis_address:
        env["RAY_REDIS_ADDRESS"] = {"value": ft.redis_address}
    password = ft.redis_password
    if password is not None and password.value_from:
        env["REDIS_PASSWORD"] = {"valueFrom": dict(password.value_from)}
    elif password is not None and password.value is not None:
        env["REDIS_PASSWORD"] = {"value": password.value}
    namespace = ft.external_storage_namespace or cluster.metadata.uid or cluster.metadata.name
    env["RAY_external_storage_namespace"] = {"value": namespace}
    return env


def ray_env(
    cluster: RayCluster,
    node_type: NodeType,
    container: Mapping[str, Any],
    start_command: str,
    cluster_domain: str,
) -> list[dict[str, Any]]:
    """The user's env first (theirs win), then every variable Ray expects."""
    ours: dict[str, dict[str, Any]] = {
        "RAY_CLUSTER_NAME": _field(f"metadata.labels['{labels.CLUSTER}']"),
        "RAY_CLUSTER_NAMESPACE": _field("metadata.namespace"),
        "RAY_CLOUD_INSTANCE_ID": _field("metadata.name"),
        "RAY_NODE_TYPE_NAME": _field(f"metadata.labels['{labels.GROUP}']"),
        "KUBERAY_GEN_RAY_START_CMD": {"value": start_command},
        "RAY_USAGE_STATS_KUBERAY_IN_USE": {"value": "1"},
    }
    if node_type == "head":
        ours["RAY_ADDRESS"] = {"value": f"127.0.0.1:{GCS_PORT}"}
    else:
        svc = labels.head_service_name(cluster.metadata.name)
        fqdn = f"{svc}.{cluster.metadata.namespace}.svc.{cluster_domain}"
        ours["RAY_IP"] = {"value": fqdn}
        ours["FQ_RAY_IP"] = {"value": fqdn}
        ours["RAY_ADDRESS"] = {"value": f"{fqdn}:{GCS_PORT}"}
    ours.update(_gcs_ft_env(cluster, node_type))
    env = [dict(e) for e in container.get("env") or []]
    present = {e.get("name") for e in env}
    env += [{"name": k, **v} for k, v in ours.items() if k not in present]
    return env
