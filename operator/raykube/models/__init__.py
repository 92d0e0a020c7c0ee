"""The ``ray.io`` API: typed models of RayCluster and RayService.

This package is the only place that knows the custom resources' JSON shape.
Parse an object once at the edge (``parse_raycluster``/``parse_rayservice``),
work with snake_case attributes, and ``dump`` back to camelCase JSON.
"""

from raykube.models.base import GROUP, MAX_INT32, KindInfo, KubeModel, PrinterColumn, dump
from raykube.models.clusterspec import (
    AutoscalerOptions,
    GcsFaultToleranceOptions,
    HeadGroupSpec,
    ManagedBy,
    RayClusterSpec,
    RayClusterUpgradeType,
    ScaleStrategy,
    ServiceType,
    WorkerGroupSpec,
)
from raykube.models.common import Condition, ConditionStatus, ObjectMeta, find_condition
from raykube.models.podtemplate import ContainerResources
from raykube.models.raycluster import (
    ClusterState,
    HeadInfo,
    RayCluster,
    RayClusterStatus,
    parse_raycluster,
)
from raykube.models.rayservice import (
    AppStatus,
    RayService,
    RayServiceConditionType,
    RayServiceSpec,
    RayServiceStatus,
    RayServiceUpgradeStrategy,
    RayServiceUpgradeType,
    ServeAppState,
    ServeDeploymentState,
    ServeDeploymentStatus,
    ServingClusterStatus,
    parse_rayservice,
)

API_VERSION = "ray.io/v1"
SERVED_VERSIONS = ("v1", "v1alpha1")

__all__ = [
    "API_VERSION",
    "GROUP",
    "MAX_INT32",
    "SERVED_VERSIONS",
    "AppStatus",
    "AutoscalerOptions",
    "ClusterState",
    "Condition",
    "ConditionStatus",
    "ContainerResources",
    "GcsFaultToleranceOptions",
    "HeadGroupSpec",
    "HeadInfo",
    "KindInfo",
    "KubeModel",
    "ManagedBy",
    "ObjectMeta",
    "PrinterColumn",
    "RayCluster",
    "RayClusterSpec",
    "RayClusterStatus",
    "RayClusterUpgradeType",
    "RayService",
    "RayServiceConditionType",
    "RayServiceSpec",
    "RayServiceStatus",
    "RayServiceUpgradeStrategy",
    "RayServiceUpgradeType",
    "ScaleStrategy",
    "ServeAppState",
    "ServeDeploymentState",
    "ServeDeploymentStatus",
    "ServiceType",
    "ServingClusterStatus",
    "WorkerGroupSpec",
    "dump",
    "find_condition",
    "parse_raycluster",
    "parse_rayservice",
]
