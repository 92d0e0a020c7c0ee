"""``RayClusterSpec``: the desired state of a Ray cluster.

It is the ``spec`` of a RayCluster and the ``rayClusterConfig`` of a
RayService. Field names, JSON names and defaults follow KubeRay v1.7 so its
manifests and Ray's own autoscaler work unchanged.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from raykube.models import shapes
from raykube.models.base import (
    MAX_INT32,
    Count,
    Int32,
    KubeModel,
    OpenObject,
    Quantity,
    ServiceObject,
    StringMap,
    cel,
    schema_default,
)
from raykube.models.podtemplate import PodTemplate, TemplatedGroup

MAX_WORKER_GROUPS = 100
HostCount = Annotated[int, Field(ge=1, le=MAX_INT32, json_schema_extra={"format": "int32"})]
# A worker group's name is the value of the ray.io/group label on its pods.
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class ServiceType(StrEnum):
    """``SERVICE_TYPES``: no ExternalName (see there)."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class PullPolicy(StrEnum):
    ALWAYS = "Always"
    NEVER = "Never"
    IF_NOT_PRESENT = "IfNotPresent"


class UpscalingMode(StrEnum):
    DEFAULT = "Default"
    AGGRESSIVE = "Aggressive"
    CONSERVATIVE = "Conservative"


class AutoscalerVersion(StrEnum):
    V1 = "v1"
    V2 = "v2"


#: The head's env var that turns autoscaler v2 on (what version: v2 sets).
AUTOSCALER_V2_ENV = "RAY_enable_autoscaler_v2"
#: Backend rocksdb (KubeRay 1.7's names): Ray's env vars choosing the GCS store
#: and its directory, where the head mounts the store's volume, and the volume.
GCS_STORAGE_ENV, GCS_STORAGE_PATH_ENV = "RAY_gcs_storage", "RAY_gcs_storage_path"
GCS_STORAGE_MOUNT = "/data/gcs"
GCS_STORAGE_VOLUME = "gcs-storage"


class ManagedBy(StrEnum):
    KUBERAY = "ray.io/kuberay-operator"
    MULTIKUEUE = "kueue.x-k8s.io/multikueue"


class RayClusterUpgradeType(StrEnum):
    RECREATE = "Recreate"
    NONE = "None"


class AuthMode(StrEnum):
    DISABLED = "disabled"
    TOKEN = "token"


class GcsBackend(StrEnum):
    REDIS = "redis"
    ROCKSDB = "rocksdb"


MANAGED_BY_FIELD_RULES = [
    {
        "rule": "self == oldSelf",
        "message": "managedBy is immutable: the controller that owns an object cannot change",
    }
]


BACKEND_FIELD_RULES = [
    {
        "rule": "self == oldSelf",
        "message": "gcsFaultToleranceOptions.backend is immutable (its GCS state would be lost)",
    }
]


class ScaleStrategy(KubeModel):
    """Which worker pods to remove when a group shrinks."""

    workers_to_delete: list[str] = Field(
        default_factory=list,
        description=(
            "Names of worker pods to delete. Ray's autoscaler sets this together with a lower "
            "replicas; the operator deletes exactly these pods, then the autoscaler clears it."
        ),
    )


class RedisCredential(KubeModel):
    """A Redis username or password, given inline or taken from a Secret/ConfigMap."""

    value_from: OpenObject | None = Field(
        None, description="A Kubernetes EnvVarSource (for example a secretKeyRef)."
    )
    value: str | None = Field(None, description="The value itself (prefer valueFrom).")


class GcsStorageDeletionPolicy(StrEnum):
    DELETE_WITH_CLUSTER = "DeleteWithCluster"
    RETAIN = "Retain"


