"""kopf registration: triggers, indices, start-up and clean-up.

Every kopf handler here only *queues* work: the RayCluster itself, or the
cluster named by a child's ``ray.io/cluster`` label; the RayService itself, or
the RayService that owns a changed RayCluster or head pod. Reconciling happens
in the work queues' workers, by level.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import types
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.clients import api as kopf_api

from raykube.adapters import jsonwire, kubeauth
from raykube.adapters.dashboard import DashboardClient
from raykube.adapters.kube import Kube
from raykube.builders import labels as ray_labels
from raykube.decisions import pods, rayservice_view
from raykube.handlers import raycluster, rayservice
from raykube.handlers.crashpoints import CrashPoints
from raykube.handlers.kit import Controller
from raykube.handlers.rayservice_observe import ServiceController
from raykube.handlers.runtime import Runtime
from raykube.handlers.workqueue import Key, WorkQueue
from raykube.settings import Settings

log = logging.getLogger(__name__)

RAY_CHILD = {ray_labels.CLUSTER: kopf.PRESENT}
SERVICE_CHILD = {ray_labels.ORIGINATED_FROM_CRD: ray_labels.RAYSERVICE_KIND}
HEAD_POD = {ray_labels.NODE_TYPE: "head"}


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's watches authenticate as the Kube adapter does (kopf's own logins
    would want a client library, or skip the token file's rotation)."""
    creds = kubeauth.load()
    token = await creds.fresh_token()
    return kopf.ConnectionInfo(
        server=creds.server,
        ca_path=creds.ca_file,
        ca_data=creds.ca_data,
        insecure=creds.insecure,
        certificate_path=creds.cert_file,
        certificate_data=creds.cert_data,
        private_key_path=creds.key_file,
        private_key_data=creds.key_data,
        token=token,
        username=None if token else creds.username,
        password=None if token else creds.password,
        expiration=creds.expires,
    )


def _runtime(memo: Any) -> Runtime:
    rt: Runtime = memo["runtime"]
    return rt


