"""The head Ingress of a RayCluster with ``enableIngress`` (pure).

KubeRay's shape: one rule to the head Service's dashboard port, the
RayCluster's annotations copied so users can configure their Ingress
controller from the cluster, and the deprecated ``kubernetes.io/ingress.class``
annotation turned into ``spec.ingressClassName`` (never both: some
controllers refuse an Ingress carrying the two). KubeRay 1.7's
``ingressOptions`` choose the host, path, path type and TLS.
"""

from __future__ import annotations

from typing import Any

from raykube import ports
from raykube.builders import labels, owners
from raykube.builders.pods import BuildContext
from raykube.models.clusterspec import IngressOptions, IngressPathType
from raykube.models.raycluster import RayCluster

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
#: The path a cluster without ``ingressOptions`` gets (KubeRay before 1.7):
#: ingress-nginx's regex form, for a rewrite-target annotation to use.
DEFAULT_PATH_TYPE = IngressPathType.EXACT
OPTIONS_PATH = "/"
OPTIONS_PATH_TYPE = IngressPathType.PREFIX


def wants_ingress(cluster: RayCluster) -> bool:
    return bool(cluster.spec.head_group_spec.enable_ingress)


def _annotations(cluster: RayCluster) -> dict[str, str]:
    """The cluster's annotations, less the class (it becomes ``ingressClassName``),
    kubectl's copy of the manifest and raykube's bookkeeping about the cluster
    (it changes with every serve config a RayService submits)."""
    return {
        k: v
        for k, v in cluster.metadata.annotations.items()
        # kubectl's copy of the RayCluster manifest: on the Ingress it would
        # make ``kubectl apply`` of that Ingress diff against it.
        if k not in (INGRESS_CLASS_ANNOTATION, labels.LAST_APPLIED)
        and not k.startswith(labels.ANNOTATION_PREFIX)
    }


def _path(cluster: RayCluster, options: IngressOptions | None) -> tuple[str, str]:
    if options is None:
        return f"/{cluster.metadata.name}/(.*)", DEFAULT_PATH_TYPE.value
    path_type = options.path_type or OPTIONS_PATH_TYPE
    return options.path or OPTIONS_PATH, path_type.value


def build_head_ingress(cluster: RayCluster, ctx: BuildContext) -> dict[str, Any]:
    name = cluster.metadata.name
    head = cluster.spec.head_group_spec
    options = head.ingress_options
    path, path_type = _path(cluster, options)
    dashboard = ports.named_port(head.ray_container().get("ports") or [], "dashboard")
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {
                        "service": {
                            "name": labels.head_service_name(name),
                            "port": {"number": dashboard},
                        }
                    },
                }
            ]
        }
    }
    if options is not None and options.host:
        rule["host"] = options.host
    spec: dict[str, Any] = {"rules": [rule]}
    ingress_class = cluster.metadata.annotations.get(INGRESS_CLASS_ANNOTATION)
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    if options is not None and options.tls:
        spec["tls"] = [
            {
                **({"hosts": list(t.hosts)} if t.hosts else {}),
                **({"secretName": t.secret_name} if t.secret_name else {}),
            }
            for t in options.tls
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": labels.ingress_name(name),
            "namespace": cluster.metadata.namespace,
            "labels": {
                **labels.network_labels(name, ctx.created_by),
                labels.IDENTIFIER: f"{name}-head",
            },
            "annotations": _annotations(cluster),
            "ownerReferences": [owners.of_raycluster(cluster)],
        },
        "spec": spec,
    }
