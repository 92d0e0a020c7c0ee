"""What the RayService decisions look at: slim, immutable views (pure).

A RayCluster owned by a RayService is read into a ``ClusterView`` (its
annotations are the RayService's memory, see ``builders.labels``); the
Serve state reported by a head's dashboard into a ``ServeSnapshot``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from raykube.builders import auth, labels, owners
from raykube.models.clusterspec import AuthOptions
from raykube.timefmt import format_time, parse_time

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Our annotations are a few hundred bytes; anyone may edit them, so longer
#: text (or deeper JSON than Python's parser allows) reads as no record.
MAX_NOTE_BYTES = 8192
MAX_INT32 = 2**31 - 1


def json_object(text: str | None) -> dict[str, Any]:
    """A JSON object from one of our annotations, or {} for anything else."""
    if not text or len(text) > MAX_NOTE_BYTES:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class HealthRecord:
    """Since when a serving cluster looks unhealthy; kept on the cluster."""

    #: The dashboard (or the head pod) could not be reached since then.
    unreachable_since: datetime | None = None
    #: Some application is DEPLOY_FAILED or UNHEALTHY since then.
    failing_since: datetime | None = None
    #: While failing_since is set: every application RUNNING since then.
    running_since: datetime | None = None

    def to_json(self) -> str:
        items = {
            "unreachableSince": self.unreachable_since,
            "failingSince": self.failing_since,
            "runningSince": self.running_since,
        }
        return json.dumps({k: format_time(v) for k, v in items.items() if v}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> HealthRecord:
        data = json_object(text)
        return cls(
            unreachable_since=parse_time(data.get("unreachableSince")),
            failing_since=parse_time(data.get("failingSince")),
            running_since=parse_time(data.get("runningSince")),
        )


@dataclass(frozen=True)
class GroupSize:
    """The sizing fields of one worker group, the ones updated in place."""

    name: str
    replicas: int
    min_replicas: int
    max_replicas: int
    suspend: bool = False

    def values(self) -> list[int]:
        return [self.replicas, self.min_replicas, self.max_replicas]


@dataclass(frozen=True)
class ClusterView:
    """A RayCluster that belongs to a RayService, as the decisions see it."""

    name: str
    uid: str = ""
    #: UID of the RayService that controls it (membership is by UID, not label).
    owner_uid: str = ""
    created: datetime = EPOCH
    terminating: bool = False
    config_hash: str = ""
    serve_hash: str = ""
    serve_submitted_at: datetime | None = None
    serve_healthy_hash: str = ""
    #: The serve config hash this cluster was rolled back from, and why.
    rolled_back: str = ""
    rollback_cause: str = ""
    delete_after: datetime | None = None
    #: Incremental upgrades: the target_capacity its head accepted, the traffic
    #: percent meant for it and when that last changed (None: not recorded).
    target_capacity: int | None = None
    traffic: int | None = None
    traffic_at: datetime | None = None
    health: HealthRecord = field(default_factory=HealthRecord)
    #: Group name -> [replicas, min, max] last copied from the RayService.
    applied_scaling: Mapping[str, list[int]] = field(default_factory=dict)
    #: The groups in the cluster's spec, in order (for targeted patches).
    groups: tuple[GroupSize, ...] = ()
    autoscaling: bool = False
    #: The cluster's own ``spec.suspend`` (not the RayService's).
    suspended: bool = False
    #: The head container's declared ports (the stable Services copy them).
    head_ports: tuple[Mapping[str, Any], ...] = ()
    #: The RayCluster's own status, copied into the RayService's.
    status: Mapping[str, Any] = field(default_factory=dict)
    #: Address overrides from annotations (honoured only when enabled).
    dashboard_url: str = ""
    serve_url: str = ""
    #: The cluster's annotations, as read.
    notes: Mapping[str, str] = field(default_factory=dict)
    #: The Secret its Ray processes take their token from ("": no token
    #: authentication), and whether the operator generated it (then the
    #: cluster owns it; else it is the user's ``authOptions.secretName``).
    token_secret: str = ""
    token_generated: bool = False

    def with_(self, **changes: Any) -> ClusterView:
        return replace(self, **changes)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _groups(spec: Mapping[str, Any]) -> tuple[GroupSize, ...]:
    return tuple(
        GroupSize(
            name=str(g.get("groupName", "")),
            replicas=_int(g.get("replicas"), 0),
            min_replicas=_int(g.get("minReplicas"), 0),
            max_replicas=_int(g.get("maxReplicas"), 2**31 - 1),
            suspend=bool(g.get("suspend")),
        )
        for g in spec.get("workerGroupSpecs") or []
    )


def _head_ports(spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    template = (spec.get("headGroupSpec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or [{}]
    return tuple(containers[0].get("ports") or [])


def _scaling(text: str | None) -> dict[str, list[int]]:
    """Group name -> [replicas, min, max]; entries of any other shape are dropped."""
    out: dict[str, list[int]] = {}
    for name, sizes in json_object(text).items():
        if (
            isinstance(sizes, list)
            and len(sizes) == 3
            and all(type(v) is int and 0 <= v <= MAX_INT32 for v in sizes)
        ):
            out[name] = sizes
    return out


def _percent(text: str | None) -> int | None:
    """A percentage we recorded; anything else reads as no record."""
    if text is None or not text.isdigit() or len(text) > 3:
        return None
    value = int(text)
    return value if value <= 100 else None


def _from_notes(notes: Mapping[str, str]) -> dict[str, Any]:
    """The view's fields that our annotations on the cluster carry."""
    return {
        "notes": dict(notes),
        "config_hash": notes.get(labels.CLUSTER_CONFIG_HASH, ""),
        "serve_hash": notes.get(labels.SERVE_CONFIG_HASH, ""),
        "serve_submitted_at": parse_time(notes.get(labels.SERVE_CONFIG_SUBMITTED_AT)),
        "serve_healthy_hash": notes.get(labels.SERVE_CONFIG_HEALTHY_HASH, ""),
        "rolled_back": notes.get(labels.SERVE_CONFIG_ROLLED_BACK, ""),
        "rollback_cause": notes.get(labels.SERVE_CONFIG_ROLLBACK_CAUSE, ""),
        "delete_after": parse_time(notes.get(labels.DELETE_AFTER)),
        "target_capacity": _percent(notes.get(labels.TARGET_CAPACITY)),
        "traffic": _percent(notes.get(labels.TRAFFIC_PERCENT)),
        "traffic_at": parse_time(notes.get(labels.TRAFFIC_MIGRATED_AT)),
        "health": HealthRecord.from_json(notes.get(labels.SERVE_HEALTH)),
        "applied_scaling": _scaling(notes.get(labels.APPLIED_SCALING)),
        "dashboard_url": notes.get(labels.DASHBOARD_URL, ""),
        "serve_url": notes.get(labels.SERVE_URL, ""),
    }


