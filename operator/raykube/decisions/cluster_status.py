"""The status of a RayCluster, computed from what exists (pure).

Written by the handler only when it differs from what is stored, so a steady
cluster costs no writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from raykube.builders import quantities
from raykube.builders.ray_start import TPU_RESOURCE, is_gpu_resource
from raykube.decisions import conditions
from raykube.decisions.conditions import Cond
from raykube.decisions.pods import PodView
from raykube.decisions.scaling import ClusterIntent
from raykube.models.base import MAX_INT32
from raykube.models.raycluster import RayCluster

HEAD_POD_READY = "HeadPodReady"
PROVISIONED = "RayClusterProvisioned"
REPLICA_FAILURE = "ReplicaFailure"
SUSPENDED = "RayClusterSuspended"


@dataclass(frozen=True)
class Observed:
    pods: Sequence[PodView]
    head_service: Mapping[str, Any] | None = None
    #: reason -> API message of the last failed pod creation, if any
    create_failure: tuple[str, str] | None = None


def format_cpu(value: Decimal) -> str:
    return str(int(value)) if value == int(value) else f"{int(value * 1000)}m"


def format_bytes(value: Decimal) -> str:
    whole = int(value)
    for suffix, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if whole and whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)


def _tpus(container: Mapping[str, Any]) -> Decimal:
    limits = (container.get("resources") or {}).get("limits") or {}
    raw = limits.get(TPU_RESOURCE)
    return quantities.parse(raw) if raw is not None else Decimal(0)


def _pod_resources(container: Mapping[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}

    def pick(name: str) -> Decimal:
        raw = limits.get(name, requests.get(name))
        return quantities.parse(raw) if raw is not None else Decimal(0)

    gpus = sum((quantities.parse(v) for k, v in limits.items() if is_gpu_resource(k)), Decimal(0))
    return pick("cpu"), pick("memory"), gpus


def desired_resources(cluster: RayCluster, intent: ClusterIntent) -> dict[str, str]:
    if intent.suspended:
        return {"desiredCPU": "0", "desiredMemory": "0", "desiredGPU": "0", "desiredTPU": "0"}
    head = cluster.spec.head_group_spec.ray_container()
    cpu, mem, gpu = _pod_resources(head)
    tpu = _tpus(head)
    by_name = {g.name: g for g in intent.groups}
    for group in cluster.spec.worker_group_specs:
        count = by_name[group.group_name].desired
        c, m, g = _pod_resources(group.ray_container())
        cpu, mem, gpu = cpu + c * count, mem + m * count, gpu + g * count
        tpu += _tpus(group.ray_container()) * count
    return {
        "desiredCPU": format_cpu(cpu),
        "desiredMemory": format_bytes(mem),
        "desiredGPU": format_cpu(gpu),
        "desiredTPU": format_cpu(tpu),
    }


def previous_conditions(cluster: RayCluster) -> list[dict[str, Any]]:
    if cluster.status is None:
        return []
    return [
        c.model_dump(mode="json", by_alias=True, exclude_none=True)
        for c in cluster.status.conditions
    ]


def _head_info(heads: Sequence[PodView], svc: Mapping[str, Any] | None) -> dict[str, str]:
    info: dict[str, str] = {}
    if heads:
        info["podName"], info["podIP"] = heads[0].name, heads[0].pod_ip
    if svc:
        info["serviceName"] = svc["metadata"]["name"]
        address = (svc.get("spec") or {}).get("clusterIP", "")
        # A headless head Service has no address of its own: the head pod's is
        # what reaches it (KubeRay reports the same).
        info["serviceIP"] = info.get("podIP", "") if address == "None" else address
    return {k: v for k, v in info.items() if v}


def _endpoints(svc: Mapping[str, Any] | None) -> dict[str, str]:
    ports = ((svc or {}).get("spec") or {}).get("ports") or []
    return {p["name"]: str(p["port"]) for p in ports if p.get("name")}


def _conditions(
    cluster: RayCluster,
    intent: ClusterIntent,
    observed: Observed,
    all_ready: bool,
    head_ready: bool,
) -> list[Cond]:
    provisioned = all_ready or conditions.is_true(previous_conditions(cluster), PROVISIONED)
    wanted = [
        Cond(
            HEAD_POD_READY,
            head_ready,
            "HeadPodRunningAndReady" if head_ready else "HeadPodNotReady",
        ),
        Cond(
            PROVISIONED,
            provisioned,
            "AllPodRunningAndReadyFirstTime" if provisioned else "RayClusterPodsProvisioning",
        ),
        Cond(
            SUSPENDED,
            intent.suspended,
            "RayClusterSuspended" if intent.suspended else "RayClusterRunning",
        ),
    ]
    if observed.create_failure:
        reason, message = observed.create_failure
        wanted.append(Cond(REPLICA_FAILURE, True, reason, message))
    return wanted


def _int32(count: int) -> int:
    # The status schema holds int32 counts; two groups at the default maxReplicas
    # already add up past it, and the API server would refuse the whole write.
    return min(count, MAX_INT32)


def compute_status(
    cluster: RayCluster, intent: ClusterIntent, observed: Observed, now: str
) -> dict[str, Any]:
    live = [p for p in observed.pods if not p.terminating]
    heads = [p for p in live if p.node_type == "head"]
    workers = [p for p in live if p.node_type == "worker"]
    desired = sum(g.desired for g in intent.groups) if not intent.suspended else 0
    ready_workers = sum(1 for p in workers if p.ready)
    head_ready = any(p.ready for p in heads)
    all_ready = head_ready and ready_workers >= desired and not intent.suspended
    if intent.suspended:
        state = "suspended" if not observed.pods else "suspending"
    else:
        state = "ready" if all_ready else ""
    status: dict[str, Any] = {
        "state": state,
        "desiredWorkerReplicas": _int32(desired),
        "readyWorkerReplicas": ready_workers,
        "availableWorkerReplicas": sum(1 for p in workers if p.running),
        # Pods, as KubeRay counts them: every host of a replica; a suspended
        # group has no bounds to report.
        "minWorkerReplicas": _int32(
            sum(g.min_replicas * g.hosts for g in intent.groups if not g.suspended)
        ),
        "maxWorkerReplicas": _int32(
            sum(g.max_replicas * g.hosts for g in intent.groups if not g.suspended)
        ),
        **desired_resources(cluster, intent),
        "endpoints": _endpoints(observed.head_service),
        "head": _head_info(heads, observed.head_service),
        "observedGeneration": cluster.metadata.generation or 0,
        "conditions": conditions.merge(
            previous_conditions(cluster),
            _conditions(cluster, intent, observed, all_ready, head_ready),
            cluster.metadata.generation,
            now,
        ),
    }
    return {k: v for k, v in status.items() if v != "" or k == "state"}


#: A status message longer than this is cut, with a marker saying so.
MAX_REASON = 1024
INVALID_SPEC = "InvalidRayClusterSpec"


def invalid_status(
    stored: Mapping[str, Any] | None, message: str, generation: int | None, now: str
) -> dict[str, Any]:
    """The status of a RayCluster whose spec the models refuse: ``failed`` (as
    KubeRay users read it) and a ``ReplicaFailure`` condition saying why; the
    other conditions are kept as they were."""
    status = dict(stored or {})
    text = message if len(message) <= MAX_REASON else message[: MAX_REASON - 14] + " ...(truncated)"
    previous = status.get("conditions") or []
    kept = [
        Cond(
            str(c.get("type")),
            c.get("status") == "True",
            str(c.get("reason", "")),
            c.get("message", ""),
        )
        for c in previous
        if c.get("type") != REPLICA_FAILURE
    ]
    wanted = [*kept, Cond(REPLICA_FAILURE, True, INVALID_SPEC, text)]
    status["conditions"] = conditions.merge(previous, wanted, generation, now)
    status["state"] = "failed"
    status["reason"] = text
    return status