class GcsEmbeddedStorage(KubeModel):
    """The PersistentVolumeClaim holding the rocksdb GCS store, mounted on the head."""

    claim_name: str | None = Field(
        None, description="Your own PVC (default: <cluster>-gcs-pvc, created)."
    )
    size: Quantity | None = Field(None, description="Created PVC's request (default 1Gi).")
    storage_class_name: str | None = Field(None, description="Created PVC's StorageClass.")
    access_modes: list[str] | None = Field(
        None, description="Created PVC's access modes (default [ReadWriteOnce])."
    )
    sub_path: str | None = Field(None, description="Volume directory mounted at /data/gcs.")
    deletion_policy: GcsStorageDeletionPolicy | None = Field(
        None, description="Retain: the created PVC outlives the cluster."
    )

    @field_validator("size", mode="before")
    @classmethod
    def _size_is_quantity(cls, value: Any) -> Any:
        if value is not None:
            shapes.refuse(shapes.quantities_problem({"size": str(value)}))
        return value

    @model_validator(mode="after")
    def _claim_is_alone(self) -> GcsEmbeddedStorage:
        # KubeRay's rule, checked when the controller reads the spec (as KubeRay
        # does), not at admission: the RayService CRD has no room for more CEL.
        if self.claim_name and (self.size or self.storage_class_name or self.access_modes):
            shapes.refuse("claimName excludes size, storageClassName and accessModes")
        return self


class GcsFaultToleranceOptions(KubeModel):
    """GCS fault tolerance: Ray's cluster metadata kept outside the head pod."""

    backend: GcsBackend | None = Field(
        None,
        description=(
            "redis (default) or rocksdb (on a PVC of the head). Cannot be changed once set."
        ),
        json_schema_extra=cel(BACKEND_FIELD_RULES),
    )
    redis_address: str | None = Field(None, description="host:port of the external Redis.")
    redis_username: RedisCredential | None = Field(
        None,
        description="Redis ACL user name: the head's REDIS_USERNAME (Ray 2.41 or later).",
    )
    redis_password: RedisCredential | None = Field(
        None,
        description="Redis password: the head's REDIS_PASSWORD.",
    )
    external_storage_namespace: str | None = Field(
        None,
        description="Key prefix of this cluster's data in Redis (default: the RayCluster's UID).",
    )
    storage: GcsEmbeddedStorage | None = Field(None, description="Volume of backend rocksdb.")

    @model_validator(mode="after")
    def _backend_fields(self) -> GcsFaultToleranceOptions:
        # KubeRay's rules, checked when the controller reads the spec, as there.
        if self.backend != GcsBackend.ROCKSDB:
            if self.storage is not None:
                shapes.refuse("storage applies only to backend rocksdb")
            return self
        if (
            self.redis_address
            or self.redis_username
            or self.redis_password
            or self.external_storage_namespace
        ):
            shapes.refuse(
                "redisAddress, redisUsername, redisPassword and externalStorageNamespace "
                "cannot be set with backend rocksdb"
            )
        return self


class AutoscalerOptions(KubeModel):
    """Settings for the Ray autoscaler sidecar (used with enableInTreeAutoscaling)."""

    resources: OpenObject | None = Field(
        None,
        description=(
            "Kubernetes ResourceRequirements for the autoscaler container (default 500m CPU "
            "and 512Mi memory, requests and limits)."
        ),
    )
    image: str | None = Field(
        None, description="Autoscaler image; defaults to the Ray container's image."
    )
    image_pull_policy: PullPolicy | None = Field(
        None, description="Pull policy of the autoscaler image."
    )
    security_context: OpenObject | None = Field(
        None, description="Kubernetes SecurityContext for the autoscaler container."
    )
    idle_timeout_seconds: Count | None = Field(
        None,
        description=(
            "Seconds a worker may stay idle before the autoscaler removes it (Ray's default "
            "is 60). Read by Ray's autoscaler, not by the operator."
        ),
    )
    upscaling_mode: UpscalingMode | None = Field(
        None,
        description=(
            "Conservative limits pending workers to the cluster's size; Default and Aggressive "
            "scale up without a limit. Read by Ray's autoscaler."
        ),
    )
    version: AutoscalerVersion | None = Field(
        None,
        description=(
            "v1 (default) or v2: RAY_enable_autoscaler_v2=true on the head, restartPolicy "
            "Never on every pod."
        ),
    )
    env: list[OpenObject] | None = Field(
        None, description="Extra environment variables (Kubernetes EnvVar) for the autoscaler."
    )
    env_from: list[OpenObject] | None = Field(
        None, description="Kubernetes EnvFromSource entries for the autoscaler container."
    )
    volume_mounts: list[OpenObject] | None = Field(
        None, description="Kubernetes VolumeMounts for the autoscaler container (TLS, ...)."
    )
    command: list[str] | None = Field(None, description="Replaces the autoscaler's command.")
    args: list[str] | None = Field(None, description="Replaces the autoscaler's arguments.")


