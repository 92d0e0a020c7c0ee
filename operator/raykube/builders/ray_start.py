"""The ``ray start`` command line, as KubeRay renders it.

Users' images and habits depend on the exact flags: sorted ``--key=value``
from ``rayStartParams`` (value ``"true"`` becomes a bare flag, ``"false"``
leaves the flag out, except for the options that take true/false as a value),
defaults for the dashboard and metrics, and the resources Ray should advertise
read from the container's limits (else requests). Workers join the GCS at the
head's ``rayStartParams.port``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from raykube.builders import quantities
from raykube.builders.labels import NodeType
from raykube.ports import DASHBOARD_AGENT_PORT, GCS_PORT, METRICS_PORT

# Extended resources that are GPUs even though their name does not end in
# "gpu" (NVIDIA MIG slices such as nvidia.com/mig-1g.5gb).
_GPU_PREFIXES = ("nvidia.com/mig-",)
#: Options whose value may be true/false (or more): always ``--key=value``.
_VALUED_BOOLEANS = frozenset({"log-color", "include-dashboard"})
#: The head runs no monitor of its own when Ray's autoscaler is its sidecar.
NO_MONITOR = "no-monitor"
#: A user command containing this is the user's own ``ray start``: left as written.
RAY_START = "ray start"
ULIMIT = "ulimit -n 65536"


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


#: Accelerators Kubernetes exposes as extended resources, and the name of the
#: custom Ray resource each becomes (as KubeRay names them).
TPU_RESOURCE = "google.com/tpu"
ACCELERATOR_RESOURCES = {
    TPU_RESOURCE: "TPU",
    "aws.amazon.com/neuroncore": "neuron_cores",
    "habana.ai/gaudi": "HPU",
}


def accelerator_resources(container: Mapping[str, Any]) -> dict[str, int]:
    """Custom Ray resources for the accelerators in the container's limits."""
    limits = _resources(container, "limits") or _resources(container, "requests")
    out = {}
    for name, ray_name in ACCELERATOR_RESOURCES.items():
        if name in limits and quantities.parse(limits[name]) > 0:
            out[ray_name] = quantities.ceil_int(limits[name])
    return out


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
    accelerators = accelerator_resources(container)
    if accelerators:
        params["resources"] = json.dumps(accelerators, sort_keys=True, separators=(",", ":"))
    return params


#: A group's ``resources`` keys that are ``ray start`` flags of their own.
_RESOURCE_FLAGS = {"CPU": "num-cpus", "GPU": "num-gpus", "memory": "memory"}


def group_params(
    params: Mapping[str, str],
    resources: Mapping[str, str] | None,
    node_labels: Mapping[str, str] | None,
) -> dict[str, str]:
    """``rayStartParams`` with a group's ``resources`` and ``labels`` applied.

    ``resources`` win over the params: ``CPU``, ``GPU`` and ``memory`` become
    ``--num-cpus``, ``--num-gpus`` and ``--memory`` (quantities, rounded up; memory
    in bytes); every other name is a custom Ray resource in ``--resources``
    (JSON). ``labels`` become ``--labels`` (``key=value``, comma-separated)."""
    out = dict(params)
    custom: dict[str, float] = {}
    for name, value in sorted((resources or {}).items()):
        flag = _RESOURCE_FLAGS.get(name)
        if flag is not None:
            out[flag] = str(quantities.ceil_int(value))
        else:
            amount = float(quantities.parse(value))
            custom[name] = int(amount) if amount.is_integer() else amount
    if custom:
        out["resources"] = json.dumps(custom, sort_keys=True, separators=(",", ":"))
    if node_labels:
        out["labels"] = ",".join(f"{k}={v}" for k, v in sorted(node_labels.items()))
    return out


def head_port(head_params: Mapping[str, Any]) -> str:
    """The GCS port: the head's ``rayStartParams.port``, else Ray's default."""
    return str(head_params.get("port", GCS_PORT))


def port_param(params: Mapping[str, Any], key: str, default: int) -> int:
    """A port among the start params, as a number (``default`` when it is not one)."""
    value = str(params.get(key, default))
    return int(value) if value.isdigit() and 0 < int(value) < 65536 else default


def gcs_port_number(head_params: Mapping[str, Any]) -> int:
    """:func:`head_port` as a number (Ray's default when it is not one)."""
    return port_param(head_params, "port", GCS_PORT)


def effective_params(
    node_type: NodeType,
    user: Mapping[str, str],
    container: Mapping[str, Any],
    autoscaling: bool = False,
) -> dict[str, str]:
    """User params win over derived resources, which win over defaults."""
    params: dict[str, str] = {"metrics-export-port": str(METRICS_PORT)}
    params["dashboard-agent-listen-port"] = str(DASHBOARD_AGENT_PORT)
    if node_type == "head":
        params["dashboard-host"] = "0.0.0.0"
    params.update(resource_params(container))
    params.update({k: str(v) for k, v in user.items()})
    params["block"] = "true"
    if node_type == "head" and autoscaling:
        params[NO_MONITOR] = "true"
    return params


def _is_env_reference(value: str) -> bool:
    name = value[1:]
    return value.startswith("$") and bool(name) and name.replace("_", "a").isalnum()


def render_flags(params: Mapping[str, str]) -> list[str]:
    flags = []
    for key in sorted(params):
        value = params[key]
        boolean = value.lower() in ("true", "false") and key not in _VALUED_BOOLEANS
        if boolean and value.lower() == "true":
            flags.append(f"--{key}")
        elif boolean:
            continue  # "false": the switch is off, so the flag is left out
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
    gcs_address: str,
    autoscaling: bool = False,
) -> str:
    """``ray start --head ...`` or ``ray start --address=<head svc>:<head port> ...``
    (``gcs_address``; a worker's own ``address`` param wins)."""
    params = effective_params(node_type, user_params, container, autoscaling)
    first = ["ray", "start"]
    if node_type == "head":
        first.append("--head")
        params.pop("address", None)
    else:
        first.append(f"--address={params.pop('address', gcs_address)}")
    return " ".join(first + render_flags(params))


def user_command(container: Mapping[str, Any]) -> str:
    """The container's command and args as one shell line, each word padded
    by a space on either side (KubeRay's spacing, kept so both read alike)."""
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    return "".join(f" {w} " for w in words)


def keeps_user_command(container: Mapping[str, Any], overwrite: bool) -> bool:
    """The user's command runs as written: it starts Ray itself (contains
    ``ray start``), or the ``ray.io/overwrite-container-cmd`` annotation says so."""
    return overwrite or RAY_START in user_command(container)


def container_shell(container: Mapping[str, Any], ray_start: str) -> tuple[list[str], list[str]]:
    """The command/args of the Ray container: the user's own command, if any,
    runs first (``<cmd> && ulimit -n 65536; ray start ...``), as in KubeRay."""
    prefix = user_command(container)
    script = f"{ULIMIT}; {ray_start}"
    return ["/bin/bash", "-c", "--"], [f"{prefix} && {script}" if prefix.strip() else script]
