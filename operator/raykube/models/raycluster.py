"""The RayCluster kind (``ray.io/v1``): status, the object and the parse edge."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from raykube.models.base import (
    Count,
    Int64,
    KindInfo,
    KubeModel,
    PrinterColumn,
    Quantity,
    StringMap,
    Time,
    cel,
)
from raykube.models.clusterspec import RayClusterSpec
from raykube.models.common import Condition, ObjectMeta, name_rules


class ClusterState(StrEnum):
    READY = "ready"
    FAILED = "failed"
    SUSPENDED = "suspended"


class HeadInfo(KubeModel):
    """Where the head can be reached."""

    pod_ip: str | None = Field(None, alias="podIP", description="IP of the head pod.")
    service_ip: str | None = Field(
        None, alias="serviceIP", description="Cluster IP of the head Service."
    )
    pod_name: str | None = Field(None, description="Name of the head pod.")
    service_name: str | None = Field(None, description="Name of the head Service.")


class RayClusterStatus(KubeModel):
    """Observed state of a Ray cluster, written by the operator."""

    state: str | None = Field(
        None, description="ready, failed or suspended (kept for KubeRay tools; see conditions)."
    )
    reason: str | None = Field(None, description="Why the cluster is in its state.")
    desired_worker_replicas: Count = Field(0, description="Sum of the groups' desired pods.")
    ready_worker_replicas: Count = Field(0, description="Worker pods that are Ready.")
    available_worker_replicas: Count = Field(0, description="Worker pods that are running.")
    min_worker_replicas: Count = Field(0, description="Sum of the groups' minReplicas.")
    max_worker_replicas: Count = Field(0, description="Sum of the groups' maxReplicas.")
    desired_cpu: Quantity | None = Field(
        None, alias="desiredCPU", description="CPUs of all desired pods."
    )
    desired_memory: Quantity | None = Field(None, description="Memory of all desired pods.")
    desired_gpu: Quantity | None = Field(
        None, alias="desiredGPU", description="GPUs of all desired pods."
    )
    desired_tpu: Quantity | None = Field(
        None, alias="desiredTPU", description="TPUs of all desired pods."
    )
    endpoints: StringMap | None = Field(
        None, description="Head Service ports by name (dashboard, client, gcs-server, ...)."
    )
    head: HeadInfo | None = Field(None, description="Addresses of the head.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Conditions (HeadPodReady, RayClusterProvisioned, ...).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: Int64 | None = Field(
        None, description="metadata.generation this status was computed from."
    )
    last_update_time: Time | None = Field(None, description="When this status last changed.")
    state_transition_times: dict[str, Time] | None = Field(
        None, description="When the cluster last entered each state."
    )


# Rules that hold for a standalone RayCluster but not for a RayService's
# rayClusterConfig (where a change builds a new cluster instead).
RAYCLUSTER_SPEC_RULES = [
    {
        "rule": (
            "!has(oldSelf.workerGroupSpecs) || !has(self.workerGroupSpecs) || "
            "self.workerGroupSpecs.all(g, oldSelf.workerGroupSpecs.all(o, "
            "o.groupName != g.groupName || o.numOfHosts == g.numOfHosts))"
        ),
        "message": (
            "workerGroupSpecs[].numOfHosts is immutable: a running group's replicas are sized "
            "by it; add a group with a new groupName instead"
        ),
        "fieldPath": ".workerGroupSpecs",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "has(self.managedBy) == has(oldSelf.managedBy)",
        "message": "managedBy is immutable: it cannot be added or removed after creation",
        "fieldPath": ".managedBy",
        "reason": "FieldValueForbidden",
    },
]


class RayCluster(KubeModel):
    """A Ray cluster: a head pod, worker pods and the head Service."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            name_rules("RayCluster", 53, "it prefixes the names of the cluster's pods and Services")
        )
    )

    api_version: Literal["ray.io/v1", "ray.io/v1alpha1"] = "ray.io/v1"
    kind: Literal["RayCluster"] = "RayCluster"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RayClusterSpec = Field(
        description="Desired state of the cluster.",
        json_schema_extra=cel(RAYCLUSTER_SPEC_RULES),
    )
    status: RayClusterStatus | None = Field(None, description="Observed state of the cluster.")


KIND = KindInfo(
    kind="RayCluster",
    plural="rayclusters",
    singular="raycluster",
    max_name_length=53,
    printer_columns=(
        PrinterColumn(
            "Desired Workers", "integer", ".status.desiredWorkerReplicas", "Desired worker pods."
        ),
        PrinterColumn(
            "Available Workers",
            "integer",
            ".status.availableWorkerReplicas",
            "Running worker pods.",
        ),
        PrinterColumn("CPUs", "string", ".status.desiredCPU", "CPUs of all desired pods."),
        PrinterColumn("Memory", "string", ".status.desiredMemory", "Memory of all desired pods."),
        PrinterColumn("GPUs", "string", ".status.desiredGPU", "GPUs of all desired pods."),
        PrinterColumn("TPUs", "string", ".status.desiredTPU", "TPUs of all desired pods.", 1),
        PrinterColumn("Status", "string", ".status.state", "ready, failed or suspended."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        PrinterColumn("Head Pod IP", "string", ".status.head.podIP", "IP of the head pod.", 1),
        PrinterColumn(
            "Head Service IP",
            "string",
            ".status.head.serviceIP",
            "Cluster IP of the head Service.",
            1,
        ),
    ),
)


def parse_raycluster(obj: dict[str, Any]) -> RayCluster:
    """Validate a RayCluster as read from the API server (or a manifest)."""
    return RayCluster.model_validate(obj)