class RayClusterUpgradeStrategy(KubeModel):
    """What happens to running pods when a RayCluster's pod templates change."""

    type: RayClusterUpgradeType | None = Field(
        None,
        description=(
            "None (default): running pods keep their configuration. Recreate: when the spec "
            "shaping the pods changes (not worker replicas and bounds, scaleStrategy, suspend, "
            "tolerations, schedulingGates), all pods are deleted and created anew. Refused in "
            "a RayService."
        ),
    )


class AuthOptions(KubeModel):
    """Ray's token authentication."""

    mode: AuthMode | None = Field(
        None,
        description=(
            "token (default) or disabled. token: the Ray containers and the autoscaler get "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from the Secret's auth_token key, unless "
            "they set them. Ray >= 2.52."
        ),
    )
    secret_name: str | None = Field(
        None,
        description=(
            "Secret whose auth_token key holds the token. Unset: the operator creates one "
            "named after the cluster, owned by it, with a random token."
        ),
    )
    enable_k8s_token_auth: bool | None = Field(
        None,
        alias="enableK8sTokenAuth",
        description="Token checks by the Kubernetes API server; true is refused (not supported).",
    )


class TLSOptions(KubeModel):
    """Mutual TLS between Ray nodes."""

    enabled: bool | None = Field(
        None, description="Mutual TLS; raykube refuses true (not supported)."
    )


