"""Names and labels, written once: every builder and decision uses these."""

from __future__ import annotations

from typing import Literal

from raykube.models.rayservice import RayService

NodeType = Literal["head", "worker"]

IS_RAY_NODE = "ray.io/is-ray-node"
CLUSTER = "ray.io/cluster"
NODE_TYPE = "ray.io/node-type"
GROUP = "ray.io/group"
IDENTIFIER = "ray.io/identifier"
SERVE = "ray.io/serve"
#: On a serving pod, set by the operator during an incremental upgrade: the
#: name of the RayService whose serve Service selects it (both clusters' pods).
SERVE_TRAFFIC = "raykube.ray.io/serve-traffic"
APP_NAME = "app.kubernetes.io/name"
CREATED_BY = "app.kubernetes.io/created-by"
ORIGINATED_FROM_CRD = "ray.io/originated-from-crd"
ORIGINATED_FROM_CR = "ray.io/originated-from-cr-name"
HEAD_GROUP = "headgroup"
#: On every worker pod (KubeRay's, feature gate RayMultiHostIndexing, on by
#: default): the replica's index in its group, the lowest one free when created.
REPLICA_INDEX = "ray.io/worker-group-replica-index"
#: On the pods of a multi-host replica (``numOfHosts`` > 1), a slice: the name
#: all its hosts share, and each host's index within it (0 .. numOfHosts-1).
REPLICA_NAME = "ray.io/worker-group-replica-name"
HOST_INDEX = "ray.io/replica-host-index"
#: On the headless Service of a cluster with multi-host groups (KubeRay's).
HEADLESS_SERVICE = "ray.io/headless-worker-svc"


def head_service_name(cluster: str) -> str:
    return f"{cluster}-head-svc"


def head_pod_prefix(cluster: str) -> str:
    return f"{cluster}-head-"


def worker_pod_prefix(cluster: str, group: str) -> str:
    # Group names need only be label values; pod names must be DNS names.
    return f"{cluster}-{group.lower().replace('_', '-').replace('.', '-')}-worker-"


def headless_service_name(cluster: str) -> str:
    """The Service through which the hosts of a slice find each other."""
    return f"{cluster}-headless"


def replica_name(group: str, suffix: str) -> str:
    """A slice's name: its group's (cut so the label value stays within 63) and
    a random suffix, unique across clusters as KubeRay's is."""
    return f"{group[:57]}-{suffix}"


def replica_labels(index: int, name: str | None = None, host: int = 0) -> dict[str, str]:
    """A worker's place in its group: the replica index, and for a host of a
    slice the slice's name and the host's index."""
    out = {REPLICA_INDEX: str(index)}
    if name is not None:
        out[REPLICA_NAME], out[HOST_INDEX] = name, str(host)
    return out


def autoscaler_account_name(cluster: str) -> str:
    """The autoscaler's ServiceAccount and RoleBinding (not the cluster's bare
    name, which may be a ServiceAccount of the namespace's own: ``default``)."""
    return f"{cluster}-ray-autoscaler"


#: The key of Ray's token in a token Secret (generated or named by the user).
AUTH_TOKEN_KEY = "auth_token"
#: KubeRay's cap on a name it derives from the cluster's (``utils.CheckName``).
_DERIVED_NAME_MAX = 50


def _derived_name(name: str) -> str:
    """A name KubeRay derives from the cluster's (``utils.CheckName``): cut to
    its last 50 characters, and one that does not start with a letter gets an
    ``r`` in place of its first character."""
    name = name[-_DERIVED_NAME_MAX:]
    return name if name[:1].isalpha() else "r" + name[1:]


def auth_secret_name(cluster: str) -> str:
    """The token Secret generated for a cluster in token mode (KubeRay's name)."""
    return _derived_name(cluster)


def ingress_name(cluster: str) -> str:
    """The head Ingress (``enableIngress``): KubeRay's ``<cluster>-head-ingress``,
    derived like its other names (so a long cluster name loses its start)."""
    return _derived_name(f"{cluster}-head-ingress")


def head_network_policy_name(cluster: str) -> str:
    return f"{cluster}-head"


def worker_network_policy_name(cluster: str, group: str) -> str:
    """One NetworkPolicy per worker group (its name is a DNS label, checked at admission)."""
    return f"{cluster}-workers-{group}"


def network_labels(cluster: str, created_by: str) -> dict[str, str]:
    """Labels of the cluster's NetworkPolicies (KubeRay's); its Ingress adds the
    head's identifier."""
    return {CLUSTER: cluster, APP_NAME: "kuberay", CREATED_BY: created_by}


