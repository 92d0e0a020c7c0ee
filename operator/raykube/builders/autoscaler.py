"""Ray's own autoscaler as a sidecar of the head, and the RBAC it needs (pure).

Ray's ``kuberay-autoscaler`` scales by patching the RayCluster's
``workerGroupSpecs[].replicas`` and ``scaleStrategy.workersToDelete``; the
operator then creates or deletes exactly those pods.
"""

from __future__ import annotations

from typing import Any

from raykube.builders import labels, owners
from raykube.models.clusterspec import AutoscalerVersion
from raykube.models.raycluster import RayCluster

DEFAULT_RESOURCES = {
    "limits": {"cpu": "500m", "memory": "512Mi"},
    "requests": {"cpu": "500m", "memory": "512Mi"},
}
COMMAND = (
    "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME)"
    " --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
)


def autoscaler_v2(cluster: RayCluster) -> bool:
    """``autoscalerOptions.version: v2`` with the autoscaler on: the head's Ray
    container gets ``RAY_enable_autoscaler_v2=true``; the GCS records it, and the
    ``kuberay-autoscaler`` sidecar, reading that from the GCS, runs v2 (the
    sidecar itself is unchanged, as in KubeRay)."""
    opts = cluster.spec.autoscaler_options
    return bool(
        cluster.spec.enable_in_tree_autoscaling
        and opts is not None
        and opts.version == AutoscalerVersion.V2
    )


def autoscaler_container(cluster: RayCluster) -> dict[str, Any]:
    opts = cluster.spec.autoscaler_options
    head = cluster.spec.head_group_spec.ray_container()
    env: list[dict[str, Any]] = [
        {
            "name": "RAY_CLUSTER_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{labels.CLUSTER}']"}},
        },
        {
            "name": "RAY_CLUSTER_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        {"name": "RAY_HEAD_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KUBERAY_CRD_VER", "value": "v1"},
    ]
    container: dict[str, Any] = {
        "name": "autoscaler",
        "image": (opts.image if opts and opts.image else head.get("image")),
        "imagePullPolicy": str(opts.image_pull_policy)
        if opts and opts.image_pull_policy
        else "IfNotPresent",
        "command": list(opts.command) if opts and opts.command else ["/bin/bash", "-c", "--"],
        "args": list(opts.args) if opts and opts.args else [COMMAND],
        "env": env + [dict(e) for e in (opts.env or [] if opts else [])],
        "resources": dict(opts.resources) if opts and opts.resources else DEFAULT_RESOURCES,
    }
    if opts and opts.env_from:
        container["envFrom"] = [dict(e) for e in opts.env_from]
    if opts and opts.volume_mounts:
        container["volumeMounts"] = [dict(v) for v in opts.volume_mounts]
    if opts and opts.security_context is not None:
        container["securityContext"] = dict(opts.security_context)
    return container


#: What Ray's autoscaler does with the API: read pods, patch the RayCluster's
#: replicas and workersToDelete. Installed once as a ClusterRole (the chart's
#: ``<release>-ray-autoscaler``, rendered from this literal by ``raykube.rbac``)
#: that each autoscaling cluster's RoleBinding grants in its own namespace: the
#: operator then needs only ``bind`` on that one ClusterRole, neither Role
#: creation nor the autoscaler's rights of its own.
AUTOSCALER_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "patch"]},
]


def _meta(cluster: RayCluster, created_by: str) -> dict[str, Any]:
    return {
        "name": labels.autoscaler_account_name(cluster.metadata.name),
        "namespace": cluster.metadata.namespace,
        "labels": {labels.CLUSTER: cluster.metadata.name, labels.CREATED_BY: created_by},
        "ownerReferences": [owners.of_raycluster(cluster)],
    }


def head_service_account(cluster: RayCluster) -> str | None:
    """The head pod template's own ServiceAccount, if it names one."""
    name = cluster.spec.head_group_spec.pod_spec().get("serviceAccountName")
    return name if isinstance(name, str) and name else None


def autoscaler_rbac(
    cluster: RayCluster, created_by: str, cluster_role: str
) -> list[dict[str, Any]]:
    """A ServiceAccount (unless the head names its own) and a RoleBinding of the
    autoscaler ClusterRole to it, both named ``<cluster>-ray-autoscaler``: a name
    of their own, so no ServiceAccount a cluster happens to share a name with
    (``default``) is taken over."""
    meta = _meta(cluster, created_by)
    own = head_service_account(cluster)
    subject = own or meta["name"]
    account = [] if own else [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": subject, "namespace": cluster.metadata.namespace}
        ],
    }
    return [*account, binding]
