"""The operator's two controllers on in-memory fakes, for handler-pass tests.

Every piece of construction for those tests is here, mirroring
``handlers.registration.start``: the same ``Runtime``, controllers and work
queues, with ``FakeKube`` for the API server, the operator's own kopf index
functions over it (``fakekube.operator_indices``) for the watch caches, and
``FakeServe`` behind the real ``DashboardClient``. No worker runs: a test
calls one pass at a time and looks at what it sent; the queues only record
what a pass asked to be run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raykube.adapters.kube import PODS, RAYCLUSTERS, RAYSERVICES, SERVICES
from raykube.builders import labels
from raykube.handlers import raycluster, rayservice, registration
from raykube.handlers.crashpoints import CrashPoints
from raykube.handlers.kit import Controller
from raykube.handlers.rayservice_observe import ServiceController
from raykube.handlers.runtime import Runtime
from raykube.settings import Settings
from tests.unit.fakedashboard import FakeServe, HeadState
from tests.unit.fakekube import FakeIndex, FakeKube, operator_indices

NS = "ns"


@dataclass
class Harness:
    kube: FakeKube
    serve: FakeServe
    indices: dict[str, FakeIndex]
    rt: Runtime
    clusters: Controller
    services: ServiceController

    # --- passes ----------------------------------------------------------------------------

    async def cluster_pass(self, name: str) -> float | None:
        return await raycluster.reconcile(self.clusters, (NS, name))

    async def service_pass(self, name: str) -> float | None:
        return await rayservice.reconcile(self.services, (NS, name))

    async def events_posted(self) -> None:
        """Let the background posters send every event emitted so far."""
        # A poster takes an event and records it in the same step (FakeKube
        # never suspends), so an empty queue means all were posted.
        queue = self.rt._events
        for _ in range(10_000):
            if queue is None or queue.empty():
                return
            await asyncio.sleep(0)
        raise AssertionError("the event posters never drained their queue")

    def queued(self, controller: Controller, name: str) -> bool:
        """Whether a pass asked for ``name`` to run again now (not on a timer)."""
        return (NS, name) in controller.queue._queued

    # --- the world -------------------------------------------------------------------------

    def pods(self, cluster: str, node_type: str = "") -> list[dict[str, Any]]:
        found = [
            p
            for p in self.kube.all(PODS, NS)
            if p["metadata"]["labels"].get(labels.CLUSTER) == cluster
            and (not node_type or p["metadata"]["labels"].get(labels.NODE_TYPE) == node_type)
        ]
        return found

    def all_pods_ready(self, cluster: str) -> None:
        for index, pod in enumerate(self.pods(cluster), start=1):
            self.kube.set_pod_ready(NS, pod["metadata"]["name"], ip=f"10.0.0.{index}")

    def cluster(self, name: str) -> dict[str, Any]:
        found = self.kube.stored(RAYCLUSTERS, NS, name)
        assert found is not None, f"no RayCluster {name}"
        return found

    def rayservice(self, name: str) -> dict[str, Any]:
        found = self.kube.stored(RAYSERVICES, NS, name)
        assert found is not None, f"no RayService {name}"
        return found

    def service(self, name: str) -> dict[str, Any] | None:
        return self.kube.stored(SERVICES, NS, name)

    def head(self, cluster: str) -> HeadState:
        """The Serve state of ``cluster``'s head, as the dashboard client reaches it."""
        return self.serve.head(NS, labels.head_service_name(cluster))


def load(manifests: Path, file: str, kind: str) -> dict[str, Any]:
    """The first ``kind`` document of a shared manifest, placed in the test namespace."""
    docs = [d for d in yaml.safe_load_all((manifests / file).read_text()) if d]
    doc: dict[str, Any] = copy.deepcopy(next(d for d in docs if d.get("kind") == kind))
    doc["metadata"]["namespace"] = NS
    return doc


@asynccontextmanager
async def running(
    settings: Settings | None = None,
    *,
    kube: FakeKube | None = None,
    serve: FakeServe | None = None,
    crashes: CrashPoints | None = None,
) -> AsyncIterator[Harness]:
    """Both controllers as ``registration.start`` builds them, on fakes; their
    background tasks (event posters) are stopped on the way out. Given an
    existing ``kube`` and ``serve``, it is a restarted operator: nothing but
    what they hold carries over."""
    settings = settings or Settings()
    kube = kube or FakeKube(field_manager=settings.field_manager)
    serve = serve or FakeServe()
    indices = operator_indices(kube)
    rt = Runtime(
        settings=settings,
        kube=kube,  # type: ignore[arg-type]  # FakeKube has Kube's methods (test_fakekube)
        pods=indices["ray_pods"],
        services=indices["ray_services"],
        cluster_objects=indices["ray_clusters"],
        network_children=(indices["ray_ingresses"], indices["ray_network_policies"]),
        crashes=crashes,
    )
    rt.indexed.set()  # the fake indices are complete from the start

    dashboard = serve.client(
        access=settings.dashboard_access, cluster_domain=settings.cluster_domain
    )
    clusters, services = registration.controllers(rt, dashboard, indices)
    harness = Harness(kube, serve, indices, rt, clusters, services)
    try:
        yield harness
    finally:
        for task in rt.tasks:
            task.cancel()
        for task in rt.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in (clusters.queue, services.ctl.queue):
            for key in list(queue._timers):
                queue.forget(key)
        await dashboard.close()