class IngressPathType(StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"
    IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"


class IngressTLS(KubeModel):
    """One TLS entry of the head Ingress (networking.k8s.io/v1 IngressTLS)."""

    hosts: list[str] | None = Field(None, description="Hosts the certificate covers.")
    secret_name: str | None = Field(
        None, description="Secret of the cluster's namespace holding the certificate and key."
    )


class IngressOptions(KubeModel):
    """How the head Ingress (enableIngress) routes: host, path and TLS."""

    host: str | None = Field(
        None, description="Host of the Ingress rule; unset: the rule matches any host."
    )
    path: str | None = Field(
        None,
        description=(
            'Path routed to the head\'s dashboard port; unset: "/". Without ingressOptions the '
            "path is KubeRay's /<cluster>/(.*) (pathType Exact)."
        ),
    )
    path_type: IngressPathType | None = Field(
        None, description="How path is matched; unset: Prefix."
    )
    tls: list[IngressTLS] | None = Field(
        None, description="TLS entries copied into the Ingress's spec.tls."
    )


class NetworkPolicyMode(StrEnum):
    DENY_ALL = "DenyAll"
    DENY_ALL_INGRESS = "DenyAllIngress"
    DENY_ALL_EGRESS = "DenyAllEgress"


#: A group name becomes part of a NetworkPolicy's name (a DNS-1123 label).
DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class NetworkPolicyRules(KubeModel):
    """Rules appended to a generated NetworkPolicy's own."""

    ingress_rules: list[OpenObject] | None = Field(
        None,
        description=(
            "NetworkPolicyIngressRules appended after the rule admitting the cluster's own "
            "pods; only with a mode that restricts ingress (DenyAll, DenyAllIngress)."
        ),
    )
    egress_rules: list[OpenObject] | None = Field(
        None,
        description=(
            "NetworkPolicyEgressRules appended after the rule allowing traffic to the "
            "cluster's own pods; only with a mode that restricts egress (DenyAll, "
            "DenyAllEgress). DNS is not allowed by default: add it here."
        ),
    )


class WorkerGroupNetworkPolicyRules(NetworkPolicyRules):
    """Rules for one worker group's NetworkPolicy, replacing ``worker``'s."""

    group_name: str = Field(description="A groupName of workerGroupSpecs.")


def _rules_match_mode(where: str) -> list[dict[str, str]]:
    """KubeRay's consistency rules: rules only for the direction the mode restricts."""
    return [
        {
            "rule": (
                f"!has(self.{where}) || !has(self.{where}.ingressRules) || "
                f"size(self.{where}.ingressRules) == 0 || "
                "!has(self.mode) || self.mode != 'DenyAllEgress'"
            ),
            "message": (
                f"networkPolicy.{where}.ingressRules cannot be set when mode is DenyAllEgress "
                "(ingress is not restricted)"
            ),
        },
        {
            "rule": (
                f"!has(self.{where}) || !has(self.{where}.egressRules) || "
                f"size(self.{where}.egressRules) == 0 || "
                "!has(self.mode) || self.mode != 'DenyAllIngress'"
            ),
            "message": (
                f"networkPolicy.{where}.egressRules cannot be set when mode is DenyAllIngress "
                "(egress is not restricted)"
            ),
        },
    ]


class NetworkPolicyConfig(KubeModel):
    """NetworkPolicies for the cluster's pods: one for the head, one per worker group."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            [
                *_rules_match_mode("head"),
                *_rules_match_mode("worker"),
                {
                    "rule": (
                        "!has(self.workerGroups) || !has(self.mode) || "
                        "self.mode != 'DenyAllEgress' || self.workerGroups.all(w, "
                        "!has(w.ingressRules) || size(w.ingressRules) == 0)"
                    ),
                    "message": (
                        "networkPolicy.workerGroups[].ingressRules cannot be set when mode is "
                        "DenyAllEgress (ingress is not restricted)"
                    ),
                },
                {
                    "rule": (
                        "!has(self.workerGroups) || !has(self.mode) || "
                        "self.mode != 'DenyAllIngress' || self.workerGroups.all(w, "
                        "!has(w.egressRules) || size(w.egressRules) == 0)"
                    ),
                    "message": (
                        "networkPolicy.workerGroups[].egressRules cannot be set when mode is "
                        "DenyAllIngress (egress is not restricted)"
                    ),
                },
            ]
        )
    )

    mode: NetworkPolicyMode | None = Field(
        None,
        description=(
            "Which direction the policies restrict: DenyAll (default) both, DenyAllIngress "
            "ingress, DenyAllEgress egress. Every mode lets the cluster's pods reach each other."
        ),
        json_schema_extra=schema_default(NetworkPolicyMode.DENY_ALL.value),
    )
    head: NetworkPolicyRules | None = Field(
        None, description="Rules added to the head pod's policy (<cluster>-head)."
    )
    worker: NetworkPolicyRules | None = Field(
        None,
        description=(
            "Rules added to each worker group's policy (<cluster>-workers-<group>), unless "
            "workerGroups has an entry for the group."
        ),
    )
    worker_groups: list[WorkerGroupNetworkPolicyRules] | None = Field(
        None,
        max_length=MAX_WORKER_GROUPS,
        description="Rules of one worker group's policy, replacing worker's for that group.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["groupName"],
        },
    )


class HeadGroupSpec(TemplatedGroup):
    """The Ray head pod: one pod running the GCS, dashboard and Serve controller."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            [
                {
                    "rule": (
                        "!has(self.headService) || !has(self.headService.metadata) || "
                        "!has(self.headService.metadata.name)"
                    ),
                    "message": (
                        "headService.metadata.name is not supported by raykube: the head "
                        "Service is always <cluster>-head-svc, which workers and the operator "
                        "address"
                    ),
                    "fieldPath": ".headService.metadata.name",
                    "reason": "FieldValueForbidden",
                }
            ]
        )
    )

    template: PodTemplate = Field(
        description="Pod template of the head pod; containers[0] runs `ray start --head`."
    )
    ray_start_params: StringMap = Field(
        default_factory=dict,
        description=(
            'Extra `ray start` flags, without the leading dashes ("num-cpus": "0"). Values '
            'are strings; "true" renders a bare flag.'
        ),
    )
    service_type: ServiceType | None = Field(
        None,
        description="Type of the head Service (default ClusterIP; ExternalName is refused).",
    )
    head_service: ServiceObject | None = Field(
        None,
        description=(
            "A Kubernetes Service merged into the generated head Service (spec.type "
            "ExternalName is refused)."
        ),
    )
    enable_ingress: bool | None = Field(
        None,
        description=(
            "true: a networking.k8s.io/v1 Ingress <cluster>-head-ingress, owned by the "
            "cluster, routes to the head Service's dashboard port. It carries the "
            "RayCluster's annotations, and its ingressClassName is the RayCluster's "
            "kubernetes.io/ingress.class annotation. Turned off: the Ingress is deleted."
        ),
    )
    ingress_options: IngressOptions | None = Field(
        None, description="Host, path, pathType and TLS of the head Ingress (enableIngress)."
    )
    resources: StringMap | None = Field(
        None,
        description=(
            'Ray logical resources of the head ("CPU": "0", "GPU": "1", custom names); '
            "overrides rayStartParams, leaves the pod's own resources alone."
        ),
    )
    labels: StringMap | None = Field(
        None, description="Ray node labels of the head; also added to the pod's labels."
    )

    @field_validator("head_service")
    @classmethod
    def _head_service_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        shapes.refuse(shapes.service_problem(value) if value is not None else None)
        return value

    @field_validator("resources")
    @classmethod
    def _resources_are_quantities(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        shapes.refuse(shapes.quantities_problem(value) if value is not None else None)
        return value


class WorkerGroupSpec(TemplatedGroup):
    """A group of identical Ray worker pods."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            [
                {
                    "rule": (
                        "!has(self.minReplicas) || !has(self.maxReplicas) || "
                        "self.minReplicas <= self.maxReplicas"
                    ),
                    "message": "minReplicas must be less than or equal to maxReplicas",
                    "fieldPath": ".minReplicas",
                    "reason": "FieldValueInvalid",
                }
            ]
        )
    )

    group_name: str = Field(
        description=(
            "Name of the group, unique in the cluster. It is the value of the pods' ray.io/group "
            "label and part of their names."
        ),
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE,
    )
    replicas: Count = Field(
        0,
        description=(
            "Desired number of replicas. Ray's autoscaler changes it; the operator keeps it "
            "between minReplicas and maxReplicas."
        ),
        json_schema_extra=schema_default(0),
    )
    min_replicas: Count = Field(
        0,
        description="Fewest replicas the autoscaler may leave.",
        json_schema_extra=schema_default(0),
    )
    max_replicas: Count = Field(
        MAX_INT32,
        description="Most replicas the autoscaler may create (default 2147483647).",
        json_schema_extra=schema_default(MAX_INT32),
    )
    num_of_hosts: HostCount = Field(
        1,
        description=(
            "Pods per replica (for multi-host accelerators such as TPU slices). Fixed for the "
            "life of a RayCluster's group: to change it, use a new group name."
        ),
        json_schema_extra=schema_default(1),
    )
    ray_start_params: StringMap = Field(
        default_factory=dict,
        description=(
            'Extra `ray start` flags, without the leading dashes. Values are strings; "true" '
            "renders a bare flag."
        ),
    )
    template: PodTemplate = Field(
        description="Pod template of the workers; containers[0] runs `ray start --address=...`."
    )
    scale_strategy: ScaleStrategy = Field(
        default_factory=ScaleStrategy,
        description=(
            "Pods to remove on scale-down. Always present (default {}) because Ray's autoscaler "
            "replaces it with a JSON Patch."
        ),
        json_schema_extra=schema_default({}),
    )
    suspend: bool | None = Field(
        None,
        description=(
            "Delete all pods of this group and create none until set back to false. Not "
            "allowed together with enableInTreeAutoscaling."
        ),
    )
    idle_timeout_seconds: Count | None = Field(
        None,
        description=(
            "Seconds an idle worker of this group may stay before autoscaler v2 removes it; "
            "overrides autoscalerOptions.idleTimeoutSeconds."
        ),
    )
    priority: Int32 | None = Field(
        None,
        description="Groups with higher priority are preferred for scale-up (autoscaler v2).",
    )
    resources: StringMap | None = Field(
        None,
        description=(
            "Ray logical resources of each worker; overrides rayStartParams, leaves the pod's "
            "own resources alone."
        ),
    )
    labels: StringMap | None = Field(
        None, description="Ray node labels of each worker; also added to the pods' labels."
    )

    @field_validator("resources")
    @classmethod
    def _resources_are_quantities(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        shapes.refuse(shapes.quantities_problem(value) if value is not None else None)
        return value


def _autoscaler_version_problem(opts: AutoscalerOptions, groups: list[Any]) -> str | None:
    """KubeRay's checks: the version is said once (not also by the head's env), and
    v2's pods are replaced when Ray exits, never restarted in place."""
    if opts.version is None:
        return None
    head = groups[0]
    env = head.ray_container().get("env") if isinstance(head, TemplatedGroup) else None
    if any(isinstance(e, dict) and e.get("name") == AUTOSCALER_V2_ENV for e in env or []):
        return (
            f"version and the head container's env var {AUTOSCALER_V2_ENV} are both set; "
            "set only version"
        )
    if opts.version != AutoscalerVersion.V2:
        return None
    for group in groups:
        if not isinstance(group, TemplatedGroup):
            continue
        policy = group.pod_spec().get("restartPolicy")
        if policy not in (None, "", "Never"):
            where = getattr(group, "group_name", "the head")
            return (
                f"version v2 needs restartPolicy Never (or unset) in every pod template; "
                f"{where}'s is {policy}"
            )
    return None


