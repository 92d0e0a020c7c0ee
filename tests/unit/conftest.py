"""Unit-tier fixtures: in-memory stand-ins for the API server and Ray heads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from raykube.adapters.dashboard import DashboardClient
from tests.unit.fakedashboard import FakeServe
from tests.unit.fakekube import FakeKube
from tests.unit.harness import Harness, running


@pytest.fixture()
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture()
def serve() -> FakeServe:
    """Every head's Serve state (edit it to change what the dashboards answer)."""
    return FakeServe()


@pytest.fixture()
async def dashboard(serve: FakeServe) -> AsyncIterator[DashboardClient]:
    """The operator's DashboardClient, answered by ``serve`` through httpx.MockTransport."""
    client = serve.client()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture()
async def harness() -> AsyncIterator[Harness]:
    """Both controllers on FakeKube and FakeServe (tests/unit/harness.py)."""
    async with running() as built:
        yield built
