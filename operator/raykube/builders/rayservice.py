"""What a RayService owns (pure): its RayClusters and two stable Services.

- A RayCluster ``<rs>-<suffix>`` built from ``rayClusterConfig``, owned by the
  RayService, carrying the hash it was built from and the worker group sizes
  last copied (see ``builders.labels`` for the annotations). Its worker pods
  are labelled ``ray.io/serve=true`` and become ready only when their Serve
  proxy answers (the RayCluster controller adds that readiness probe); its
  head pod starts with ``ray.io/serve=false`` and the RayService controller
  flips the label as the head's proxy comes and goes.
- ``<rs>-head-svc``: the serving cluster's head, every head port.
- ``<rs>-serve-svc`` (or ``serveService``'s name): pods of the serving cluster
  labelled ``ray.io/serve=true``, on the ``serve`` port; during an incremental
  upgrade, the pods of both clusters the operator chose for their share.

Moving traffic to another cluster is re-applying both Services with its name.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from raykube.builders import hashing, labels, owners
from raykube.models.base import dump
from raykube.models.rayservice import RayService
from raykube.ports import named_port, service_ports


def group_sizes(rs: RayService) -> dict[str, list[int]]:
    """Worker group sizes as the RayService states them: [replicas, min, max]."""
    return {
        g.group_name: [g.replicas, g.min_replicas, g.max_replicas]
        for g in rs.spec.ray_cluster_config.worker_group_specs
    }


def _label_template(template: dict[str, Any], value: str) -> None:
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), labels.SERVE: value}


def build_cluster(
    rs: RayService, name: str, config_hash: str, start_small: bool = False
) -> dict[str, Any]:
    """The RayCluster ``name`` for the RayService's current rayClusterConfig.

    ``start_small`` (the new cluster of an incremental upgrade): each worker
    group starts at ``minReplicas``, and Ray's autoscaler grows it as the
    cluster's Serve target_capacity rises (as KubeRay does)."""
    spec = copy.deepcopy(dump(rs.spec.ray_cluster_config))
    _label_template(spec["headGroupSpec"]["template"], "false")
    for group in spec.get("workerGroupSpecs") or []:
        _label_template(group["template"], "true")
        if start_small:
            group["replicas"] = group.get("minReplicas", 0)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": name,
            "namespace": rs.metadata.namespace,
            "labels": labels.rayservice_labels(rs.metadata.name),
            "annotations": {
                labels.CLUSTER_CONFIG_HASH: config_hash,
                labels.APPLIED_SCALING: json.dumps(group_sizes(rs), sort_keys=True),
            },
            "ownerReferences": [owners.of_rayservice(rs)],
        },
        "spec": spec,
    }


def _service(
    rs: RayService,
    name: str,
    spec: dict[str, Any],
    extra_meta: Mapping[str, Any],
    created_by: str,
) -> dict[str, Any]:
    meta_labels = {
        **(extra_meta.get("labels") or {}),
        **labels.rayservice_labels(rs.metadata.name),
        labels.CREATED_BY: created_by,
    }
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": rs.metadata.namespace,
            "labels": meta_labels,
            "annotations": dict(extra_meta.get("annotations") or {}),
            "ownerReferences": [owners.of_rayservice(rs)],
        },
        "spec": spec,
    }
    # Applied only when this changes: a steady service costs no writes.
    return hashing.stamped(body)


def build_head_service(
    rs: RayService, cluster: str, head_ports: Sequence[Mapping[str, Any]], created_by: str
) -> dict[str, Any]:
    head = rs.spec.ray_cluster_config.head_group_spec
    spec = {
        "type": str(head.service_type) if head.service_type else "ClusterIP",
        "selector": labels.head_selector_labels(cluster),
        "ports": service_ports(head_ports),
    }
    meta = {"annotations": rs.spec.ray_cluster_config.head_service_annotations or {}}
    name = labels.rayservice_head_service_name(rs.metadata.name)
    return _service(rs, name, spec, meta, created_by)


def build_serve_service(
    rs: RayService,
    cluster: str,
    head_ports: Sequence[Mapping[str, Any]],
    created_by: str,
    shared: bool = False,
) -> dict[str, Any]:
    """The serve Service; ``serveService`` may rename it, label it, type it and
    change its ports, never its selector. ``shared``: during an incremental
    upgrade it selects the pods of both clusters that the operator labelled
    for this RayService (``labels.SERVE_TRAFFIC``) instead of one cluster's."""
    override = rs.spec.serve_service or {}
    over_meta = override.get("metadata") or {}
    over_spec = dict(override.get("spec") or {})
    port = named_port(head_ports, "serve")
    spec = {
        "type": "ClusterIP",
        **over_spec,
        "ports": over_spec.get("ports")
        or [{"name": "serve", "port": port, "targetPort": port, "protocol": "TCP"}],
        "selector": labels.shared_serve_selector(rs.metadata.name)
        if shared
        else labels.serve_selector_labels(cluster),
    }
    return _service(rs, labels.serve_service_name(rs), spec, over_meta, created_by)
