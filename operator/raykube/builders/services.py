"""The head Service of a RayCluster (pure)."""

from __future__ import annotations

from typing import Any

from raykube.builders import labels, owners
from raykube.builders.pods import BuildContext, container_ports
from raykube.builders.ray_start import DEFAULT_HEAD_PORTS
from raykube.models.raycluster import RayCluster


def head_ports(cluster: RayCluster) -> list[dict[str, Any]]:
    """Named ports of the head container, with KubeRay's defaults filled in."""
    container = cluster.spec.head_group_spec.ray_container()
    source = [p for p in container_ports(container, DEFAULT_HEAD_PORTS) if p.get("name")]
    return [
        {
            "name": p["name"],
            "port": p["containerPort"],
            "targetPort": p["containerPort"],
            "protocol": p.get("protocol", "TCP"),
        }
        for p in source
    ]


def build_head_service(cluster: RayCluster, ctx: BuildContext) -> dict[str, Any]:
    name = cluster.metadata.name
    head = cluster.spec.head_group_spec
    override = dict(head.head_service or {})
    over_meta = override.get("metadata") or {}
    over_spec = override.get("spec") or {}
    annotations = {
        **(cluster.spec.head_service_annotations or {}),
        **(over_meta.get("annotations") or {}),
    }
    spec: dict[str, Any] = {
        **over_spec,
        "type": str(head.service_type) if head.service_type else over_spec.get("type", "ClusterIP"),
        "selector": labels.head_selector_labels(name),
        "ports": over_spec.get("ports") or head_ports(cluster),
        # Workers must reach the GCS before the head passes its readiness probe.
        "publishNotReadyAddresses": True,
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": labels.head_service_name(name),
            "namespace": cluster.metadata.namespace,
            "labels": {
                **(over_meta.get("labels") or {}),
                labels.CLUSTER: name,
                labels.NODE_TYPE: "head",
                labels.IDENTIFIER: f"{name}-head",
                labels.APP_NAME: "kuberay",
                labels.CREATED_BY: ctx.created_by,
            },
            "annotations": annotations,
            "ownerReferences": [owners.of_raycluster(cluster)],
        },
        "spec": spec,
    }
