"""Fixtures of the ray tier: one real Ray head for the module, the operator's client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from raykube.adapters.dashboard import DashboardClient, Head, Retry
from raykube_serve.localhead import LocalRayHead
from tests.rayheads import start_head


@pytest.fixture(scope="module")
def ray_head() -> Iterator[LocalRayHead]:
    head = start_head(num_cpus=3)
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture()
async def client() -> AsyncIterator[DashboardClient]:
    # Long reads: a fresh head on this busy machine can be slow to answer.
    slow = httpx.Timeout(60.0, connect=5.0)
    c = DashboardClient("service-dns", retry=Retry(attempts=3, first_delay=0.1), timeout=slow)
    try:
        yield c
    finally:
        await c.close()


def head_of(ray_head: LocalRayHead, token: str = "") -> Head:
    """How the operator addresses this head when told its URLs (as in the tests)."""
    return Head(
        namespace="ns",
        service="rc-head-svc",
        dashboard_url=ray_head.dashboard_url,
        serve_url=ray_head.serve_url,
        token=token,
    )
