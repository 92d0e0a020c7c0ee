"""Closed-loop HTTP load on loopback: N workers, each sends, waits, repeats.

Bounded in both request count and wall time, so a stuck server cannot keep a
benchmark running.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

# One request: given the client and the request's sequence number, return the
# response (the worker times it).
Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass
class LoadResult:
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed_s: float = 0.0
    bodies: list[Any] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ok = self.statuses.get(200, 0)
        ordered = sorted(self.latencies_s)
        return {
            "concurrency": self.concurrency,
            "requests": len(self.latencies_s) + self.errors,
            "ok": ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "requests_per_s": round(ok / self.elapsed_s, 2) if self.elapsed_s else 0.0,
            "p50_ms": round(percentile(ordered, 50) * 1e3, 2),
            "p99_ms": round(percentile(ordered, 99) * 1e3, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1e3, 2) if ordered else 0.0,
        }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return 0.0
    rank = max(1, round(pct / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


async def run_load(
    base_url: str,
    send: Send,
    concurrency: int,
    total: int,
    max_seconds: float,
    keep_bodies: bool = False,
    stop: Callable[[], bool] | None = None,
) -> LoadResult:
    """``total`` requests from ``concurrency`` workers, for at most ``max_seconds``;
    ``stop()`` (when given) ends it early, between requests."""
    result = LoadResult(concurrency)
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency)
    deadline = time.monotonic() + max_seconds
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            for seq in counter:
                if time.monotonic() > deadline or (stop is not None and stop()):
                    return
                start = time.perf_counter()
                try:
                    response = await send(client, seq)
                except httpx.HTTPError:
                    result.errors += 1
                    continue
                result.latencies_s.append(time.perf_counter() - start)
                result.statuses[response.status_code] = (
                    result.statuses.get(response.status_code, 0) + 1
                )
                if keep_bodies and response.status_code == 200:
                    result.bodies.append(response.json())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - started
    return result
