"""Head and worker pods of a RayCluster (pure).

The pod is the user's template with what Ray on Kubernetes needs added:
labels, owner reference, the ``ray start`` command, environment, default
ports, probes, ``/dev/shm`` for the object store and, on the head, the
autoscaler sidecar (sharing Ray's log directory). What the user wrote wins
wherever it does not break the operator's own contract (labels).
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raykube.builders import auth, gcs_storage, hashing, labels, owners, probes
from raykube.builders.autoscaler import autoscaler_container, autoscaler_v2
from raykube.builders.env import (
    gcs_fault_tolerant,
    ray_env,
    redis_fault_tolerant,
    storage_namespace,
)
from raykube.builders.labels import NodeType
from raykube.builders.quantities import parse
from raykube.builders.ray_start import (
    container_shell,
    gcs_port_number,
    group_params,
    head_port,
    keeps_user_command,
    port_param,
    ray_start_command,
)
from raykube.models.base import dump
from raykube.models.clusterspec import WorkerGroupSpec
from raykube.models.raycluster import RayCluster
from raykube.ports import (
    DASHBOARD_AGENT_PORT,
    DASHBOARD_PORT,
    DEFAULT_WORKER_PORTS,
    container_ports,
    head_defaults,
    named_port,
)

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet

#: The object store's shared memory: an in-memory emptyDir at /dev/shm, as
#: large as the Ray container's memory limit (else request), unless the user
#: mounts /dev/shm or moves the store (``plasma-directory``).
SHM_VOLUME, SHM_PATH = "shared-mem", "/dev/shm"
PLASMA_DIRECTORY = "plasma-directory"
#: Ray's logs, shared by the head's Ray container and the autoscaler sidecar
#: (Ray's autoscaler writes events there that the head reads).
LOGS_VOLUME, LOGS_PATH = "ray-logs", "/tmp/ray"


def random_suffix() -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


@dataclass(frozen=True)
class BuildContext:
    """What a builder needs besides the RayCluster itself."""

    created_by: str = "raykube"
    cluster_domain: str = "cluster.local"
    #: The ClusterRole an autoscaling cluster's RoleBinding grants its autoscaler.
    autoscaler_cluster_role: str = "raykube-ray-autoscaler"
    #: Workers of a RayService are ready only when their Serve proxy is.
    serve_readiness: bool = False


#: Fields of a worker group that size it (the autoscaler writes them) rather
#: than shape its pods; with tolerations and scheduling gates (Kueue adds them
#: to a queued cluster) and the suspend switches, they are left out of
#: ``pod_template_hash``, as KubeRay leaves them out of its upgrade hash.
_SIZING = ("replicas", "minReplicas", "maxReplicas", "scaleStrategy", "suspend")
_SCHEDULING = ("tolerations", "schedulingGates")


def _shaping(group: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in group.items() if k not in _SIZING}
    template = out.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        spec = {k: v for k, v in template["spec"].items() if k not in _SCHEDULING}
        out["template"] = {**template, "spec": spec}
    return out


def pod_template_hash(cluster: RayCluster) -> str:
    """The digest of what the cluster's pods are built from: the spec without
    what only sizes or schedules them, and without upgradeStrategy itself.
    Stamped on every pod (``labels.POD_TEMPLATE_HASH``); Recreate compares it."""
    spec = dump(cluster.spec)
    for key in ("suspend", "upgradeStrategy"):
        spec.pop(key, None)
    spec["headGroupSpec"] = _shaping(spec.get("headGroupSpec") or {})
    spec["workerGroupSpecs"] = [_shaping(g) for g in spec.get("workerGroupSpecs") or []]
    return hashing.digest(spec)


def head_service_fqdn(cluster: RayCluster, ctx: BuildContext) -> str:
    svc = labels.head_service_name(cluster.metadata.name)
    return f"{svc}.{cluster.metadata.namespace}.svc.{ctx.cluster_domain}"


def head_gcs_address(cluster: RayCluster, ctx: BuildContext) -> str:
    """Where workers join: the head Service at the head's GCS port."""
    port = head_port(cluster.spec.head_group_spec.ray_start_params)
    return f"{head_service_fqdn(cluster, ctx)}:{port}"


