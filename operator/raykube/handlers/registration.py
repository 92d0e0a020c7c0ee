"""kopf registration: triggers, indices, start-up and clean-up.

Every kopf handler here only *queues* work: the RayCluster itself, or the
cluster named by a child's ``ray.io/cluster`` label. Reconciling happens in
the work queue's workers, by level.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from raykube.adapters.kube import Kube
from raykube.builders import labels as ray_labels
from raykube.decisions import pods
from raykube.handlers import raycluster
from raykube.handlers.runtime import Runtime
from raykube.handlers.workqueue import Key, WorkQueue
from raykube.settings import Settings

log = logging.getLogger(__name__)

RAY_CHILD = {ray_labels.CLUSTER: kopf.PRESENT}


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
