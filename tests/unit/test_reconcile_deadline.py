"""A reconcile pass has a deadline: a Ray head that never answers cannot hold a
worker; the pass is counted as an error and the work queue retries it with
back-off."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from raykube import metrics
from raykube.adapters.dashboard import DashboardClient
from raykube.settings import Settings
from tests.unit.harness import NS, running
from tests.unit.test_handlers_rayservice import created

DEADLINE = 0.3


async def _never(request: httpx.Request) -> httpx.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _errors(reason: str) -> float:
    return float(metrics.RECONCILE_ERRORS.labels("RayService", reason)._value.get())


async def test_a_pass_stuck_on_a_silent_head_ends_at_its_deadline_and_is_retried(
    manifests: Path,
) -> None:
    async with running(Settings(reconcile_timeout_seconds=DEADLINE)) as h:
        name, cluster = await created(h, manifests)
        await h.cluster_pass(cluster)
        (head,) = h.pods(cluster, "head")
        h.kube.set_pod_ready(NS, head["metadata"]["name"])
        # The head's dashboard accepts the connection and never answers (its own
        # call deadline is far longer than the pass's).
        silent = DashboardClient(transport=httpx.MockTransport(_never), deadline=3600)
        h.services.dashboard = silent
        queue = h.services.ctl.queue
        errors = _errors("ReconcileTimeout")
        worker = asyncio.create_task(queue.worker())
        started = time.monotonic()
        try:
            queue.add((NS, name))
            for _ in range(200):  # 10 s at most: never, without a deadline
                if (NS, name) in queue._failures:
                    break
                await asyncio.sleep(0.05)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await silent.close()
        assert time.monotonic() - started < DEADLINE + 5  # generous: a loaded machine
        assert _errors("ReconcileTimeout") == errors + 1
        # Retried later, with back-off, and the worker is free for other objects.
        assert queue._failures[(NS, name)] == 1 and (NS, name) in queue._timers