def redis_cleanup_job_name(cluster: str) -> str:
    """``<cluster>-redis-cleanup``, its front cut to keep 63 characters and a
    leading ``-`` then replaced by ``r``, as KubeRay names it."""
    name = f"{cluster}-redis-cleanup"[-63:]
    return name if name[0].isalnum() else "r" + name[1:]


def gcs_storage_claim_name(cluster: str) -> str:
    """``<cluster>-gcs-pvc``: the PVC the operator creates for backend rocksdb
    (KubeRay 1.7's name; PVC names may be 253 characters, so never cut)."""
    return f"{cluster}-gcs-pvc"


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


def head_selector_labels(cluster: str) -> dict[str, str]:
    return {CLUSTER: cluster, NODE_TYPE: "head"}


def head_service_selector(cluster: str) -> dict[str, str]:
    """The RayCluster's head Service selects what KubeRay's does, except
    ``app.kubernetes.io/created-by``: a head pod KubeRay created before the
    switch to raykube (``kuberay-operator``) must stay selected."""
    return {**head_selector_labels(cluster), IDENTIFIER: f"{cluster}-head", APP_NAME: "kuberay"}


def serve_selector_labels(cluster: str) -> dict[str, str]:
    return {CLUSTER: cluster, SERVE: "true"}


def shared_serve_selector(service: str) -> dict[str, str]:
    """The serve Service's selector while traffic is split between two clusters."""
    return {SERVE_TRAFFIC: service, SERVE: "true"}


# --- RayService ---------------------------------------------------------------

RAYSERVICE_KIND = "RayService"