@kopf.index("pods", labels=RAY_CHILD)
async def ray_pods(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """Pods by (namespace, cluster), as slim views: no pod is listed to reconcile."""
    return {(namespace or "", labels[ray_labels.CLUSTER]): pods.view(body)}


@kopf.index("services", labels=RAY_CHILD)
async def ray_services(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    meta = body["metadata"]
    slim = {
        "metadata": {
            "name": meta["name"],
            "annotations": dict(meta.get("annotations", {})),
            "ownerReferences": list(meta.get("ownerReferences") or []),
        },
        "spec": dict(body.get("spec", {})),
    }
    return {(namespace or "", labels[ray_labels.CLUSTER]): slim}


def _owned_child(kind: str, body: kopf.Body) -> dict[str, Any]:
    """What deciding on such a child needs: who controls it, and the hash of
    what was applied."""
    meta = body["metadata"]
    return {
        "kind": kind,
        "metadata": {
            "name": meta["name"],
            "uid": meta.get("uid", ""),
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": list(meta.get("ownerReferences") or []),
        },
    }


@kopf.index("networking.k8s.io", "v1", "ingresses", labels=RAY_CHILD)
async def ray_ingresses(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """Head Ingresses by (namespace, cluster): created, updated and deleted from here."""
    return {(namespace or "", labels[ray_labels.CLUSTER]): _owned_child("Ingress", body)}


@kopf.index("networking.k8s.io", "v1", "networkpolicies", labels=RAY_CHILD)
async def ray_network_policies(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """NetworkPolicies by (namespace, cluster), as for Ingresses."""
    return {(namespace or "", labels[ray_labels.CLUSTER]): _owned_child("NetworkPolicy", body)}


@kopf.index("ray.io", "v1", "rayclusters")
async def ray_clusters(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """The latest RayCluster objects: a reconcile reads here, not from the API server."""
    return {(namespace or "", name): _slim(body)}


@kopf.index("ray.io", "v1", "rayservices")
async def rayservice_objects(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """The latest RayService objects: a reconcile reads here, not from the API server."""
    return {(namespace or "", name): _slim(body)}


def _slim(body: kopf.Body) -> dict[str, Any]:
    """A copy of ``body`` less what nothing reads and what is often its
    largest part: ``metadata.managedFields`` and kubectl's last-applied
    annotation."""
    obj = {k: copy.deepcopy(v) for k, v in body.items() if k != "metadata"}
    meta = {k: copy.deepcopy(v) for k, v in body["metadata"].items() if k != "managedFields"}
    notes = meta.get("annotations")
    if isinstance(notes, dict) and ray_labels.LAST_APPLIED in notes:
        meta["annotations"] = {k: v for k, v in notes.items() if k != ray_labels.LAST_APPLIED}
    obj["metadata"] = meta
    return obj


@kopf.index("services", labels=SERVICE_CHILD)
async def rayservice_services(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """The stable Services of each RayService, slim: name, hash stamp, selector."""
    owner = labels.get(ray_labels.ORIGINATED_FROM_CR)
    if not owner:
        return {}
    meta = body["metadata"]
    slim = {
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "metadata": {
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": list(meta.get("ownerReferences") or []),
        },
        "selector": dict((body.get("spec") or {}).get("selector") or {}),
    }
    return {(namespace or "", owner): slim}


@kopf.index("ray.io", "v1", "rayclusters", labels=SERVICE_CHILD)
async def rayservice_clusters(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """RayClusters of a RayService, by (namespace, RayService), as slim views."""
    owner = labels.get(ray_labels.ORIGINATED_FROM_CR)
    return {(namespace or "", owner): rayservice_view.cluster_view(body)} if owner else {}


class NoEssence(kopf.DiffBaseStorage):
    """No diff-base: kopf builds one (a deep copy of the body) on every watch
    event for on.create/update handlers, and this operator registers none; it
    acts on events and indices by level. Measured: the copies were a tenth of
    the operator's CPU in a burst of RayCluster creations (docs/performance.md)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return EMPTY_ESSENCE

    def fetch(self, *, body: kopf.Body) -> Any:
        return EMPTY_ESSENCE

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


EMPTY_ESSENCE: dict[str, Any] = {}


def decode_watch_events_with_orjson() -> None:
    """kopf decodes each watch event with ``json.loads`` read through its API
    module's global ``json`` (kopf 1.45, pinned): that global becomes
    ``jsonwire``'s stand-in. A kopf without it fails the unit test that
    checks the hookup, not the operator."""
    if isinstance(getattr(kopf_api, "json", None), types.ModuleType):
        setattr(kopf_api, "json", jsonwire.json_module())  # noqa: B010 (not re-exported)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **kwargs: Any) -> None:
    ours: Settings = memo["settings"]
    decode_watch_events_with_orjson()
    settings.persistence.diffbase_storage = NoEssence()
    settings.persistence.finalizer = f"{ours.operator_name}.ray.io/finalizer"
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # kopf's default retries of an unreachable API server wait up to 21 s
    # each (then give up after 54 s in all): after a 30 s outage the watches
    # came back ~20 s late. At most 5 s apart, for five minutes.
    settings.networking.error_backoffs = (1, 1, 2, 3, *([5] * 60))
    kube = await Kube.connect(ours.field_manager)
    rt = Runtime(
        settings=ours,
        kube=kube,
        pods=kwargs["ray_pods"],
        services=kwargs["ray_services"],
        cluster_objects=kwargs["ray_clusters"],
        network_children=(kwargs["ray_ingresses"], kwargs["ray_network_policies"]),
        crashes=CrashPoints.from_settings(ours),
    )
    memo["runtime"] = rt
    dashboard = DashboardClient(ours.dashboard_access, ours.cluster_domain, kube)
    clusters, services = controllers(rt, dashboard, kwargs)
    memo["clusters"], memo["rayservices"] = clusters, services
    for ctl in (clusters, services.ctl):
        rt.tasks += [asyncio.create_task(ctl.queue.worker()) for _ in range(ours.workers)]
        rt.tasks.append(asyncio.create_task(_resync(ctl)))


def controllers(
    rt: Runtime, dashboard: DashboardClient, indices: Mapping[str, Any]
) -> tuple[Controller, ServiceController]:
    """Both controllers, each with its work queue, on the indices registered here
    (kopf passes them by handler name; the unit tests pass in-memory ones)."""

    async def run_cluster(key: Key) -> float | None:
        return await raycluster.reconcile(clusters, key)

    async def run_service(key: Key) -> float | None:
        return await rayservice.reconcile(services, key)

    clusters = raycluster.controller(rt, WorkQueue(run_cluster, raycluster.KIND))
    services = rayservice.controller(
        rt,
        WorkQueue(run_service, rayservice.KIND),
        dashboard,
        clusters=indices["rayservice_clusters"],
        objects=indices["rayservice_objects"],
        services=indices["rayservice_services"],
    )
    return clusters, services


async def _resync(ctl: Controller) -> None:
    """Safety net: every known object is reconciled at least this often."""
    while True:
        await asyncio.sleep(ctl.rt.settings.resync_seconds)
        for key in ctl.states:
            ctl.queue.add(key)


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    rt = memo.get("runtime")
    if rt is None:
        return
    for task in rt.tasks:
        task.cancel()
    for task in rt.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    services = memo.get("rayservices")
    if services is not None:
        await services.dashboard.close()
    await rt.kube.close()


def _clusters(memo: Any) -> Controller:
    ctl: Controller = memo["clusters"]
    ctl.rt.indexed.set()
    return ctl


def _services(memo: Any) -> ServiceController:
    sc: ServiceController = memo["rayservices"]
    sc.rt.indexed.set()
    return sc


@kopf.on.event("ray.io", "v1", "rayclusters")
async def raycluster_event(
    type: str, namespace: str | None, name: str, meta: Any, memo: Any, **_: Any
) -> None:
    ctl, key = _clusters(memo), (namespace or "", name)
    if type == "DELETED":
        ctl.forget(key)
        return
    record = ctl.seen(key)
    # The status write a pass ends with comes back as an event; a pass for it
    # would find nothing to do (a quarter of a create burst's passes).
    if record.own_version and meta.get("resourceVersion") == record.own_version:
        record.own_write = None  # the cache shows the write now
        return
    ctl.queue.add(key)


#: How long a RayCluster's pass waits after the first event of one of its
#: children, so that the events of the same moment make one pass.
CHILD_EVENT_WINDOW_SECONDS = 0.2


@kopf.on.event("pods", labels=RAY_CHILD)
@kopf.on.event("services", labels=RAY_CHILD)
@kopf.on.event("networking.k8s.io", "v1", "ingresses", labels=RAY_CHILD)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=RAY_CHILD)
async def child_event(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A child labelled for a cluster changed or went away: that cluster looks again."""
    ctl, key = _clusters(memo), (namespace or "", labels[ray_labels.CLUSTER])
    # A cluster never seen is gone (its pods' deletions: thousands of events
    # for a pass each that finds nothing) or not listed yet (its own event
    # queues it then).
    if key in ctl.states:
        # A starting cluster's pods send ~16 events in a second or two; one
        # pass a short moment after the first sees what the next ones would.
        ctl.queue.add_after(key, CHILD_EVENT_WINDOW_SECONDS)


@kopf.on.event("ray.io", "v1", "rayservices")
async def rayservice_event(
    type: str, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    sc, key = _services(memo), (namespace or "", name)
    if type == "DELETED":
        sc.ctl.forget(key)
        return
    sc.ctl.seen(key)
    sc.ctl.queue.add(key)


@kopf.on.event("ray.io", "v1", "rayclusters", labels=SERVICE_CHILD)
async def rayservice_cluster_event(
    type: str, namespace: str | None, name: str, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A RayService's cluster changed: its owner looks again."""
    owner = labels.get(ray_labels.ORIGINATED_FROM_CR)
    if not owner:
        return
    sc, ns = _services(memo), namespace or ""
    if type == "DELETED":
        sc.owners.pop((ns, name), None)
    else:
        sc.owners[(ns, name)] = (ns, owner)
    sc.ctl.queue.add((ns, owner))


@kopf.on.event("services", labels=SERVICE_CHILD)
async def rayservice_service_event(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A stable Service changed or went away: its RayService looks again."""
    owner = labels.get(ray_labels.ORIGINATED_FROM_CR)
    if owner:
        _services(memo).ctl.queue.add((namespace or "", owner))


@kopf.on.event("pods", labels=HEAD_POD)
async def rayservice_head_event(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A head pod of a RayService's cluster changed (ready, serve label)."""
    sc = memo.get("rayservices")
    if sc is None:
        return
    owner = sc.owners.get((namespace or "", labels.get(ray_labels.CLUSTER, "")))
    if owner is not None:
        sc.ctl.queue.add(owner)
