"""Observe one RayService: its clusters, where its traffic goes, and what the
heads' dashboards say, as the pure ``decisions.rayservice.Observed``.

Everything comes from the watch caches (kopf indices) except the dashboards,
a cluster named in the status that the cache does not show yet, and a token
Secret: a steady RayService sends no request to the API server. The last good
serve config comes from its Secret's cache (or, written by an older version,
an annotation on the RayService).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from raykube import ports
from raykube.adapters.dashboard import DashboardClient, DashboardError, Head
from raykube.adapters.kube import RAYCLUSTERS, SECRETS, ApiError
from raykube.builders import labels, owners
from raykube.decisions import rayservice_health as health
from raykube.decisions.pods import PodView
from raykube.decisions.rayservice import Observed, incremental, roles_of
from raykube.decisions.rayservice_config import ServeGoal
from raykube.decisions.rayservice_upgrade import cluster_config_hash
from raykube.decisions.rayservice_view import (
    ClusterView,
    ServeSnapshot,
    cluster_view,
    shows,
    snapshot,
    with_notes,
)
from raykube.handlers.kit import Controller
from raykube.handlers.runtime import IndexLike, Runtime
from raykube.handlers.state import ObjectState
from raykube.handlers.workqueue import Key
from raykube.models.rayservice import RayService

#: Two reconciles this close reuse one dashboard answer (events come in bursts).
MIN_POLL_INTERVAL = 1.0


@dataclass
class ServiceController:
    """The RayService controller: the shared kit plus its own caches and client."""

    ctl: Controller
    dashboard: DashboardClient
    #: Owned RayClusters as ``ClusterView`` by (namespace, RayService name).
    clusters: IndexLike
    #: RayService objects by (namespace, name), as the watch last delivered them.
    objects: IndexLike
    #: The stable Services of each RayService, slim, by (namespace, RayService name).
    services: IndexLike
    #: (namespace, cluster) -> (namespace, RayService): routes head pod events.
    owners: dict[Key, Key] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ctl.on_forget.append(self._drop_routes)

    @property
    def rt(self) -> Runtime:
        return self.ctl.rt

    def _drop_routes(self, key: Key) -> None:
        for cluster in [c for c, owner in self.owners.items() if owner == key]:
            del self.owners[cluster]

    def cached(self, key: Key) -> dict[str, Any] | None:
        if key not in self.objects:
            return None
        return next(iter(self.objects[key]), None)

    def stable_service(self, key: Key, name: str) -> Mapping[str, Any] | None:
        if key not in self.services:
            return None
        return next((s for s in self.services[key] if s["name"] == name), None)


@dataclass
class Pass:
    """One reconcile: the object as read, and what happened so far."""

    sc: ServiceController
    key: Key
    obj: dict[str, Any]
    rs: RayService
    goal: ServeGoal
    now: datetime
    record: ObjectState
    created: ClusterView | None = None

    @property
    def rt(self) -> Runtime:
        return self.sc.rt

    def event(self, kind: str, reason: str, message: str) -> None:
        self.sc.ctl.event(self.obj, kind, reason, message)


async def observe(p: Pass) -> Observed:
    rs, rt = p.rs, p.rt
    ns = p.key[0]
    goal_hash = cluster_config_hash(rs.spec.ray_cluster_config)
    traffic = _traffic(p)
    clusters = await _owned_clusters(p)
    roles = roles_of(rs, clusters, traffic, goal_hash)
    members = [c for c in (roles.active, roles.pending) if c is not None]
    heads = {c.name: h for c in members if (h := head_pod(rt, ns, c)) is not None}
    polls = (_poll(p, c, c.name in heads and heads[c.name].ray_up) for c in members)
    snaps = await asyncio.gather(*polls)
    live = {c.name for c in clusters if not c.terminating}
    gone = bool(traffic) and traffic not in live
    lingering = gone and (
        any(c.name == traffic for c in clusters) or bool(rt.pods_of((ns, traffic), None))
    )
    notes = rs.metadata.annotations
    split = _split_selector(p)
    # Incremental upgrades choose which pods of each cluster the serve Service
    # selects (and, after one, take the label off again).
    pods = (
        {c.name: rt.pods_of((ns, c.name), c.uid) for c in clusters}
        if incremental(rs) or split
        else {}
    )
    return Observed(
        service=rs,
        goal=p.goal,
        goal_hash=goal_hash,
        roles=roles,
        now=p.now,
        serve={c.name: s for c, s in zip(members, snaps, strict=True)},
        heads=heads,
        active_gone=gone,
        lingering=lingering,
        replacements=health.Replacements.from_json(notes.get(labels.REPLACEMENTS)),
        rejected={name: h for name, (h, _) in p.record.rejected.items()},
        last_good=await last_good(p),
        pods=pods,
        split_selector=split,
    )


async def last_good(p: Pass) -> str:
    """The last good serve config: what its Secret holds (read once per process:
    Secrets are not watched, so the operator needs no list or watch on them),
    else the annotation an older version wrote."""
    if p.record.last_good is None:
        await read_last_good(p)
    return p.record.last_good or p.rs.metadata.annotations.get(labels.LAST_GOOD_SERVE_CONFIG, "")


async def read_last_good(p: Pass) -> None:
    name = labels.last_good_serve_config_name(p.rs.metadata.name)
    try:
        secret = await p.rt.kube.get(SECRETS, p.key[0], name)
    except ApiError as err:
        if not err.forbidden:
            raise
        # Secrets not granted (features.rayServiceAuthSecrets off): nothing is
        # read; the write says so once.
        secret = None
    ours = secret is not None and owners.owned_by(secret, p.rs.metadata.uid)
    p.record.last_good_taken = secret is not None and not ours
    p.record.last_good = secret_text(secret) if secret is not None and ours else ""


def secret_text(secret: Mapping[str, Any]) -> str:
    raw = (secret.get("data") or {}).get(labels.LAST_GOOD_SERVE_CONFIG_KEY, "")
    try:
        return base64.b64decode(raw, validate=True).decode() if isinstance(raw, str) else ""
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _traffic(p: Pass) -> str:
    """The cluster the serve Service selects now ("" before the first switch)."""
    svc = p.sc.stable_service(p.key, labels.serve_service_name(p.rs))
    selector = (svc or {}).get("selector") or {}
    return str(selector.get(labels.CLUSTER, ""))


def _split_selector(p: Pass) -> bool:
    """The serve Service selects the pods labelled for this RayService (a split)."""
    svc = p.sc.stable_service(p.key, labels.serve_service_name(p.rs))
    return labels.SERVE_TRAFFIC in ((svc or {}).get("selector") or {})


async def _owned_clusters(p: Pass) -> list[ClusterView]:
    """Owned clusters from the index; a name the status holds but the index does
    not yet show (created a moment ago) is read from the API server."""
    index = p.sc.clusters
    found: dict[str, ClusterView] = {}
    if p.key in index:
        found = {c.name: c for c in index[p.key] if c.owner_uid == p.rs.metadata.uid}
    status = p.rs.status
    named = (
        [
            status.active_service_status.ray_cluster_name,
            status.pending_service_status.ray_cluster_name,
        ]
        if status
        else []
    )
    for name in filter(None, named):
        if name not in found:
            body = await p.rt.kube.get(RAYCLUSTERS, p.key[0], name)
            if body is not None and owners.owned_by(body, p.rs.metadata.uid):
                found[name] = cluster_view(body)
    return [_as_written(p.record, view) for view in found.values()]


def _as_written(record: ObjectState, view: ClusterView) -> ClusterView:
    written = record.written.get(view.name)
    if not written:
        return view
    if shows(view, written):
        del record.written[view.name]
        return view
    return with_notes(view, written)


def head_pod(rt: Runtime, ns: str, cluster: ClusterView) -> PodView | None:
    pods = rt.pods_of((ns, cluster.name), cluster.uid)
    heads = [p for p in pods if p.node_type == "head" and not p.terminating]
    return heads[0] if heads else None


def head_address(p: Pass, cluster: ClusterView, token: str = "") -> Head:
    honour = p.rt.settings.dashboard_url_annotations
    return Head(
        namespace=p.key[0],
        service=labels.head_service_name(cluster.name),
        dashboard_port=ports.named_port(cluster.head_ports, "dashboard"),
        serve_port=ports.named_port(cluster.head_ports, "serve"),
        dashboard_url=cluster.dashboard_url if honour else "",
        serve_url=cluster.serve_url if honour else "",
        token=token,
    )


async def token(p: Pass, cluster: ClusterView) -> str:
    """The token a cluster with token authentication expects on its dashboard
    ("" without one), read once per cluster and Secret (a failed poll reads
    it again). Only two Secrets are read: the one generated for the cluster
    (owned by it) and a user's that its owner labelled as willing to be read."""
    if not cluster.token_secret:
        return ""
    cached = p.record.tokens.get(cluster.name)
    if cached is not None and cached[0] == cluster.token_secret:
        return cached[1]
    found = await _read_token(p, cluster)
    p.record.tokens[cluster.name] = (cluster.token_secret, found)
    return found


