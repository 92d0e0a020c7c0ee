"""Seed 001's load-shedding scenario against a real Serve proxy.

SlowDeployment: max_ongoing_requests=2, max_queued_requests=2, 2 s per request.
Two requests run, two wait in the proxy's queue, the next five get 503 at
once, and the first four finish with 200.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import ray  # noqa: F401  (a missing Ray must fail this tier, not skip it)

pytestmark = pytest.mark.ray


async def test_seed_scenario_status_codes(slow_url: str) -> None:
    async with httpx.AsyncClient(base_url=slow_url, timeout=30) as client:

        async def request() -> tuple[int, float]:
            start = time.monotonic()
            response = await client.get("/slow/")
            return response.status_code, time.monotonic() - start

        running = [asyncio.create_task(request()) for _ in range(2)]
        await asyncio.sleep(1.0)  # both reach the replica
        assert not any(t.done() for t in running)
        queued = [asyncio.create_task(request()) for _ in range(2)]
        await asyncio.sleep(0.3)  # both sit in the proxy's queue
        assert not any(t.done() for t in queued)

        rejected = await asyncio.gather(*(request() for _ in range(5)))
        assert [code for code, _ in rejected] == [503] * 5
        # "At once": well before the first running request could finish.
        assert max(elapsed for _, elapsed in rejected) < 1.0
        assert not any(t.done() for t in running + queued)

        accepted = await asyncio.gather(*running, *queued)
        assert [code for code, _ in accepted] == [200] * 4
