"""The head Service of a RayCluster (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raykube import ports
from raykube.builders import labels, owners
from raykube.builders.pods import BuildContext
from raykube.builders.ray_start import gcs_port_number
from raykube.models.raycluster import RayCluster


def head_ports(cluster: RayCluster) -> list[dict[str, Any]]:
    """Service ports for the head container's named ports, KubeRay's defaults
    filled in (the GCS's at the head's ``rayStartParams.port``)."""
    head = cluster.spec.head_group_spec
    return ports.service_ports(
        head.ray_container().get("ports") or [], gcs_port_number(head.ray_start_params)
    )


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
    kind = str(head.service_type) if head.service_type else over_spec.get("type", "ClusterIP")
    spec: dict[str, Any] = {
        **over_spec,
        "type": kind,
        "selector": labels.head_service_selector(name),
        "ports": over_spec.get("ports") or head_ports(cluster),
        # Workers must reach the GCS before the head passes its readiness probe.
        "publishNotReadyAddresses": True,
    }
    if kind == "ClusterIP" and "clusterIP" not in over_spec:
        # KubeRay's default: one head pod needs no virtual IP, and allocating one
        # cost the API server ~0.3 s per Service, ahead of every new cluster's pods.
        spec["clusterIP"] = "None"
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


def needs_headless_service(cluster: RayCluster) -> bool:
    return any(g.num_of_hosts > 1 for g in cluster.spec.worker_group_specs)


def build_headless_service(cluster: RayCluster) -> dict[str, Any]:
    """The headless Service of a cluster with multi-host groups, KubeRay's: the
    hosts of a slice find each other by DNS (ready or not, as they start
    together), whatever Ray's own readiness says."""
    name = cluster.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": labels.headless_service_name(name),
            "namespace": cluster.metadata.namespace,
            # ray.io/cluster besides KubeRay's own label: the operator watches
            # its Services by that label, so a deleted one is recreated at once.
            "labels": {labels.HEADLESS_SERVICE: name, labels.CLUSTER: name},
            "ownerReferences": [owners.of_raycluster(cluster)],
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "None",
            "selector": {labels.CLUSTER: name, labels.NODE_TYPE: "worker"},
            "publishNotReadyAddresses": True,
        },
    }


def keeping_cluster_ip(desired: dict[str, Any], live: Mapping[str, Any] | None) -> dict[str, Any]:
    """``desired`` with the live Service's cluster IP when it has one: a head
    Service created before the head Service went headless keeps its address
    (``clusterIP`` is immutable; changing it would fail every update)."""
    have = ((live or {}).get("spec") or {}).get("clusterIP")
    if not have or have == "None" or desired["spec"].get("clusterIP") != "None":
        return desired
    return {**desired, "spec": {**desired["spec"], "clusterIP": have}}