async def _read_token(p: Pass, cluster: ClusterView) -> str:
    name = cluster.token_secret
    try:
        secret = await p.rt.kube.get(SECRETS, p.key[0], name)
    except ApiError as err:
        if not err.forbidden:
            raise
        message = (
            f"Secret {p.key[0]}/{name} (the token of RayCluster {cluster.name}) may not be "
            "read by the operator (features.rayServiceAuthSecrets); its dashboard is called "
            "without the token"
        )
        p.sc.ctl.warn_once(p.key, p.obj, "AuthSecretNotReadable", message)
        return ""
    if secret is None:
        return ""
    if cluster.token_generated:
        # One of that name the cluster does not own holds nobody's token for
        # it (its RayCluster creates no pod while it is in the way).
        if not owners.owned_by(secret, cluster.uid):
            return ""
    elif ((secret.get("metadata") or {}).get("labels") or {}).get(
        labels.AUTH_SECRET_OPT_IN
    ) != "true":
        message = (
            f"Secret {p.key[0]}/{name} is not labelled "
            f"{labels.AUTH_SECRET_OPT_IN}=true; its auth_token is not used"
        )
        p.sc.ctl.warn_once(p.key, p.obj, "AuthSecretNotOptedIn", message)
        return ""
    raw = (secret.get("data") or {}).get(labels.AUTH_TOKEN_KEY, "")
    try:
        return base64.b64decode(raw, validate=True).decode() if isinstance(raw, str) else ""
    except (binascii.Error, UnicodeDecodeError):
        return ""


