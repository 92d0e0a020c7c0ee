"""A production HTTP client for Ray Serve applications behind a RayService.

Seed 001 asks callers for retries, exponential backoff and timeouts instead
of a bare `requests.get`. This client does exactly that:

- retries on the 5xx statuses the seed lists (500-504; 503 is also what Serve
  answers when `max_queued_requests` sheds load) and on connection errors and
  timeouts;
- waits `initial_backoff_s * multiplier**n` before retry n (0.1, 0.4, 1.6, 6.4 s
  with the defaults, as in the seed), capped at `max_backoff_s`, with random
  jitter so that many shed clients do not come back in lock-step;
- gives each try its own timeout and the whole call an overall deadline: no
  try starts, and no backoff sleeps, past the deadline.

    with ServeClient("http://rayservice-sample-serve-svc:8000") as client:
        price = client.post_json("/fruit/", ["MANGO", 2])

Serve requests should be idempotent for retries to be safe; a 503 from load
shedding is always safe to retry because the request never reached a replica.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

SEED_RETRY_STATUSES = frozenset({500, 501, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # the first try and five retries, as in the seed
    initial_backoff_s: float = 0.1
    multiplier: float = 4.0
    max_backoff_s: float = 10.0
    # Fraction of each backoff that is random: 0.5 sleeps between half and
    # all of the nominal delay.
    jitter: float = 0.5
    per_try_timeout_s: float = 10.0
    deadline_s: float = 30.0
    retry_statuses: frozenset[int] = field(default=SEED_RETRY_STATUSES)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        if min(self.initial_backoff_s, self.per_try_timeout_s, self.deadline_s) <= 0:
            raise ValueError("backoff, per-try timeout and deadline must be positive")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Sleep before retry number `retry` (0 for the first retry)."""
        nominal = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**retry)
        return nominal * (1.0 - self.jitter * rng.random())


class RetriesExhausted(Exception):
    """No try succeeded within the attempts and the deadline."""

    def __init__(self, attempts: int, response: httpx.Response | None, error: Exception | None):
        self.attempts = attempts
        self.response = response
        self.error = error
        last = f"status {response.status_code}" if response is not None else repr(error)
        super().__init__(f"gave up after {attempts} attempt(s); last: {last}")


@dataclass
class _Attempts:
    """Shared bookkeeping of one call: which try, how much time is left."""

    policy: RetryPolicy
    rng: random.Random
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    response: httpx.Response | None = None
    error: Exception | None = None

    def remaining(self) -> float:
        return self.policy.deadline_s - (time.monotonic() - self.started)

    def tries(self) -> Iterator[float]:
        """Yields the timeout for each try; the caller sleeps `pause()` between."""
        while self.attempts < self.policy.max_attempts and self.remaining() > 0:
            self.attempts += 1
            yield min(self.policy.per_try_timeout_s, self.remaining())

    def retriable(self, response: httpx.Response) -> bool:
        self.response, self.error = response, None
        return response.status_code in self.policy.retry_statuses

    def failed(self, error: Exception) -> None:
        self.response, self.error = None, error

    def pause(self) -> float | None:
        """Seconds to sleep before the next try, or None to give up now."""
        if self.attempts >= self.policy.max_attempts:
            return None
        delay = self.policy.backoff_s(self.attempts - 1, self.rng)
        delay = max(delay, _retry_after(self.response))
        return delay if delay < self.remaining() else None

    def exhausted(self) -> RetriesExhausted:
        return RetriesExhausted(self.attempts, self.response, self.error)


def _retry_after(response: httpx.Response | None) -> float:
    """Honours a numeric Retry-After header, if the server sent one."""
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


# Transport failures worth another try: nothing useful came back.
_RETRIABLE_ERRORS = (httpx.TransportError,)


class ServeClient:
    """Blocking client; one instance per process keeps connections pooled."""

    def __init__(
        self,
        base_url: str,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        **httpx_options: Any,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        # httpx_options go to httpx.Client (headers, auth, event_hooks, limits...).
        self._http = httpx.Client(base_url=base_url, **httpx_options)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The first non-retriable response, or RetriesExhausted."""
        state = _Attempts(self.policy, self._rng)
        for timeout in state.tries():
            try:
                response = self._http.request(method, path, timeout=timeout, **kwargs)
                if not state.retriable(response):
                    return response
            except _RETRIABLE_ERRORS as exc:
                state.failed(exc)
            delay = state.pause()
            if delay is None:
                break
            time.sleep(delay)
        raise state.exhausted()

    def post_json(self, path: str, payload: Any) -> Any:
        response = self.request("POST", path, json=payload)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncServeClient:
    """The same policy for asyncio callers."""

    def __init__(
        self,
        base_url: str,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        **httpx_options: Any,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        # httpx_options go to httpx.AsyncClient (headers, auth, event_hooks, limits...).
        self._http = httpx.AsyncClient(base_url=base_url, **httpx_options)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        state = _Attempts(self.policy, self._rng)
        for timeout in state.tries():
            try:
                response = await self._http.request(method, path, timeout=timeout, **kwargs)
                if not state.retriable(response):
                    return response
            except _RETRIABLE_ERRORS as exc:
                state.failed(exc)
            delay = state.pause()
            if delay is None:
                break
            await asyncio.sleep(delay)
        raise state.exhausted()

    async def post_json(self, path: str, payload: Any) -> Any:
        response = await self.request("POST", path, json=payload)
        response.raise_for_status()
        return response.json()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncServeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
