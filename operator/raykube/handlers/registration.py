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
from collections.abc import Mapping
from typing import Any

import kopf

from raykube.adapters.dashboard import DashboardClient
from raykube.adapters.kube import Kube
from raykube.builders import labels as ray_labels
from raykube.decisions import pods, rayservice_view
from raykube.handlers import raycluster, rayservice
from raykube.handlers.runtime import Runtime
from raykube.handlers.workqueue import Key, WorkQueue
from raykube.settings import Settings

log = logging.getLogger(__name__)

RAY_CHILD = {ray_labels.CLUSTER: kopf.PRESENT}
SERVICE_CHILD = {ray_labels.ORIGINATED_FROM_CRD: ray_labels.RAYSERVICE_KIND}
HEAD_POD = {ray_labels.NODE_TYPE: "head"}


def _runtime(memo: Any) -> Runtime:
    rt: Runtime = memo["runtime"]
    return rt


@kopf.index("pods", labels=RAY_CHILD)
def ray_pods(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """Pods by (namespace, cluster), as slim views: no pod is listed to reconcile."""
    return {(namespace or "", labels[ray_labels.CLUSTER]): pods.view(body)}


@kopf.index("services", labels=RAY_CHILD)
def ray_services(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    meta = body["metadata"]
    slim = {
        "metadata": {"name": meta["name"], "annotations": dict(meta.get("annotations", {}))},
        "spec": dict(body.get("spec", {})),
    }
    return {(namespace or "", labels[ray_labels.CLUSTER]): slim}


@kopf.index("ray.io", "v1", "rayclusters")
def ray_clusters(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """The latest RayCluster objects: a reconcile reads here, not from the API server."""
    return {(namespace or "", name): copy.deepcopy(dict(body))}


@kopf.index("ray.io", "v1", "rayclusters", labels=SERVICE_CHILD)
def rayservice_clusters(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    """RayClusters of a RayService, by (namespace, RayService), as slim views."""
    owner = labels.get(ray_labels.ORIGINATED_FROM_CR)
    return {(namespace or "", owner): rayservice_view.cluster_view(body)} if owner else {}


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **kwargs: Any) -> None:
    ours: Settings = memo["settings"]
    settings.persistence.finalizer = f"{ours.operator_name}.ray.io/finalizer"
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    kube = await Kube.connect(ours.field_manager)
    holder: dict[str, Runtime] = {}

    async def run_cluster(key: Key) -> float | None:
        return await raycluster.reconcile(holder["rt"], key)

    rt = Runtime(
        settings=ours,
        kube=kube,
        pods=kwargs["ray_pods"],
        services=kwargs["ray_services"],
        cluster_objects=kwargs["ray_clusters"],
        clusters=WorkQueue(run_cluster, "RayCluster"),
    )
    holder["rt"] = rt
    memo["runtime"] = rt
    rt.tasks += [asyncio.create_task(rt.clusters.worker()) for _ in range(ours.workers)]
    rt.tasks.append(asyncio.create_task(_resync(rt)))
    rt.tasks += _start_rayservices(rt, memo, kwargs["rayservice_clusters"])


def _start_rayservices(rt: Runtime, memo: Any, clusters: Any) -> list[asyncio.Task[None]]:
    """The RayService controller: its own queue and workers, sharing the clients."""
    cfg = rt.settings
    dashboard = DashboardClient(cfg.dashboard_access, cfg.cluster_domain, rt.kube)
    holder: dict[str, rayservice.ServiceRuntime] = {}

    async def run_service(key: Key) -> float | None:
        return await rayservice.reconcile(holder["srt"], key)

    queue = WorkQueue(run_service, "RayService")
    srt = rayservice.ServiceRuntime(rt=rt, dashboard=dashboard, clusters=clusters, queue=queue)
    holder["srt"] = memo["rayservices"] = srt
    rt.services_queue = queue
    tasks = [asyncio.create_task(queue.worker()) for _ in range(cfg.workers)]
    return [*tasks, asyncio.create_task(_resync_services(srt))]


async def _resync_services(srt: rayservice.ServiceRuntime) -> None:
    while True:
        await asyncio.sleep(srt.rt.settings.resync_seconds)
        for key in list(srt.known):
            srt.queue.add(key)


async def _resync(rt: Runtime) -> None:
    """Safety net: every known object is reconciled at least this often."""
    while True:
        await asyncio.sleep(rt.settings.resync_seconds)
        for key in list(rt.known_clusters):
            rt.clusters.add(key)


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


@kopf.on.event("ray.io", "v1", "rayclusters")
async def raycluster_event(
    type: str, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    rt = _runtime(memo)
    rt.indexed.set()
    key = (namespace or "", name)
    if type == "DELETED":
        rt.known_clusters.discard(key)
        rt.applied.pop((key, "rbac"), None)
        rt.expectations.forget(key)
        rt.clusters.forget(key)
        return
    rt.known_clusters.add(key)
    rt.clusters.add(key)


@kopf.on.event("pods", labels=RAY_CHILD)
async def pod_event(namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
    rt = _runtime(memo)
    rt.indexed.set()
    rt.clusters.add((namespace or "", labels[ray_labels.CLUSTER]))


@kopf.on.event("services", labels=RAY_CHILD)
async def service_event(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    rt = _runtime(memo)
    rt.indexed.set()
    rt.clusters.add((namespace or "", labels[ray_labels.CLUSTER]))


def _services(memo: Any) -> rayservice.ServiceRuntime:
    srt: rayservice.ServiceRuntime = memo["rayservices"]
    return srt


@kopf.on.event("ray.io", "v1", "rayservices")
async def rayservice_event(
    type: str, namespace: str | None, name: str, memo: Any, **_: Any
) -> None:
    _runtime(memo).indexed.set()
    srt, key = _services(memo), (namespace or "", name)
    if type == "DELETED":
        srt.known.discard(key)
        srt.forget(key)
        return
    srt.known.add(key)
    srt.queue.add(key)


@kopf.on.event("ray.io", "v1", "rayclusters", labels=SERVICE_CHILD)
async def rayservice_cluster_event(
    type: str, namespace: str | None, name: str, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A RayService's cluster changed: its owner looks again."""
    owner = labels.get(ray_labels.ORIGINATED_FROM_CR)
    if not owner:
        return
    srt, ns = _services(memo), namespace or ""
    if type == "DELETED":
        srt.owners.pop((ns, name), None)
    else:
        srt.owners[(ns, name)] = (ns, owner)
    srt.queue.add((ns, owner))


@kopf.on.event("pods", labels=HEAD_POD)
async def rayservice_head_event(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A head pod of a RayService's cluster changed (ready, serve label)."""
    srt = memo.get("rayservices")
    cluster = labels.get(ray_labels.CLUSTER, "")
    owner = srt.owners.get((namespace or "", cluster)) if srt else None
    if srt is not None and owner is not None:
        srt.queue.add(owner)
