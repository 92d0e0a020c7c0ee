"""Load shedding: a slow deployment with a small, bounded intake.

Reproduces seed 001's scenario: with `max_ongoing_requests=2` and
`max_queued_requests=2`, two requests run on the replica, two wait in the
proxy's queue, and every further request is answered 503 at once instead of
waiting; the four accepted ones finish with 200.

`user_config.delay_s` sets how long each request takes (emulated inference).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve
from starlette.requests import Request

DEFAULT_DELAY_S = 2.0


class Slow:
    def __init__(self) -> None:
        self._delay_s = DEFAULT_DELAY_S

    def reconfigure(self, config: dict[str, Any]) -> None:
        delay = config.get("delay_s", DEFAULT_DELAY_S)
        if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay <= 60:
            raise ValueError(f"delay_s must be between 0 and 60 seconds, got {delay!r}")
        self._delay_s = float(delay)

    async def __call__(self, request: Request) -> str:
        # asyncio.sleep, not time.sleep: the two admitted requests really run
        # side by side, as they would on a replica doing async inference.
        await asyncio.sleep(self._delay_s)
        return "Hello!"


SlowDeployment = serve.deployment(
    name="SlowDeployment",
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=2,
    max_queued_requests=2,
    user_config={"delay_s": DEFAULT_DELAY_S},
)(Slow)

app = SlowDeployment.bind()
