"""Names and labels, written once: every builder and decision uses these."""

from __future__ import annotations

from typing import Literal

NodeType = Literal["head", "worker"]

IS_RAY_NODE = "ray.io/is-ray-node"
CLUSTER = "ray.io/cluster"
NODE_TYPE = "ray.io/node-type"
GROUP = "ray.io/group"
IDENTIFIER = "ray.io/identifier"
SERVE = "ray.io/serve"
APP_NAME = "app.kubernetes.io/name"
CREATED_BY = "app.kubernetes.io/created-by"
ORIGINATED_FROM_CRD = "ray.io/originated-from-crd"
ORIGINATED_FROM_CR = "ray.io/originated-from-cr-name"
HEAD_GROUP = "headgroup"

#: Annotation holding the hash of the spec a pod was built from.
POD_SPEC_HASH = "ray.io/pod-template-hash"


def head_service_name(cluster: str) -> str:
    return f"{cluster}-head-svc"


def head_pod_prefix(cluster: str) -> str:
    return f"{cluster}-head-"


def worker_pod_prefix(cluster: str, group: str) -> str:
    return f"{cluster}-{group}-worker-"


def autoscaler_account_name(cluster: str) -> str:
    return cluster


def pod_labels(cluster: str, node_type: NodeType, group: str, created_by: str) -> dict[str, str]:
    """The labels raykube owns on a Ray pod; user labels never override these."""
    return {
        IS_RAY_NODE: "yes",
        CLUSTER: cluster,
        NODE_TYPE: node_type,
        GROUP: HEAD_GROUP if node_type == "head" else group,
        IDENTIFIER: f"{cluster}-{node_type}",
        APP_NAME: "kuberay",
        CREATED_BY: created_by,
    }


def cluster_selector(cluster: str) -> str:
    """Label selector of every pod of one cluster."""
    return f"{CLUSTER}={cluster}"


def head_selector_labels(cluster: str) -> dict[str, str]:
    return {CLUSTER: cluster, NODE_TYPE: "head"}


def serve_selector_labels(cluster: str) -> dict[str, str]:
    return {CLUSTER: cluster, SERVE: "true"}
