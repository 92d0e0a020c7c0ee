"""The RayService kind (``ray.io/v1``): Ray Serve applications on a RayCluster
that the operator creates, upgrades and replaces."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from raykube.models import shapes
from raykube.models.base import (
    Count,
    Int64,
    KindInfo,
    KubeModel,
    PrinterColumn,
    ServiceObject,
    Time,
    cel,
    schema_default,
)
from raykube.models.clusterspec import MANAGED_BY_FIELD_RULES, ManagedBy, RayClusterSpec
from raykube.models.common import Condition, ObjectMeta, name_rules
from raykube.models.raycluster import RayClusterStatus

DEFAULT_UPGRADE_TIMEOUT_SECONDS = 1800
DEFAULT_DELETION_DELAY_SECONDS = 60
DEFAULT_SERVICE_UNHEALTHY_SECONDS = 900
DEFAULT_DEPLOYMENT_UNHEALTHY_SECONDS = 300
#: serveConfigV2's maxLength, in characters. The API server stores a whole object
#: in one etcd value (1.5 MiB by default) and this string shares it with the
#: cluster's pod templates; real configs are a few KiB. The operator parses it on
#: every pass, and at this size that stays a fraction of a second.
MAX_SERVE_CONFIG_CHARS = 256 * 1024
#: Mappings and lists inside one another in serveConfigV2. A Serve config needs
#: about ten (five to reach a deployment's user_config).
MAX_SERVE_CONFIG_NESTING = 64


class RayServiceUpgradeType(StrEnum):
    NEW_CLUSTER = "NewCluster"
    INCREMENTAL = "NewClusterWithIncrementalUpgrade"
    NONE = "None"
    RECREATE = "Recreate"


class ServeAppState(StrEnum):
    """Application statuses reported by Ray Serve."""

    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    DELETING = "DELETING"
    UNHEALTHY = "UNHEALTHY"


class ServeDeploymentState(StrEnum):
    """Deployment statuses reported by Ray Serve."""

    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"


class RayServiceConditionType(StrEnum):
    READY = "Ready"
    UPGRADE_IN_PROGRESS = "UpgradeInProgress"


DEFAULT_MAX_SURGE_PERCENT = 100
#: KubeRay names the type; raykube refuses options it would not act on.
INCREMENTAL = RayServiceUpgradeType.INCREMENTAL.value

Percent = Annotated[int, Field(ge=1, le=100, json_schema_extra={"format": "int32"})]
"""A percentage from 1 to 100 (0 would never move anything)."""


class ClusterUpgradeOptions(KubeModel):
    """Steps of an incremental upgrade."""

    max_surge_percent: Percent = Field(
        DEFAULT_MAX_SURGE_PERCENT,
        description="target_capacity moved per step; both clusters stay within 100+this%.",
        json_schema_extra=schema_default(DEFAULT_MAX_SURGE_PERCENT),
    )
    step_size_percent: Percent = Field(description="Traffic % moved per step.")
    interval_seconds: Annotated[
        int, Field(ge=1, le=2**31 - 1, json_schema_extra={"format": "int32"})
    ] = Field(description="Seconds at least between traffic steps.")
    gateway_class_name: str | None = Field(
        None,
        description=(
            "GatewayClass of a Gateway and HTTPRoute that split traffic by weight; empty: "
            "the serve Service selects pods of both clusters instead."
        ),
    )


UPGRADE_OPTION_RULES = [
    {
        "rule": (
            f"has(self.clusterUpgradeOptions) == (has(self.type) && self.type == '{INCREMENTAL}')"
        ),
        "message": f"clusterUpgradeOptions is required with {INCREMENTAL}, refused otherwise",
        "fieldPath": ".clusterUpgradeOptions",
        "reason": "FieldValueInvalid",
    },
]


class RayServiceUpgradeStrategy(KubeModel):
    """How a change to rayClusterConfig reaches the running service."""

    type: RayServiceUpgradeType = Field(
        RayServiceUpgradeType.NEW_CLUSTER,
        description=(
            "NewCluster (default): build a new cluster, move traffic once all its Serve "
            "applications run, then delete the old one. NewClusterWithIncrementalUpgrade: "
            "the same step by step (clusterUpgradeOptions). Recreate (raykube): delete the "
            "old cluster first; traffic stops meanwhile. None: never build a new cluster."
        ),
        json_schema_extra=schema_default(RayServiceUpgradeType.NEW_CLUSTER.value),
    )
    timeout_seconds: Count = Field(
        DEFAULT_UPGRADE_TIMEOUT_SECONDS,
        description=(
            "raykube extension. Seconds a new cluster may take to serve every application "
            "before the upgrade is abandoned: the old cluster keeps serving and the failure "
            "is reported in a condition. 0 means no deadline. Default 1800."
        ),
        json_schema_extra=schema_default(DEFAULT_UPGRADE_TIMEOUT_SECONDS),
    )
    cluster_upgrade_options: ClusterUpgradeOptions | None = Field(
        None,
        description=f"For {INCREMENTAL} only.",
    )


#: The RayService's own upgradeStrategy decides how its clusters change; a
#: cluster recreating its own pods underneath it would drop traffic unannounced
#: (KubeRay refuses any upgradeStrategy on a cluster a RayService creates).
CLUSTER_CONFIG_NO_RECREATE = {
    "rule": (
        "!has(self.upgradeStrategy) || !has(self.upgradeStrategy.type) || "
        "self.upgradeStrategy.type != 'Recreate'"
    ),
    "message": (
        "rayClusterConfig.upgradeStrategy.type Recreate is not allowed in a RayService: "
        "spec.upgradeStrategy decides how the service's clusters are replaced"
    ),
    "fieldPath": ".upgradeStrategy.type",
    "reason": "FieldValueForbidden",
}


class RayServiceSpec(KubeModel):
    """Desired state of a RayService: Serve applications and the cluster they run on."""

    serve_config_v2: str | None = Field(
        None,
        alias="serveConfigV2",
        max_length=MAX_SERVE_CONFIG_CHARS,
        description=(
            "Ray Serve multi-application config as a YAML string (applications, http_options, "
            f"...), at most {MAX_SERVE_CONFIG_CHARS} characters. The operator checks it "
            "against Ray Serve's schema before sending it to the cluster's dashboard; YAML "
            f"anchors and aliases, nesting deeper than {MAX_SERVE_CONFIG_NESTING} and values "
            "JSON cannot carry (dates, sets, binary, non-string keys, NaN) are refused."
        ),
    )
    ray_cluster_config: RayClusterSpec = Field(
        description=(
            "The RayCluster to run the applications on. A change outside worker replicas, "
            "scaling bounds, workersToDelete, tolerations and scheduling gates builds a new "
            "cluster according to upgradeStrategy."
        ),
        json_schema_extra=cel([CLUSTER_CONFIG_NO_RECREATE]),
    )
    upgrade_strategy: RayServiceUpgradeStrategy = Field(
        default_factory=RayServiceUpgradeStrategy,
        description="How a cluster change is rolled out.",
        json_schema_extra={**schema_default({}), **cel(UPGRADE_OPTION_RULES)},
    )
    ray_cluster_deletion_delay_seconds: Count = Field(
        DEFAULT_DELETION_DELAY_SECONDS,
        description="Seconds the old cluster is kept after traffic moved away (default 60).",
        json_schema_extra=schema_default(DEFAULT_DELETION_DELAY_SECONDS),
    )
    service_unhealthy_second_threshold: Count = Field(
        DEFAULT_SERVICE_UNHEALTHY_SECONDS,
        description=(
            "Seconds a Serve application may stay DEPLOY_FAILED or UNHEALTHY before the cluster "
            "is considered unhealthy and a replacement is prepared (default 900; 0 turns the "
            "check off)."
        ),
        json_schema_extra=schema_default(DEFAULT_SERVICE_UNHEALTHY_SECONDS),
    )
    deployment_unhealthy_second_threshold: Count = Field(
        DEFAULT_DEPLOYMENT_UNHEALTHY_SECONDS,
        description=(
            "Seconds the serving cluster's dashboard may be unreachable before the cluster is "
            "considered unhealthy and a replacement is prepared (default 300; 0 turns the check "
            "off)."
        ),
        json_schema_extra=schema_default(DEFAULT_DEPLOYMENT_UNHEALTHY_SECONDS),
    )
    serve_service: ServiceObject | None = Field(
        None,
        description=(
            "A Kubernetes Service merged into the generated <name>-serve-svc (name, labels, "
            "annotations, type, ports); it is created only if no Service of that name exists "
            "that this RayService does not control. spec.type ExternalName is refused."
        ),
    )
    exclude_head_pod_from_serve_svc: bool | None = Field(
        None, description="Keep the head pod out of the serve Service even when it serves."
    )
    suspend: bool | None = Field(
        None,
        description=(
            "Delete the clusters and Services of this RayService while true; recreate them "
            "when set back to false."
        ),
    )
    managed_by: ManagedBy | None = Field(
        None,
        description=(
            "Controller in charge: unset or ray.io/kuberay-operator means this operator; "
            "kueue.x-k8s.io/multikueue hands the object to Kueue. Immutable."
        ),
        json_schema_extra=cel(MANAGED_BY_FIELD_RULES),
    )

    @field_validator("serve_service")
    @classmethod
    def _serve_service_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        shapes.refuse(shapes.service_problem(value) if value is not None else None)
        return value


class ServeDeploymentStatus(KubeModel):
    """State of one Serve deployment, as Ray Serve reports it."""

    status: str | None = Field(None, description="UPDATING, HEALTHY or UNHEALTHY.")
    message: str | None = Field(None, description="Details from Ray Serve.")
    health_last_update_time: Time | None = Field(
        None, description="When the deployment was last seen healthy."
    )


class AppStatus(KubeModel):
    """State of one Serve application, as Ray Serve reports it."""

    status: str | None = Field(
        None, description="NOT_STARTED, DEPLOYING, RUNNING, DEPLOY_FAILED, DELETING or UNHEALTHY."
    )
    message: str | None = Field(None, description="Details from Ray Serve (errors, tracebacks).")
    health_last_update_time: Time | None = Field(
        None,
        description=(
            "When the application was last seen healthy; unhealthy time is measured from it."
        ),
    )
    serve_deployment_statuses: dict[str, ServeDeploymentStatus] = Field(
        default_factory=dict, description="Deployments of the application, by name."
    )


class ServingClusterStatus(KubeModel):
    """One RayCluster of the service and the Serve applications on it."""

    ray_cluster_name: str | None = Field(None, description="Name of the RayCluster.")
    application_statuses: dict[str, AppStatus] = Field(
        default_factory=dict, description="Serve applications on the cluster, by name."
    )
    ray_cluster_status: RayClusterStatus | None = Field(
        None, description="Status of the RayCluster (copied from it)."
    )
    target_capacity: int | None = Field(None, description="Serve target_capacity, %.")
    traffic_routed_percent: int | None = Field(None, description="Traffic share, %.")
    last_traffic_migrated_time: Time | None = Field(None, description="Its last change.")


class RayServiceStatus(KubeModel):
    """Observed state of a RayService, written by the operator."""

    service_status: str | None = Field(
        None, description="Running once the active cluster serves (kept for KubeRay tools)."
    )
    num_serve_endpoints: Count = Field(
        0, description="Pods behind the serve Service (their Serve proxy answers)."
    )
    active_service_status: ServingClusterStatus = Field(
        default_factory=ServingClusterStatus,
        description="The cluster receiving traffic.",
    )
    pending_service_status: ServingClusterStatus = Field(
        default_factory=ServingClusterStatus,
        description="The cluster being prepared to replace it, during an upgrade.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Conditions (Ready, UpgradeInProgress, ...).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: Int64 | None = Field(
        None, description="metadata.generation this status was computed from."
    )
    last_update_time: Time | None = Field(None, description="When this status last changed.")


RAYSERVICE_SPEC_RULES = [
    {
        "rule": (
            "!has(self.upgradeStrategy.type) || "
            f"self.upgradeStrategy.type != '{INCREMENTAL}' || "
            "(has(self.rayClusterConfig.enableInTreeAutoscaling) && "
            "self.rayClusterConfig.enableInTreeAutoscaling)"
        ),
        "message": f"upgradeStrategy.type {INCREMENTAL} needs enableInTreeAutoscaling",
        "fieldPath": ".upgradeStrategy.type",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "has(self.managedBy) == has(oldSelf.managedBy)",
        "message": "managedBy is immutable: it cannot be added or removed after creation",
        "fieldPath": ".managedBy",
        "reason": "FieldValueForbidden",
    },
]


class RayService(KubeModel):
    """Ray Serve applications on a Ray cluster, upgraded without downtime."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            name_rules(
                "RayService",
                47,
                "its RayClusters are named <name>-<5 characters> and a RayCluster name is "
                "limited to 53",
            )
        )
    )

    api_version: Literal["ray.io/v1", "ray.io/v1alpha1"] = "ray.io/v1"
    kind: Literal["RayService"] = "RayService"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RayServiceSpec = Field(
        description="Desired state of the service.",
        json_schema_extra=cel(RAYSERVICE_SPEC_RULES),
    )
    status: RayServiceStatus | None = Field(None, description="Observed state of the service.")


_READY = '.status.conditions[?(@.type=="Ready")].status'

KIND = KindInfo(
    kind="RayService",
    plural="rayservices",
    singular="rayservice",
    max_name_length=47,
    printer_columns=(
        PrinterColumn("Service Status", "string", ".status.serviceStatus", "Running once serving."),
        PrinterColumn(
            "Serve Endpoints",
            "integer",
            ".status.numServeEndpoints",
            "Pods behind the serve Service.",
        ),
        PrinterColumn(
            "Active Cluster",
            "string",
            ".status.activeServiceStatus.rayClusterName",
            "RayCluster receiving traffic.",
        ),
        PrinterColumn(
            "Pending Cluster",
            "string",
            ".status.pendingServiceStatus.rayClusterName",
            "RayCluster being prepared.",
        ),
        PrinterColumn("Ready", "string", _READY, "Status of the Ready condition."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
    ),
)


def parse_rayservice(obj: dict[str, Any]) -> RayService:
    """Validate a RayService as read from the API server (or a manifest)."""
    return RayService.model_validate(obj)