def _with_probes(
    container: dict[str, Any],
    node_type: NodeType,
    ray_version: str | None,
    params: Mapping[str, Any],
    ctx: BuildContext,
) -> None:
    ports = {
        "agent_port": port_param(params, "dashboard-agent-listen-port", DASHBOARD_AGENT_PORT),
        "dashboard_port": port_param(params, "dashboard-port", DASHBOARD_PORT),
    }
    container.setdefault(
        "livenessProbe", probes.ray_probe(node_type, ray_version, liveness=True, **ports)
    )
    if node_type == "worker" and ctx.serve_readiness:
        serve_port = named_port(container.get("ports") or [], "serve")
        container.setdefault(
            "readinessProbe", probes.serve_readiness_probe(serve_port, ports["agent_port"])
        )
    else:
        container.setdefault(
            "readinessProbe", probes.ray_probe(node_type, ray_version, liveness=False, **ports)
        )


def _memory(container: Mapping[str, Any]) -> Any:
    resources = container.get("resources") or {}
    for kind in ("limits", "requests"):
        value = (resources.get(kind) or {}).get("memory")
        if value is not None and parse(value) > 0:
            return value
    return None


def add_empty_dir(
    spec: dict[str, Any], container: dict[str, Any], name: str, path: str, memory: bool = False
) -> None:
    """Mount an emptyDir ``name`` at ``path`` in ``container``, unless something
    is mounted there already; the volume is added unless the pod has one of that
    name. In memory, it is as large as the container's memory limit (else request)."""
    mounts = container.get("volumeMounts") or []
    volumes = spec.get("volumes") or []
    if not isinstance(mounts, list) or not isinstance(volumes, list):
        return  # a shape the API server refuses anyway (the dry run reports it)
    if any(isinstance(m, dict) and m.get("mountPath") == path for m in mounts):
        return
    spec["volumes"] = volumes
    if not any(isinstance(v, dict) and v.get("name") == name for v in volumes):
        empty_dir: dict[str, Any] = {}
        size = _memory(container) if memory else None
        if memory:
            empty_dir["medium"] = "Memory"
        if size is not None:
            empty_dir["sizeLimit"] = str(size)
        volumes.append({"name": name, "emptyDir": empty_dir})
    container["volumeMounts"] = [*mounts, {"name": name, "mountPath": path}]


def _pod_metadata(
    template: Mapping[str, Any], name: str, cluster: RayCluster, own: dict[str, str]
) -> dict[str, Any]:
    meta = template.get("metadata") or {}
    return {
        "name": name,
        "namespace": cluster.metadata.namespace,
        # Ours are applied last: user labels merge in but cannot override them.
        "labels": {**(meta.get("labels") or {}), **own},
        "annotations": dict(meta.get("annotations") or {}),
        "ownerReferences": [owners.of_raycluster(cluster)],
    }


def _overwrite_command(cluster: RayCluster, template: Mapping[str, Any]) -> bool:
    """``ray.io/overwrite-container-cmd: "true"`` on the RayCluster or the pod template."""
    template_annotations = (template.get("metadata") or {}).get("annotations") or {}
    return any(
        str(a.get(labels.OVERWRITE_CONTAINER_CMD, "")).lower() == "true"
        for a in (cluster.metadata.annotations, template_annotations)
    )