def _gcs_storage_problem(head: Any) -> str | None:
    """KubeRay's check: with rocksdb the operator alone sets the store's env vars,
    volume and mount on the head; a template doing it too would fight them."""
    if not isinstance(head, TemplatedGroup):
        return None
    container = head.ray_container()
    for env in container.get("env") or []:
        if isinstance(env, dict) and env.get("name") in (GCS_STORAGE_ENV, GCS_STORAGE_PATH_ENV):
            return f"the head container sets {env['name']}, which backend rocksdb sets"
    for mount in container.get("volumeMounts") or []:
        if isinstance(mount, dict) and (
            mount.get("name") == GCS_STORAGE_VOLUME or mount.get("mountPath") == GCS_STORAGE_MOUNT
        ):
            return (
                f"the head container mounts a volume named {GCS_STORAGE_VOLUME} or at "
                f"{GCS_STORAGE_MOUNT}, which backend rocksdb uses"
            )
    for volume in head.pod_spec().get("volumes") or []:
        if isinstance(volume, dict) and volume.get("name") == GCS_STORAGE_VOLUME:
            return (
                f"the head pod has a volume named {GCS_STORAGE_VOLUME}, which backend rocksdb uses"
            )
    return None


def _unsupported(rule: str, field: str, why: str) -> dict[str, str]:
    """A CEL rule refusing a KubeRay field raykube does not implement: accepted
    and ignored it would promise what the cluster does not do."""
    return {
        "rule": rule,
        "message": f"{field} is not supported by raykube: {why}",
        "fieldPath": f".{field}",
        "reason": "FieldValueForbidden",
    }


