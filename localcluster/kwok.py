"""kwok-simulated nodes: CPU nodes and GPU nodes advertising ``nvidia.com/gpu``.

GPU nodes carry the ``nvidia.com/gpu`` NoSchedule taint that GPU clusters
use, so a worker group lands there only if it tolerates it, exactly as the
scheduler decides on a real cluster.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from localcluster import processes

# Pod IPs handed out by kwok; kept apart from any real node's pod CIDR.
POD_CIDR = "10.250.0.0/16"
MANAGED_ANNOTATION = "kwok.x-k8s.io/node"
NODE_KIND_LABEL = "raykube.io/node-kind"
GPU_RESOURCE = "nvidia.com/gpu"


class ControlPlane(Protocol):
    """What kwok needs of ``controlplane.ControlPlane``, which starts kwok: so this
    module need not import the one above it."""

    @property
    def state(self) -> Path: ...
    @property
    def bin(self) -> Path: ...
    @property
    def host(self) -> str: ...
    @property
    def kubeconfig(self) -> Path: ...

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class NodePlan:
    cpu_nodes: int = 3
    gpu_nodes: int = 2
    cpus: str = "32"
    memory: str = "128Gi"
    gpus_per_node: int = 4
    max_pods: int = 250
    # With a real node beside them, kwok nodes are tainted so ordinary pods
    # land on the node that can run them.
    taint_all: bool = False


def start(cp: ControlPlane) -> int:
    argv = [
        str(cp.bin / "kwok"),
        f"--kubeconfig={cp.kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={MANAGED_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.250.255.254",
        f"--server-address={cp.host}:{processes.free_port()}",
        "--node-lease-duration-seconds=40",
    ]
    pid = processes.start("kwok", argv, cp.state)
    return pid


def node_manifest(name: str, plan: NodePlan, gpu: bool) -> dict[str, Any]:
    """A Node object that kwok adopts and keeps Ready (pure)."""
    resources = {"cpu": plan.cpus, "memory": plan.memory, "pods": str(plan.max_pods)}
    taints: list[dict[str, str]] = []
    if gpu:
        resources[GPU_RESOURCE] = str(plan.gpus_per_node)
        taints.append({"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"})
    if plan.taint_all:
        taints.append({"key": MANAGED_ANNOTATION, "value": "fake", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {MANAGED_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                NODE_KIND_LABEL: "kwok-gpu" if gpu else "kwok-cpu",
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "machineID": name,
                "systemUUID": name,
                "bootID": name,
                "kernelVersion": "kwok",
                "osImage": "kwok",
                "containerRuntimeVersion": "kwok",
            },
            "phase": "Running",
        },
    }


def create_nodes(cp: ControlPlane, plan: NodePlan) -> list[str]:
    names = [f"kwok-cpu-{i}" for i in range(plan.cpu_nodes)]
    names += [f"kwok-gpu-{i}" for i in range(plan.gpu_nodes)]
    items = [node_manifest(n, plan, gpu=n.startswith("kwok-gpu")) for n in names]
    if not items:
        return []
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    cp.kubectl("apply", "-f", "-", input=doc)
    cp.kubectl("wait", "--for=condition=Ready", "--timeout=60s", *(f"node/{n}" for n in names))
    return names
