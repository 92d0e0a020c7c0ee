"""``RayClusterSpec``: the desired state of a Ray cluster.

It is the ``spec`` of a RayCluster and the ``rayClusterConfig`` of a
RayService. Field names, JSON names and defaults follow KubeRay v1.7 so its
manifests and Ray's own autoscaler work unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_validator

from raykube.models import shapes
from raykube.models.base import (
    MAX_INT32,
    Count,
    Int32,
    KubeModel,
    OpenObject,
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
        "message": (
            "gcsFaultToleranceOptions.backend is immutable: switching it would discard the "
            "cluster's GCS state"
        ),
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


class GcsFaultToleranceOptions(KubeModel):
    """GCS fault tolerance: Ray's cluster metadata kept outside the head pod."""

    backend: GcsBackend | None = Field(
        None,
        description=(
            "Where GCS state is persisted: redis (default); rocksdb is refused (not supported). "
            "Cannot be changed once set."
        ),
        json_schema_extra=cel(BACKEND_FIELD_RULES),
    )
    redis_address: str | None = Field(
        None, description="host:port of the external Redis (backend redis)."
    )
    redis_username: RedisCredential | None = Field(
        None, description="Redis user name; refused by raykube (not supported)."
    )
    redis_password: RedisCredential | None = Field(None, description="Redis password.")
    external_storage_namespace: str | None = Field(
        None,
        description=(
            "Key prefix for this cluster's data in Redis; defaults to the RayCluster's UID. "
            "Change only if you understand GCS fault tolerance."
        ),
    )
    storage: OpenObject | None = Field(
        None, description="rocksdb volume settings; refused by raykube (rocksdb is not supported)."
    )


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
        description="v1 (the autoscaler raykube runs); v2 is refused (not supported).",
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
            "None (default): running pods keep their old configuration; new pods use the new "
            "one. Recreate is refused by raykube (not supported)."
        ),
    )


class AuthOptions(KubeModel):
    """Token authentication for the Ray dashboard and API."""

    mode: AuthMode | None = Field(
        None,
        description=(
            "disabled or token (default token). Only disabled is accepted: raykube does not "
            "run token authentication."
        ),
    )
    secret_name: str | None = Field(
        None, description="KubeRay's token Secret; not used (token mode is refused)."
    )
    enable_k8s_token_auth: bool | None = Field(
        None,
        description="KubeRay's delegation to the API server; not used (token mode is refused).",
    )


class TLSOptions(KubeModel):
    """Mutual TLS between Ray nodes."""

    enabled: bool | None = Field(
        None, description="Mutual TLS; raykube refuses true (not supported)."
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
        None, description="KubeRay's head Ingress; raykube refuses true (not supported)."
    )
    ingress_options: OpenObject | None = Field(
        None, description="KubeRay's Ingress settings; refused by raykube (not supported)."
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
        "!has(self.authOptions) || (has(self.authOptions.mode) && "
        "self.authOptions.mode == 'disabled')",
        "authOptions",
        "the Ray cluster would run without token authentication; remove it or set mode: disabled",
    ),
    _unsupported(
        "!has(self.tlsOptions) || !has(self.tlsOptions.enabled) || !self.tlsOptions.enabled",
        "tlsOptions.enabled",
        "Ray nodes would talk without TLS",
    ),
    _unsupported(
        "!has(self.networkPolicy)",
        "networkPolicy",
        "no NetworkPolicy would be created; write your own NetworkPolicies for the pods",
    ),
    _unsupported(
        "!has(self.historyServerOptions)",
        "historyServerOptions",
        "no history server collector would run",
    ),
    _unsupported(
        "!has(self.headGroupSpec.enableIngress) || !self.headGroupSpec.enableIngress",
        "headGroupSpec.enableIngress",
        "no Ingress would be created; write your own Ingress for the head Service",
    ),
    _unsupported(
        "!has(self.headGroupSpec.ingressOptions)",
        "headGroupSpec.ingressOptions",
        "no Ingress would be created",
    ),
    _unsupported(
        "!has(self.gcsFaultToleranceOptions) || !has(self.gcsFaultToleranceOptions.backend) || "
        "self.gcsFaultToleranceOptions.backend != 'rocksdb'",
        "gcsFaultToleranceOptions.backend",
        "rocksdb would persist nothing; use redis",
    ),
    _unsupported(
        "!has(self.gcsFaultToleranceOptions) || !has(self.gcsFaultToleranceOptions.storage)",
        "gcsFaultToleranceOptions.storage",
        "it belongs to the rocksdb backend, which raykube does not run",
    ),
    _unsupported(
        "!has(self.gcsFaultToleranceOptions) || !has(self.gcsFaultToleranceOptions.redisUsername)",
        "gcsFaultToleranceOptions.redisUsername",
        "Ray would connect to Redis without it; use a password (redisPassword)",
    ),
    _unsupported(
        "!has(self.upgradeStrategy) || !has(self.upgradeStrategy.type) || "
        "self.upgradeStrategy.type != 'Recreate'",
        "upgradeStrategy.type",
        "Recreate would not recreate running pods; pods keep the configuration they "
        "were created with",
    ),
    _unsupported(
        "!has(self.autoscalerOptions) || !has(self.autoscalerOptions.version) || "
        "self.autoscalerOptions.version != 'v2'",
        "autoscalerOptions.version",
        "v2 would run the v1 autoscaler",
    ),
]


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
    head_service_annotations: StringMap | None = Field(
        None, description="Annotations added to the head Service."
    )
    suspend: bool | None = Field(
        None, description="Delete all pods of the cluster and create none while true."
    )
    gcs_fault_tolerance_options: GcsFaultToleranceOptions | None = Field(
        None, description="Keep GCS state outside the head pod so it survives a head restart."
    )
    upgrade_strategy: RayClusterUpgradeStrategy | None = Field(
        None, description="What happens to running pods when a pod template changes."
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
            "Token authentication; raykube accepts only mode: disabled (token mode is not "
            "supported, and a cluster must not run without the authentication it asked for)."
        ),
    )
    tls_options: TLSOptions | None = Field(
        None, description="Mutual TLS between Ray nodes; enabled: true is refused (not supported)."
    )
    network_policy: OpenObject | None = Field(
        None,
        description=(
            "KubeRay's NetworkPolicies; refused by raykube (not supported): write your own."
        ),
    )
    history_server_options: OpenObject | None = Field(
        None, description="KubeRay's history server collector; refused by raykube (not supported)."
    )
