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
            "Where GCS state is persisted: redis (default) or rocksdb. Cannot be changed once set."
        ),
        json_schema_extra=cel(BACKEND_FIELD_RULES),
    )
    redis_address: str | None = Field(
        None, description="host:port of the external Redis (backend redis)."
    )
    redis_username: RedisCredential | None = Field(None, description="Redis user name.")
    redis_password: RedisCredential | None = Field(None, description="Redis password.")
    external_storage_namespace: str | None = Field(
        None,
        description=(
            "Key prefix for this cluster's data in Redis; defaults to the RayCluster's UID. "
            "Change only if you understand GCS fault tolerance."
        ),
    )
    storage: OpenObject | None = Field(
        None, description="Persistent volume settings for the rocksdb backend."
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
        description="Autoscaler v1 or v2; by default chosen from rayVersion (v2 from Ray 2.47).",
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
            "one. Recreate: all pods are deleted and created again."
        ),
    )


class AuthOptions(KubeModel):
    """Token authentication for the Ray dashboard and API."""

    mode: AuthMode | None = Field(None, description="disabled or token (default token).")
    secret_name: str | None = Field(
        None,
        description=(
            "Secret with the token under key auth_token; when unset the operator creates one."
        ),
    )
    enable_k8s_token_auth: bool | None = Field(
        None, description="Delegate token checks to the Kubernetes API server."
    )


class TLSOptions(KubeModel):
    """Mutual TLS between Ray nodes."""

    enabled: bool | None = Field(None, description="Turn mutual TLS on (default off).")


class HeadGroupSpec(TemplatedGroup):
    """The Ray head pod: one pod running the GCS, dashboard and Serve controller."""

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
        None, description="Create an Ingress for the head's dashboard."
    )
    ingress_options: OpenObject | None = Field(
        None, description="Host, path, pathType and TLS of that Ingress."
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


class RayClusterSpec(KubeModel):
    """Desired state of a Ray cluster: one head pod and groups of worker pods."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            [
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
                }
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
        None, description="Token authentication for the dashboard and Ray API."
    )
    tls_options: TLSOptions | None = Field(None, description="Mutual TLS between Ray nodes.")
    network_policy: OpenObject | None = Field(
        None, description="NetworkPolicies isolating the cluster's pods (mode, head, worker)."
    )
    history_server_options: OpenObject | None = Field(
        None, description="Settings of the history server collector sidecar."
    )
