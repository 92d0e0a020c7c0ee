"""A Ray head cannot hold the operator: answers are read up to a byte cap and
every dashboard call, retries included, ends by its deadline.

The heads here are ``httpx.MockTransport`` handlers whose bodies are async
generators: endless, dripping, or never starting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from raykube.adapters.dashboard import (
    APPS_BODY_LIMIT,
    DashboardClient,
    DashboardError,
    Head,
    Retry,
)
from raykube.adapters.kube import Kube
from tests.unit.fakekube import FakeKube

HEAD = Head(namespace="ns", service="rc-head-svc")
CHUNK = 64 * 1024


class Endless(httpx.AsyncByteStream):
    """A body that never ends; counts the chunks it was asked for."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.sent += 1
            yield b"x" * CHUNK


def client(handler: Any, *, deadline: float = 5.0, attempts: int = 3) -> DashboardClient:
    return DashboardClient(
        transport=httpx.MockTransport(handler),
        retry=Retry(attempts=attempts, first_delay=0.0),
        deadline=deadline,
    )


async def test_an_endless_body_is_cut_at_the_cap_and_not_retried() -> None:
    body = Endless()
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, stream=body)

    dashboard = client(handler)
    try:
        with pytest.raises(DashboardError) as info:
            await dashboard.get_applications(HEAD)
    finally:
        await dashboard.close()
    assert "larger than" in info.value.message
    # Read no further than the cap (and one chunk past it), and only once: a
    # head answering too much answers too much again.
    assert body.sent * CHUNK <= APPS_BODY_LIMIT + 2 * CHUNK
    assert calls == 1


async def test_a_dripping_body_ends_at_the_deadline() -> None:
    """httpx's read timeout is per chunk: one chunk every 0.2 s never trips it."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Endless(delay=0.2))

    dashboard = client(handler, deadline=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DashboardError) as info:
            await dashboard.get_applications(HEAD)
    finally:
        await dashboard.close()
    assert time.monotonic() - started < 5.0  # generous: a loaded CI machine is slow
    assert info.value.status == 0 and "0.5" in info.value.message


async def test_a_silent_head_ends_at_the_deadline_with_its_retries() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3.0)
        return httpx.Response(503, text="starting")

    # Three tries of 3 s each would take 9 s; the call's deadline is 0.5 s (and
    # the health check's 2 s).
    dashboard = client(handler, deadline=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DashboardError):
            await dashboard.put_applications(HEAD, {"applications": []})
        assert not await dashboard.proxy_healthy(HEAD)
    finally:
        await dashboard.close()
    assert time.monotonic() - started < 5.0


async def test_through_the_api_server_proxy_the_same_cap_holds() -> None:
    kube = FakeKube()
    kube.proxy_handler = lambda *_: (200, b"x" * (APPS_BODY_LIMIT + 10))
    dashboard = DashboardClient("apiserver-proxy", proxy=kube)
    try:
        with pytest.raises(DashboardError) as info:
            await dashboard.get_applications(HEAD)
    finally:
        await dashboard.close()
    assert "larger than" in info.value.message


class _Content:
    """aiohttp's StreamReader, as far as ``Kube.proxy`` reads it."""

    def __init__(self, body: Endless) -> None:
        self.body = body

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        async for chunk in self.body:
            yield chunk


class _Response:
    def __init__(self, body: Endless) -> None:
        self.status = 200
        self.content = _Content(body)
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _Api:
    """kubeauth.Transport, as far as ``Kube.proxy`` uses it."""

    def __init__(self, response: _Response) -> None:
        self.response = response

    async def request(self, *args: Any, **kwargs: Any) -> _Response:
        return self.response


async def test_the_kube_proxy_reads_no_further_than_its_limit() -> None:
    body = Endless()
    response = _Response(body)
    kube = Kube(_Api(response), "raykube")  # type: ignore[arg-type]
    status, data = await kube.proxy("GET", "ns", "svc", 8265, "/", limit=1_000_000)
    assert status == 200
    assert len(data) == 1_000_001  # one byte past the limit says "too large"
    assert body.sent * CHUNK <= 1_000_000 + 2 * CHUNK
    assert response.closed  # the rest of the body is never read


async def test_json_deeper_than_the_parser_allows_is_no_answer() -> None:
    """A head can answer anything: JSON nested past Python's recursion limit is
    a DashboardError like any answer that is not JSON, not a crash of the pass."""
    deep = b"[" * 200_000 + b"]" * 200_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=deep)

    dashboard = client(handler, attempts=1)
    try:
        with pytest.raises(DashboardError, match="not JSON"):
            await dashboard.get_applications(HEAD)
    finally:
        await dashboard.close()
