"""The ``ray start`` command line, as KubeRay renders it.

Users' images and habits depend on the exact flags: sorted ``--key=value``
from ``rayStartParams`` (value ``"true"`` becomes a bare flag), defaults for
the dashboard and metrics, and the resources Ray should advertise read from
the container's limits (else requests).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from raykube.builders import quantities
from raykube.builders.labels import NodeType
from raykube.ports import DASHBOARD_AGENT_PORT, GCS_PORT, METRICS_PORT

# Extended resources that are GPUs even though their name does not end in
# "gpu" (NVIDIA MIG slices such as nvidia.com/mig-1g.5gb).
_GPU_PREFIXES = ("nvidia.com/mig-",)


def _resources(container: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    res = container.get("resources") or {}
    return res.get(kind) or {}


def _pick(container: Mapping[str, Any], name: str) -> Any:
    """A resource's limit, else its request (as KubeRay does for CPU and memory)."""
    limits, requests = _resources(container, "limits"), _resources(container, "requests")
    return limits.get(name, requests.get(name))


def is_gpu_resource(name: str) -> bool:
    return name.lower().endswith("gpu") or name.startswith(_GPU_PREFIXES)


def gpu_count(container: Mapping[str, Any]) -> int:
    """Sum of every GPU-like limit (requests must equal limits for extended resources)."""
    limits = _resources(container, "limits") or _resources(container, "requests")
    return sum(quantities.ceil_int(v) for k, v in limits.items() if is_gpu_resource(k))


def resource_params(container: Mapping[str, Any]) -> dict[str, str]:
    """``num-cpus``, ``num-gpus`` and ``memory`` derived from the container."""
    params: dict[str, str] = {}
    cpu = _pick(container, "cpu")
    if cpu is not None and quantities.parse(cpu) > 0:
        params["num-cpus"] = str(quantities.ceil_int(cpu))
    memory = _resources(container, "limits").get("memory")
    if memory is None:
        memory = _resources(container, "requests").get("memory")
    if memory is not None and quantities.parse(memory) > 0:
        params["memory"] = str(quantities.ceil_int(memory))
    gpus = gpu_count(container)
    if gpus > 0:
        params["num-gpus"] = str(gpus)
    return params


def effective_params(
    node_type: NodeType, user: Mapping[str, str], container: Mapping[str, Any]
) -> dict[str, str]:
    """User params win over derived resources, which win over defaults."""
    params: dict[str, str] = {"metrics-export-port": str(METRICS_PORT)}
    params["dashboard-agent-listen-port"] = str(DASHBOARD_AGENT_PORT)
    if node_type == "head":
        params["dashboard-host"] = "0.0.0.0"
    params.update(resource_params(container))
    params.update({k: str(v) for k, v in user.items()})
    params["block"] = "true"
    return params


def _is_env_reference(value: str) -> bool:
    name = value[1:]
    return value.startswith("$") and bool(name) and name.replace("_", "a").isalnum()


def render_flags(params: Mapping[str, str]) -> list[str]:
    flags = []
    for key in sorted(params):
        value = params[key]
        if value.lower() == "true":
            flags.append(f"--{key}")
        elif _is_env_reference(value):
            # Expanded by the container's shell, e.g. --redis-password=$REDIS_PASSWORD.
            flags.append(f"--{key}={value}")
        else:
            flags.append(f"--{key}={shlex.quote(value)}")
    return flags


def ray_start_command(
    node_type: NodeType,
    user_params: Mapping[str, str],
    container: Mapping[str, Any],
    head_address: str,
) -> str:
    """``ray start --head ...`` or ``ray start --address=<head>:<gcs port> ...``."""
    params = effective_params(node_type, user_params, container)
    first = ["ray", "start"]
    if node_type == "head":
        first.append("--head")
        params.pop("address", None)
    else:
        port = params.pop("port", str(GCS_PORT))
        first.append(f"--address={head_address}:{port}")
    return " ".join(first + render_flags(params))


def container_shell(container: Mapping[str, Any], ray_start: str) -> tuple[list[str], list[str]]:
    """The command/args of the Ray container: the user's own command, if any,
    runs first (as a prefix), then ``ray start``."""
    prefix = " ".join([*container.get("command", []), *container.get("args", [])]).strip()
    script = "ulimit -n 65536; "
    script += f"{prefix} && {ray_start}" if prefix else ray_start
    return ["/bin/bash", "-c", "--"], [script]
