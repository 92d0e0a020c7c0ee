"""The retrying client against real failing endpoints.

A tiny threaded HTTP server on loopback plays a scripted sequence of answers
(503 a few times, slow, 404...), and Serve's own load shedding supplies real
503 back-pressure.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import ray  # noqa: F401  (a missing Ray must fail this tier, not skip it)

from raykube_serve.client import AsyncServeClient, RetriesExhausted, RetryPolicy, ServeClient
from raykube_serve.localhead import free_port

pytestmark = pytest.mark.ray

FAST = RetryPolicy(
    initial_backoff_s=0.05, multiplier=4, jitter=0.5, per_try_timeout_s=2, deadline_s=10
)


@dataclass
class Script:
    """Answers to play in order; the last one repeats."""

    answers: Sequence[tuple[int, float, dict[str, str]]] = field(default_factory=list)
    hits: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[int, float, dict[str, str]]:
        with self.lock:
            self.hits.append(time.monotonic())
            index = min(len(self.hits), len(self.answers)) - 1
            return self.answers[index]

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.hits, self.hits[1:], strict=False)]


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            status, delay, headers = script.next()
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            time.sleep(delay)
            body = b'{"ok": true}' if status == 200 else b'{"error": "scripted"}'
            try:
                self.send_response(status)
                for key, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on this try

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_retries_503_with_growing_jittered_backoff(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(503, 0, {})] * 3 + [(200, 0, {})]
    with ServeClient(url, FAST, rng=random.Random(7)) as client:
        assert client.post_json("/predict", {"x": 1}) == {"ok": True}
    assert len(script.hits) == 4
    gaps = script.gaps()
    nominal = [0.05, 0.2, 0.8]
    for gap, expected in zip(gaps, nominal, strict=True):
        # Jitter 0.5: each sleep lies in [nominal/2, nominal] (+ request time).
        assert expected * 0.5 - 0.01 <= gap <= expected + 0.25, gaps
    assert gaps[2] > gaps[0]


def test_gives_up_after_max_attempts_with_the_last_response(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(502, 0, {})]
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, deadline_s=10)
    with ServeClient(url, policy) as client, pytest.raises(RetriesExhausted) as caught:
        client.request("GET", "/")
    assert caught.value.attempts == 3 and len(script.hits) == 3
    assert caught.value.response is not None and caught.value.response.status_code == 502


def test_client_errors_are_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(404, 0, {})]
    with ServeClient(url, FAST) as client:
        assert client.request("GET", "/missing").status_code == 404
    assert len(script.hits) == 1


def test_per_try_timeout_and_overall_deadline(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(200, 3.0, {})]  # every answer is too slow
    policy = RetryPolicy(initial_backoff_s=0.05, per_try_timeout_s=0.3, deadline_s=1.2)
    start = time.monotonic()
    with ServeClient(url, policy) as client, pytest.raises(RetriesExhausted) as caught:
        client.request("GET", "/")
    elapsed = time.monotonic() - start
    assert isinstance(caught.value.error, httpx.TimeoutException)
    assert 2 <= caught.value.attempts <= 4
    assert elapsed < 1.2 + 0.5  # the deadline holds, not attempts x timeout


def test_retry_after_header_is_honoured(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(503, 0, {"retry-after": "0.5"}), (200, 0, {})]
    with ServeClient(url, FAST) as client:
        assert client.request("GET", "/").status_code == 200
    assert script.gaps()[0] >= 0.5


def test_connection_refused_is_retried_then_reported() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, deadline_s=5)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with ServeClient(url, policy) as client, pytest.raises(RetriesExhausted) as caught:
        client.request("GET", "/")
    assert caught.value.attempts == 3
    assert isinstance(caught.value.error, httpx.ConnectError)


async def test_async_client_retries_503(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(503, 0, {}), (503, 0, {}), (200, 0, {})]
    async with AsyncServeClient(url, FAST) as client:
        assert await client.post_json("/predict", [1]) == {"ok": True}
    assert len(script.hits) == 3


async def test_rides_out_serve_load_shedding(slow_url: str) -> None:
    """Saturate SlowDeployment (2 running + 2 queued), then call through it."""
    statuses: list[int] = []

    async def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    policy = RetryPolicy(initial_backoff_s=0.25, multiplier=2, max_attempts=12, deadline_s=20)
    async with httpx.AsyncClient(base_url=slow_url, timeout=30) as plain:
        # Staggered as in the seed: a burst of four at once races for the
        # queue (requests count as queued until a replica takes them).
        load = [asyncio.create_task(plain.get("/slow/")) for _ in range(2)]
        await asyncio.sleep(1.0)
        load += [asyncio.create_task(plain.get("/slow/")) for _ in range(2)]
        await asyncio.sleep(0.3)
        # Saturated: two running, two queued, so a plain caller is shed.
        assert (await plain.get("/slow/")).status_code == 503
        async with AsyncServeClient(slow_url, policy, event_hooks={"response": [record]}) as client:
            response = await client.request("GET", "/slow/")
        assert response.status_code == 200
        assert statuses[0] == 503 and statuses[-1] == 200
        assert {r.status_code for r in await asyncio.gather(*load)} == {200}
