"""A slim, immutable view of a Ray pod: what decisions need, nothing more.

The operator keeps these in memory for every Ray pod it watches, so the view
is small on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raykube.builders import labels, owners


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    namespace: str
    cluster: str
    node_type: str
    group: str
    phase: str
    ready: bool
    terminating: bool
    created: str
    pod_ip: str = ""
    node_name: str = ""
    serve_label: bool = False
    #: The RayService whose serve Service selects it during an incremental upgrade.
    serve_traffic: str = ""
    #: The Ray container exited and the pod will not restart it.
    dead: bool = False
    reason: str = ""
    #: When the Ray container's current (or, while it waits, last) run started.
    ray_started: str = ""
    #: The Ray container exited and waits to be restarted (back-off).
    backing_off: bool = False
    #: Since when the pod is Ready ("" when it is not).
    ready_since: str = ""
    #: The UID of the pod's controller (its RayCluster).
    owner_uid: str = ""
    #: A worker's replica index in its group (-1: none, or not a number).
    replica_index: int = -1
    #: The slice a host of a multi-host replica belongs to ("" otherwise).
    replica_name: str = ""
    #: A host's index within its slice (-1: none, or not a number).
    host_index: int = -1
    #: The digest of the spec the pod was built from ("" when not stamped).
    template_hash: str = ""

    @property
    def running(self) -> bool:
        return self.phase == "Running" and not self.terminating

    @property
    def ray_up(self) -> bool:
        """Its Ray container runs (not waiting to restart): its dashboard may
        answer seconds before the readiness probe, whose first look comes
        10 s after the start, makes the pod Ready."""
        return self.running and not self.backing_off and not self.dead


def _ready(status: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def _dead(spec: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[bool, str]:
    phase = status.get("phase", "")
    if phase in ("Failed", "Succeeded"):
        return True, status.get("reason", phase)
    if spec.get("restartPolicy") == "Never":
        for cs in status.get("containerStatuses", [])[:1]:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated:
                return True, terminated.get("reason", "Terminated")
    return False, ""


def _ray_run(status: Mapping[str, Any]) -> tuple[str, bool]:
    """When the Ray container's run started, and whether it now waits to restart."""
    for cs in status.get("containerStatuses", [])[:1]:
        state = cs.get("state") or {}
        running = state.get("running") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        started = str(running.get("startedAt") or last.get("startedAt") or "")
        return started, bool(state.get("waiting")) and bool(last)
    return "", False


def _ready_since(status: Mapping[str, Any]) -> str:
    for c in status.get("conditions", []):
        if c.get("type") == "Ready" and c.get("status") == "True":
            return str(c.get("lastTransitionTime") or "")
    return ""


def _index(value: Any) -> int:
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else -1


def view(pod: Mapping[str, Any]) -> PodView:
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    lbl = meta.get("labels", {})
    dead, reason = _dead(spec, status)
    started, backing_off = _ray_run(status)
    return PodView(
        name=meta["name"],
        uid=meta.get("uid", ""),
        namespace=meta.get("namespace", ""),
        cluster=lbl.get(labels.CLUSTER, ""),
        node_type=lbl.get(labels.NODE_TYPE, ""),
        group=lbl.get(labels.GROUP, ""),
        phase=status.get("phase", "Pending"),
        ready=_ready(status),
        terminating=bool(meta.get("deletionTimestamp")),
        created=meta.get("creationTimestamp") or "",
        pod_ip=status.get("podIP", ""),
        node_name=spec.get("nodeName", ""),
        serve_label=lbl.get(labels.SERVE) == "true",
        serve_traffic=lbl.get(labels.SERVE_TRAFFIC, ""),
        dead=dead,
        reason=reason,
        ray_started=started,
        backing_off=backing_off,
        ready_since=_ready_since(status),
        owner_uid=owners.controller_uid(meta),
        replica_index=_index(lbl.get(labels.REPLICA_INDEX)),
        replica_name=str(lbl.get(labels.REPLICA_NAME) or ""),
        host_index=_index(lbl.get(labels.HOST_INDEX)),
        template_hash=str((meta.get("annotations") or {}).get(labels.POD_TEMPLATE_HASH) or ""),
    )