def _build_pod(
    cluster: RayCluster,
    template: Mapping[str, Any],
    node_type: NodeType,
    group: str,
    params: Mapping[str, str],
    name: str,
    ctx: BuildContext,
    node_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    tpl = copy.deepcopy(dict(template))
    spec: dict[str, Any] = tpl.get("spec") or {}
    container: dict[str, Any] = spec["containers"][0]
    autoscaling = bool(cluster.spec.enable_in_tree_autoscaling)
    start = ray_start_command(
        node_type, params, container, head_gcs_address(cluster, ctx), autoscaling
    )
    if not keeps_user_command(container, _overwrite_command(cluster, template)):
        container["command"], container["args"] = container_shell(container, start)
    head_params = cluster.spec.head_group_spec.ray_start_params
    container["env"] = ray_env(
        cluster,
        node_type,
        container,
        start,
        ctx.cluster_domain,
        head_port(head_params),
        serve=ctx.serve_readiness,
    )
    auth.add_auth_env(container, auth.token_secret_of(cluster))
    defaults = head_defaults(gcs_port_number(head_params)) if node_type == "head" else None
    container["ports"] = container_ports(container, defaults or DEFAULT_WORKER_PORTS)
    _with_probes(container, node_type, cluster.spec.ray_version, params, ctx)
    if PLASMA_DIRECTORY not in params:
        add_empty_dir(spec, container, SHM_VOLUME, SHM_PATH, memory=True)
    # Autoscaler v2 replaces a Ray node that exited instead of restarting it in place.
    spec.setdefault("restartPolicy", "Never" if autoscaler_v2(cluster) else "Always")
    # The group's Ray node labels are pod labels too; ours still win.
    own = {
        **(node_labels or {}),
        **labels.pod_labels(cluster.metadata.name, node_type, group, ctx.created_by),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _pod_metadata(tpl, name, cluster, own),
        "spec": spec,
    }


def build_head_pod(
    cluster: RayCluster,
    ctx: BuildContext,
    suffix: str | None = None,
    template_hash: str | None = None,
) -> dict[str, Any]:
    head = cluster.spec.head_group_spec
    name = labels.head_pod_prefix(cluster.metadata.name) + (suffix or random_suffix())
    params = group_params(head.ray_start_params, head.resources, head.labels)
    ft = cluster.spec.gcs_fault_tolerance_options
    # The shell expands them from the env vars, so no secret lands in the spec.
    if ft is not None and ft.redis_username is not None:
        params.setdefault("redis-username", "$REDIS_USERNAME")
    if ft is not None and ft.redis_password is not None:
        params.setdefault("redis-password", "$REDIS_PASSWORD")
    pod = _build_pod(
        cluster, head.template, "head", labels.HEAD_GROUP, params, name, ctx, head.labels
    )
    annotations = pod["metadata"]["annotations"]
    annotations[labels.POD_TEMPLATE_HASH] = template_hash or pod_template_hash(cluster)
    fault_tolerant = gcs_fault_tolerant(cluster)
    annotations[labels.FT_ENABLED] = "true" if fault_tolerant else "false"
    if redis_fault_tolerant(cluster):
        annotations[labels.EXTERNAL_STORAGE_NAMESPACE] = storage_namespace(cluster)
    gcs_storage.add_head_volume(cluster, pod["spec"], pod["spec"]["containers"][0])
    if cluster.spec.enable_in_tree_autoscaling:
        spec = pod["spec"]
        sidecar = autoscaler_container(cluster)
        auth.add_auth_env(sidecar, auth.token_secret_of(cluster))
        spec["containers"].append(sidecar)
        spec.setdefault("serviceAccountName", labels.autoscaler_account_name(cluster.metadata.name))
        add_empty_dir(spec, spec["containers"][0], LOGS_VOLUME, LOGS_PATH)
        add_empty_dir(spec, sidecar, LOGS_VOLUME, LOGS_PATH)
    return pod


@dataclass(frozen=True)
class ReplicaPlace:
    """Where a worker stands in its group: its replica's index and, for a host
    of a multi-host replica (a slice), the slice's name and its host index."""

    index: int = 0
    name: str | None = None
    host: int = 0


def build_worker_pod(
    cluster: RayCluster,
    group: WorkerGroupSpec,
    ctx: BuildContext,
    suffix: str | None = None,
    place: ReplicaPlace = ReplicaPlace(),
    template_hash: str | None = None,
) -> dict[str, Any]:
    prefix = labels.worker_pod_prefix(cluster.metadata.name, group.group_name)
    pod = _build_pod(
        cluster,
        group.template,
        "worker",
        group.group_name,
        group_params(group.ray_start_params, group.resources, group.labels),
        prefix + (suffix or random_suffix()),
        ctx,
        group.labels,
    )
    meta = pod["metadata"]
    meta["labels"].update(labels.replica_labels(place.index, place.name, place.host))
    meta["annotations"][labels.POD_TEMPLATE_HASH] = template_hash or pod_template_hash(cluster)
    return pod