#: On a RayCluster and its head pod (KubeRay's): GCS fault tolerance is on.
FT_ENABLED = "ray.io/ft-enabled"
#: On a RayCluster (optional) and its head pod (KubeRay's): the prefix of the
#: cluster's keys in Redis (Ray's ``external_storage_namespace``).
EXTERNAL_STORAGE_NAMESPACE = "ray.io/external-storage-namespace"
#: On a fault-tolerant RayCluster (KubeRay's): its deletion waits until the
#: Redis cleanup Job has deleted the cluster's keys (or failed, or timed out).
REDIS_CLEANUP_FINALIZER = "ray.io/gcs-ft-redis-cleanup-finalizer"
#: On a RayCluster (KubeRay's): seconds after its deletion when the finalizer
#: is removed even if the Redis cleanup has not finished (default 300).
GCS_FT_DELETION_TIMEOUT = "ray.io/gcs-ft-deletion-timeout"
#: ``ray.io/node-type`` of the Redis cleanup Job and its pod (KubeRay's).
REDIS_CLEANUP_NODE = "redis-cleanup"
#: On a RayCluster or a pod template (KubeRay's): "true" runs the Ray
#: container's command as written, without the generated ``ray start``.
OVERWRITE_CONTAINER_CMD = "ray.io/overwrite-container-cmd"
#: kubectl's copy of the whole manifest on every object ``kubectl apply`` made:
#: copied to no child, and left out of the watch caches (as large as a spec).
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: On a RayService (KubeRay's): how long the first cluster may take to serve.
INITIALIZING_TIMEOUT = "ray.io/initializing-timeout"

#: Our own bookkeeping on objects a RayService owns. Kept on the objects, not
#: in memory, so an operator restart (or a second replica taking over) picks
#: up exactly where the last one stopped.
ANNOTATION_PREFIX = "raykube.ray.io/"
#: On a RayCluster: hash of the rayClusterConfig it was built from.
CLUSTER_CONFIG_HASH = ANNOTATION_PREFIX + "cluster-config-hash"
#: On a RayCluster: worker group sizes last copied from the RayService.
APPLIED_SCALING = ANNOTATION_PREFIX + "applied-scaling"
#: On a RayCluster: hash of the serve config last submitted, and when.
SERVE_CONFIG_HASH = ANNOTATION_PREFIX + "serve-config-hash"
SERVE_CONFIG_SUBMITTED_AT = ANNOTATION_PREFIX + "serve-config-submitted-at"
#: On a RayCluster: hash of a serve config whose applications all ran here.
SERVE_CONFIG_HEALTHY_HASH = ANNOTATION_PREFIX + "serve-config-healthy-hash"
#: On a RayCluster rolled back to the last good serve config: the hash of the
#: config it was rolled back from (never submitted there again), and why.
SERVE_CONFIG_ROLLED_BACK = ANNOTATION_PREFIX + "serve-config-rolled-back"
SERVE_CONFIG_ROLLBACK_CAUSE = ANNOTATION_PREFIX + "serve-config-rollback-cause"
#: On a RayService: "false" turns the automatic rollback of failing in-place
#: serve config updates off; the window a failure is given first (a duration).
AUTO_ROLLBACK = ANNOTATION_PREFIX + "auto-rollback"
AUTO_ROLLBACK_AFTER = ANNOTATION_PREFIX + "auto-rollback-after"
#: On a RayService: "true" keeps a pending cluster that missed the upgrade
#: deadline for inspection, instead of deleting it after the deletion delay.
KEEP_TIMED_OUT_CLUSTER = ANNOTATION_PREFIX + "keep-timed-out-cluster"
#: On a RayCluster, during NewClusterWithIncrementalUpgrade: the Serve
#: target_capacity its head accepted, the percent of traffic meant for it, and
#: when that percent last changed.
TARGET_CAPACITY = ANNOTATION_PREFIX + "target-capacity"
TRAFFIC_PERCENT = ANNOTATION_PREFIX + "traffic-percent"
TRAFFIC_MIGRATED_AT = ANNOTATION_PREFIX + "traffic-migrated-at"
#: On a RayCluster: since when its dashboard or applications are unhealthy.
SERVE_HEALTH = ANNOTATION_PREFIX + "serve-health"
#: On a RayCluster that no longer serves: when it is deleted.
DELETE_AFTER = ANNOTATION_PREFIX + "delete-after"
#: On a RayService, written by versions before the Secret
#: (``last_good_serve_config_name``): read once, moved there, and removed.
LAST_GOOD_SERVE_CONFIG = ANNOTATION_PREFIX + "last-good-serve-config"
#: The key of the last good serveConfigV2 in its Secret.
LAST_GOOD_SERVE_CONFIG_KEY = "serveConfigV2"
#: On a RayService: replacements of unhealthy clusters, for back-off.
REPLACEMENTS = ANNOTATION_PREFIX + "unhealthy-replacements"
#: On a Secret that ``authOptions.secretName`` names: the owner's consent
#: ("true") that the operator reads its ``auth_token`` and sends it to the
#: cluster's head. Without it any RayService author could have the operator
#: read any Secret of the namespace and hand its token to a head they control.
AUTH_SECRET_OPT_IN = ANNOTATION_PREFIX + "auth-token"
#: On a Service a RayService owns: hash of what was applied.
SPEC_HASH = ANNOTATION_PREFIX + "spec-hash"
#: On every Ray pod: the digest of the cluster's pod-shaping spec it was built
#: from (``pods.pod_template_hash``); ``upgradeStrategy: Recreate`` compares it.
POD_TEMPLATE_HASH = ANNOTATION_PREFIX + "pod-template-hash"
#: On a RayCluster, honoured only with --dashboard-url-annotations (tests,
#: debugging from outside the cluster): where its dashboard and Serve proxy are.
DASHBOARD_URL = ANNOTATION_PREFIX + "dashboard-url"
SERVE_URL = ANNOTATION_PREFIX + "serve-url"


def rayservice_cluster_name(service: str, suffix: str) -> str:
    return f"{service}-{suffix}"


def rayservice_head_service_name(service: str) -> str:
    return f"{service}-head-svc"


def last_good_serve_config_name(service: str) -> str:
    """The Secret holding a RayService's last serveConfigV2 whose applications all
    ran (a Secret: serve configs may carry credentials in their URIs)."""
    return f"{service}-last-good-serve-config"


def rayservice_serve_service_name(service: str) -> str:
    return f"{service}-serve-svc"


def cluster_serve_service_name(cluster: str) -> str:
    """One cluster's serve Service, an HTTPRoute's backend during an incremental
    upgrade with a Gateway (KubeRay's ``<cluster>-serve-svc``)."""
    return f"{cluster}-serve-svc"


def rayservice_gateway_name(service: str) -> str:
    return f"{service}-gateway"


def rayservice_httproute_name(service: str) -> str:
    return f"{service}-httproute"


def serve_service_name(rs: RayService) -> str:
    """The serve Service of a RayService: ``serveService.metadata.name`` or ``<rs>-serve-svc``."""
    override = (rs.spec.serve_service or {}).get("metadata") or {}
    name = override.get("name")
    return (
        name if isinstance(name, str) and name else rayservice_serve_service_name(rs.metadata.name)
    )


def rayservice_labels(service: str) -> dict[str, str]:
    """Labels on every object a RayService owns (how its clusters are indexed)."""
    return {ORIGINATED_FROM_CRD: RAYSERVICE_KIND, ORIGINATED_FROM_CR: service}