#: KubeRay 1.7 fields raykube refuses at admission (docs/api.md lists them).
UNSUPPORTED_FIELD_RULES = [
    _unsupported(
        "!has(self.authOptions) || !has(self.authOptions.enableK8sTokenAuth) || "
        "!self.authOptions.enableK8sTokenAuth",
        "authOptions.enableK8sTokenAuth",
        "nothing would check tokens with the Kubernetes API server; use mode: token",
    ),
    _unsupported(
        "!has(self.tlsOptions) || !has(self.tlsOptions.enabled) || !self.tlsOptions.enabled",
        "tlsOptions.enabled",
        "Ray nodes would talk without TLS",
    ),
    _unsupported(
        "!has(self.historyServerOptions)",
        "historyServerOptions",
        "no history server collector would run",
    ),
]


#: KubeRay's checks of networkPolicy against the worker groups it names.
NETWORK_POLICY_RULES = [
    {
        "rule": (
            "!has(self.networkPolicy) || !has(self.workerGroupSpecs) || "
            f"self.workerGroupSpecs.all(g, g.groupName.matches('{DNS_LABEL}'))"
        ),
        "message": (
            "workerGroupSpecs[].groupName must be a DNS-1123 label (lower case letters, digits, "
            "'-') when networkPolicy is set: it is part of the group's NetworkPolicy name"
        ),
        "fieldPath": ".workerGroupSpecs",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": (
            "!has(self.networkPolicy) || !has(self.networkPolicy.workerGroups) || "
            "self.networkPolicy.workerGroups.all(w, has(self.workerGroupSpecs) && "
            "self.workerGroupSpecs.exists(g, g.groupName == w.groupName))"
        ),
        "message": "networkPolicy.workerGroups[].groupName must name a group of workerGroupSpecs",
        "fieldPath": ".networkPolicy.workerGroups",
        "reason": "FieldValueInvalid",
    },
]