async def _applications(dashboard: DashboardClient, head: Head) -> Any:
    """The applications' answer, or the DashboardError that came instead."""
    try:
        return await dashboard.get_applications(head)
    except DashboardError as err:
        return err


async def _poll(p: Pass, cluster: ClusterView, head_up: bool) -> ServeSnapshot:
    if not head_up:
        return ServeSnapshot(reachable=False, error="head pod not running")
    cached = p.record.polls.get(cluster.name)
    if cached and time.monotonic() - cached[0] < MIN_POLL_INTERVAL:
        return cached[1]
    head = head_address(p, cluster, await token(p, cluster))
    dashboard = p.sc.dashboard
    # The proxy's answer counts even when the dashboard's does not come: a
    # head that serves but whose dashboard the operator cannot reach is not
    # replaced for it (``decisions.rayservice.assess``).
    details, healthy = await asyncio.gather(
        _applications(dashboard, head), dashboard.proxy_healthy(head)
    )
    if isinstance(details, DashboardError):
        snap = ServeSnapshot(reachable=False, error=str(details), proxy_healthy=healthy)
        p.record.tokens.pop(cluster.name, None)  # a Secret labelled since, or replaced
    else:
        snap = snapshot(details, healthy)
    p.record.polls[cluster.name] = (time.monotonic(), snap)
    return snap


def forget_clusters(record: ObjectState, names: Iterable[str]) -> None:
    """Cached answers about clusters that are gone."""
    for name in names:
        record.polls.pop(name, None)
        record.rejected.pop(name, None)
        record.written.pop(name, None)
        record.tokens.pop(name, None)