def cluster_view(body: Mapping[str, Any]) -> ClusterView:
    """Read a RayCluster object (as the API server returns it)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return ClusterView(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        owner_uid=owners.controller_uid(meta),
        created=parse_time(meta.get("creationTimestamp")) or EPOCH,
        terminating=bool(meta.get("deletionTimestamp")),
        groups=_groups(spec),
        autoscaling=bool(spec.get("enableInTreeAutoscaling")),
        suspended=bool(spec.get("suspend")),
        head_ports=_head_ports(spec),
        status=dict(body.get("status") or {}),
        **_token_secret(str(meta.get("name", "")), spec.get("authOptions")),
        **_from_notes(meta.get("annotations") or {}),
    )


def _token_secret(name: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        return {}
    try:
        found = auth.token_secret(name, AuthOptions.model_validate(raw))
    except ValidationError:
        return {}
    return {"token_secret": found.name, "token_generated": found.generated} if found else {}


def with_notes(view: ClusterView, written: Mapping[str, str | None]) -> ClusterView:
    """``view`` as it will look once annotations we wrote (``None``: removed)
    reach the watch cache: a pass that runs before they do must not act on
    the old values (submit the same config twice, schedule a deletion again)."""
    notes = {**view.notes, **written}
    merged = {k: v for k, v in notes.items() if v is not None}
    return replace(view, **_from_notes(merged))


def shows(view: ClusterView, written: Mapping[str, str | None]) -> bool:
    """The cache already shows every annotation in ``written``."""
    return all(view.notes.get(k) == v for k, v in written.items())


# --- Serve, as a head's dashboard reports it --------------------------------------


@dataclass(frozen=True)
class DeploymentView:
    status: str
    message: str = ""
    #: Replicas in state RUNNING, and how many Serve wants (None: not reported).
    running: int | None = None
    target: int | None = None


@dataclass(frozen=True)
class AppView:
    status: str
    message: str = ""
    deployments: Mapping[str, DeploymentView] = field(default_factory=dict)


@dataclass(frozen=True)
class ServeSnapshot:
    """One look at a cluster's Serve applications; ``reachable`` False when the
    dashboard did not answer (``error`` says how)."""

    reachable: bool
    apps: Mapping[str, AppView] = field(default_factory=dict)
    error: str = ""
    #: The head's Serve proxy answered ``/-/healthz``.
    proxy_healthy: bool = False

    def running(self, names: Iterable[str]) -> bool:
        """Every application of ``names`` is there and RUNNING."""
        return all(self.apps.get(n) and self.apps[n].status == "RUNNING" for n in names)


UNREACHABLE = ServeSnapshot(reachable=False, error="not polled")


def _text(value: Any) -> str:
    # Ray reports strings; anything else is not a status, and str() of a nested
    # answer would only copy it.
    return value if isinstance(value, str) else ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _deployment_view(dep: Mapping[str, Any]) -> DeploymentView:
    replicas = dep.get("replicas")
    running = (
        sum(1 for r in replicas if isinstance(r, Mapping) and r.get("state") == "RUNNING")
        if isinstance(replicas, list)
        else None
    )
    return DeploymentView(
        _text(dep.get("status")),
        _text(dep.get("message")),
        running=running,
        target=_count(dep.get("target_num_replicas")),
    )


def _app_view(app: Mapping[str, Any]) -> AppView:
    deployments = {
        str(name): _deployment_view(dep)
        for name, dep in _mapping(app.get("deployments")).items()
        if isinstance(dep, Mapping)
    }
    return AppView(_text(app.get("status")), _text(app.get("message")), deployments)


def snapshot(details: Any, proxy_healthy: bool) -> ServeSnapshot:
    """A ``GET /api/serve/applications/?api_type=declarative`` answer, read.

    The answer is whatever JSON the head sent: one that is not an object says
    nothing about the applications, so it counts as no answer; entries of the
    wrong shape inside it are skipped.
    """
    if not isinstance(details, Mapping):
        return ServeSnapshot(reachable=False, error="the dashboard's answer is not a JSON object")
    apps = {
        str(name): _app_view(app)
        for name, app in _mapping(details.get("applications")).items()
        if isinstance(app, Mapping)
    }
    return ServeSnapshot(reachable=True, apps=apps, proxy_healthy=proxy_healthy)