#: The first Ray release with token authentication: older Rays ignore
#: RAY_AUTH_MODE and would run without any.
TOKEN_AUTH_MIN_RAY = (2, 52, 0)
_RAY_VERSION = re.compile(r"^v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?")


def _token_version_problem(ray_version: str | None) -> str | None:
    wanted = ".".join(map(str, TOKEN_AUTH_MIN_RAY))
    if not ray_version:
        return f"authOptions token mode needs rayVersion (Ray {wanted} or later) to be set"
    found = _RAY_VERSION.match(ray_version)
    if found is None:
        return f"authOptions token mode needs a rayVersion like {wanted}, got {ray_version!r}"
    major, minor, patch = (int(g or 0) for g in found.groups())
    if (major, minor, patch) < TOKEN_AUTH_MIN_RAY:
        return (
            f"authOptions token mode needs Ray {wanted} or later (older Rays run without "
            f"authentication), got rayVersion {ray_version}"
        )
    return None


class RayClusterSpec(KubeModel):
    """Desired state of a Ray cluster: one head pod and groups of worker pods."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            [
                *UNSUPPORTED_FIELD_RULES,
                {
                    "rule": (
                        "!has(self.enableInTreeAutoscaling) || !self.enableInTreeAutoscaling || "
                        "!has(self.workerGroupSpecs) || "
                        "self.workerGroupSpecs.all(g, !has(g.suspend) || !g.suspend)"
                    ),
                    "message": (
                        "workerGroupSpecs[].suspend cannot be true while enableInTreeAutoscaling "
                        "is true: the autoscaler would keep asking for the suspended pods"
                    ),
                    "fieldPath": ".workerGroupSpecs",
                    "reason": "FieldValueForbidden",
                },
                *NETWORK_POLICY_RULES,
            ]
        )
    )

    ray_version: str | None = Field(
        None,
        description=(
            "Ray version of the images (for example 2.52.0); selects probes and autoscaler "
            "defaults. Should match the image."
        ),
    )
    head_group_spec: HeadGroupSpec = Field(description="The head pod.")
    worker_group_specs: list[WorkerGroupSpec] = Field(
        default_factory=list,
        max_length=MAX_WORKER_GROUPS,
        description="Groups of worker pods; groupName is unique within the list.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["groupName"],
        },
    )
    enable_in_tree_autoscaling: bool | None = Field(
        None,
        description=(
            "Run Ray's autoscaler as a sidecar of the head pod; it scales workerGroupSpecs "
            "through replicas and scaleStrategy."
        ),
    )
    autoscaler_options: AutoscalerOptions | None = Field(
        None, description="Settings for the autoscaler sidecar."
    )

    @field_validator("autoscaler_options")
    @classmethod
    def _autoscaler_version_honoured(
        cls, value: AutoscalerOptions | None, info: ValidationInfo
    ) -> AutoscalerOptions | None:
        if value is not None and info.data.get("enable_in_tree_autoscaling"):
            workers = info.data.get("worker_group_specs") or []
            groups = [info.data.get("head_group_spec"), *workers]
            shapes.refuse(_autoscaler_version_problem(value, groups))
        return value

    head_service_annotations: StringMap | None = Field(
        None, description="Annotations added to the head Service."
    )
    suspend: bool | None = Field(
        None, description="Delete all pods of the cluster and create none while true."
    )
    gcs_fault_tolerance_options: GcsFaultToleranceOptions | None = Field(
        None,
        description=(
            "GCS state kept in Redis or in rocksdb on a head PVC, so it survives head restarts."
        ),
    )

    @field_validator("gcs_fault_tolerance_options")
    @classmethod
    def _gcs_storage_is_ours(
        cls, value: GcsFaultToleranceOptions | None, info: ValidationInfo
    ) -> GcsFaultToleranceOptions | None:
        if value is not None and value.backend == GcsBackend.ROCKSDB:
            shapes.refuse(_gcs_storage_problem(info.data.get("head_group_spec")))
        return value

    upgrade_strategy: RayClusterUpgradeStrategy | None = Field(
        None, description="What happens to running pods when the pods' spec changes."
    )
    managed_by: ManagedBy | None = Field(
        None,
        description=(
            "Controller in charge: unset or ray.io/kuberay-operator means this operator; "
            "kueue.x-k8s.io/multikueue hands the object to Kueue. Immutable."
        ),
        json_schema_extra=cel(MANAGED_BY_FIELD_RULES),
    )
    auth_options: AuthOptions | None = Field(
        None,
        description=(
            "Ray's token authentication; a RayService's controller sends the token to the "
            "dashboard. Token mode needs rayVersion 2.52.0 or later."
        ),
    )

    @field_validator("auth_options")
    @classmethod
    def _token_mode_needs_ray_2_52(
        cls, value: AuthOptions | None, info: ValidationInfo
    ) -> AuthOptions | None:
        if value is not None and value.mode != AuthMode.DISABLED:
            shapes.refuse(_token_version_problem(info.data.get("ray_version")))
        return value

    tls_options: TLSOptions | None = Field(
        None, description="Mutual TLS between Ray nodes; enabled: true is refused (not supported)."
    )
    network_policy: NetworkPolicyConfig | None = Field(
        None,
        description=(
            "NetworkPolicies owned by the cluster: <cluster>-head for the head pod and "
            "<cluster>-workers-<group> per worker group, each admitting (and allowing egress "
            "to) the cluster's own pods plus the rules given here. Removed: they are deleted. "
            "Enforced only by a network plugin that implements NetworkPolicy."
        ),
    )
    history_server_options: OpenObject | None = Field(
        None, description="KubeRay's history server collector; refused by raykube (not supported)."
    )
