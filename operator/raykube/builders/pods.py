"""Head and worker pods of a RayCluster (pure).

The pod is the user's template with what Ray on Kubernetes needs added:
labels, owner reference, the ``ray start`` command, environment, default
ports, probes and, on the head, the autoscaler sidecar. What the user wrote
wins wherever it does not break the operator's own contract (labels).
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raykube.builders import labels, owners, probes
from raykube.builders.autoscaler import autoscaler_container
from raykube.builders.env import ray_env
from raykube.builders.labels import NodeType
from raykube.builders.ray_start import (
    container_shell,
    ray_start_command,
)
from raykube.models.clusterspec import WorkerGroupSpec
from raykube.models.raycluster import RayCluster
from raykube.ports import DEFAULT_HEAD_PORTS, DEFAULT_WORKER_PORTS, container_ports

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


def random_suffix() -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


@dataclass(frozen=True)
class BuildContext:
    """What a builder needs besides the RayCluster itself."""

    created_by: str = "raykube"
    cluster_domain: str = "cluster.local"
    #: The ClusterRole an autoscaling cluster's RoleBinding grants its autoscaler.
    autoscaler_cluster_role: str = "raykube-ray-autoscaler"
    #: Workers of a RayService are ready only when their Serve proxy is.
    serve_readiness: bool = False


def head_service_fqdn(cluster: RayCluster, ctx: BuildContext) -> str:
    svc = labels.head_service_name(cluster.metadata.name)
    return f"{svc}.{cluster.metadata.namespace}.svc.{ctx.cluster_domain}"


def _with_probes(
    container: dict[str, Any], node_type: NodeType, ray_version: str | None, ctx: BuildContext
) -> None:
    container.setdefault("livenessProbe", probes.ray_probe(node_type, ray_version, liveness=True))
    if node_type == "worker" and ctx.serve_readiness:
        container.setdefault("readinessProbe", probes.serve_readiness_probe())
    else:
        container.setdefault(
            "readinessProbe", probes.ray_probe(node_type, ray_version, liveness=False)
        )


def _pod_metadata(
    template: Mapping[str, Any], name: str, cluster: RayCluster, own: dict[str, str]
) -> dict[str, Any]:
    meta = template.get("metadata") or {}
    return {
        "name": name,
        "namespace": cluster.metadata.namespace,
        # Ours are applied last: user labels merge in but cannot override them.
        "labels": {**(meta.get("labels") or {}), **own},
        "annotations": dict(meta.get("annotations") or {}),
        "ownerReferences": [owners.of_raycluster(cluster)],
    }


def _build_pod(
    cluster: RayCluster,
    template: Mapping[str, Any],
    node_type: NodeType,
    group: str,
    params: Mapping[str, str],
    name: str,
    ctx: BuildContext,
) -> dict[str, Any]:
    tpl = copy.deepcopy(dict(template))
    spec: dict[str, Any] = tpl.get("spec") or {}
    container: dict[str, Any] = spec["containers"][0]
    start = ray_start_command(node_type, params, container, head_service_fqdn(cluster, ctx))
    container["command"], container["args"] = container_shell(container, start)
    container["env"] = ray_env(cluster, node_type, container, start, ctx.cluster_domain)
    defaults = DEFAULT_HEAD_PORTS if node_type == "head" else DEFAULT_WORKER_PORTS
    container["ports"] = container_ports(container, defaults)
    _with_probes(container, node_type, cluster.spec.ray_version, ctx)
    spec.setdefault("restartPolicy", "Always")
    own = labels.pod_labels(cluster.metadata.name, node_type, group, ctx.created_by)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _pod_metadata(tpl, name, cluster, own),
        "spec": spec,
    }


def build_head_pod(
    cluster: RayCluster, ctx: BuildContext, suffix: str | None = None
) -> dict[str, Any]:
    head = cluster.spec.head_group_spec
    name = labels.head_pod_prefix(cluster.metadata.name) + (suffix or random_suffix())
    params = dict(head.ray_start_params)
    ft = cluster.spec.gcs_fault_tolerance_options
    if ft is not None and ft.redis_password is not None:
        # The shell expands it from the env var, so the secret never lands in the spec.
        params.setdefault("redis-password", "$REDIS_PASSWORD")
    pod = _build_pod(cluster, head.template, "head", labels.HEAD_GROUP, params, name, ctx)
    if ft is not None:
        pod["metadata"]["annotations"][labels.FT_ENABLED] = "true"
    if cluster.spec.enable_in_tree_autoscaling:
        pod["spec"]["containers"].append(autoscaler_container(cluster))
        pod["spec"].setdefault(
            "serviceAccountName", labels.autoscaler_account_name(cluster.metadata.name)
        )
    return pod


def build_worker_pod(
    cluster: RayCluster, group: WorkerGroupSpec, ctx: BuildContext, suffix: str | None = None
) -> dict[str, Any]:
    prefix = labels.worker_pod_prefix(cluster.metadata.name, group.group_name)
    return _build_pod(
        cluster,
        group.template,
        "worker",
        group.group_name,
        group.ray_start_params,
        prefix + (suffix or random_suffix()),
        ctx,
    )
