"""Live traffic through the serve Service while something changes.

``BackgroundLoad`` runs ``bench.loadgen.run_load`` (closed loop: each worker
sends, waits for the answer, sends again) in a thread of its own, until it is
stopped, ``max_requests`` were sent or ``max_seconds`` passed, whichever comes
first. Every answer is checked: a failure is a transport error, a status other
than 200, or a body other than the expected one. By default each request opens
its own connection (``Connection: close``), so the Service chooses the backend
of every request, as it does for a client that does not pool connections; with
``keep_alive=True`` connections are reused, as a pooling client does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.loadgen import LoadResult, Send, percentile, run_load


@dataclass(frozen=True)
class Failure:
    at_s: float  # seconds after the load started
    what: str


@dataclass
class LoadReport:
    name: str
    requests: int
    failures: list[Failure]
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def line(self) -> str:
        return (
            f"{self.name}: {self.requests} requests in {self.elapsed_s:.1f}s "
            f"({self.rate:.0f}/s), {len(self.failures)} failed{self._kinds()}, "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.0f} ms"
        )

    def _kinds(self) -> str:
        kinds = self.failure_kinds()
        return f" ({', '.join(f'{k} x{n}' for k, n in kinds.items())})" if kinds else ""

    def failure_kinds(self) -> dict[str, int]:
        """Failures by kind: "HTTP 503", "ConnectError", ... with counts."""
        kinds: dict[str, int] = {}
        for failure in self.failures:
            kind = failure.what.split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    def failure_text(self, limit: int = 10) -> str:
        shown = [f"  +{f.at_s:.2f}s {f.what}" for f in self.failures[:limit]]
        more = len(self.failures) - limit
        return "\n".join(shown + ([f"  ... {more} more"] if more > 0 else []))


@dataclass
class BackgroundLoad:
    """Bounded load on ``POST url+path body`` in a thread; any answer in
    ``accept`` is right (two, while a change is rolling out)."""

    name: str
    url: str
    path: str
    body: Any
    accept: tuple[Any, ...]
    concurrency: int = 4
    max_requests: int = 20_000
    max_seconds: float = 600.0
    keep_alive: bool = False
    failures: list[Failure] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _result: LoadResult | None = None
    _started: float = 0.0
    _sent: int = 0
    #: answer (as JSON text) -> (first, last) time it came, seconds after start
    seen: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: whole second after start -> answer -> how many came in that second
    by_second: dict[int, dict[str, int]] = field(default_factory=dict)

    def start(self) -> BackgroundLoad:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"load-{self.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def sent(self) -> int:
        """Requests sent so far (answered or not)."""
        return self._sent

    def stop(self) -> LoadReport:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
        return self.report()

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def report(self) -> LoadReport:
        result = self._result or LoadResult(self.concurrency)
        ordered = sorted(result.latencies_s)
        return LoadReport(
            name=self.name,
            requests=len(result.latencies_s) + result.errors,
            failures=list(self.failures),
            elapsed_s=result.elapsed_s or time.monotonic() - self._started,
            p50_ms=percentile(ordered, 50) * 1e3,
            p99_ms=percentile(ordered, 99) * 1e3,
            max_ms=(ordered[-1] if ordered else 0.0) * 1e3,
        )

    def _run(self) -> None:
        self._result = LoadResult(self.concurrency)
        asyncio.run(self._load())

    async def _load(self) -> None:
        headers = {} if self.keep_alive else {"Connection": "close"}
        send = self._sender(headers)
        self._result = await run_load(
            self.url, send, self.concurrency, self.max_requests, self.max_seconds,
            stop=self._stop.is_set,
        )  # fmt: skip

    def _sender(self, headers: dict[str, str]) -> Send:
        async def send(client: httpx.AsyncClient, _seq: int) -> httpx.Response:
            self._sent += 1
            try:
                response = await client.post(self.path, json=self.body, headers=headers)
            except httpx.HTTPError as exc:
                self._fail(f"{type(exc).__name__}: {exc}{_cause(exc)}")
                raise
            if response.status_code != 200:
                self._fail(f"HTTP {response.status_code}: {response.text[:200]}")
            elif _answer(response) not in self.accept:
                self._fail(f"answered {response.text[:200]}, not one of {self.accept!r}")
            else:
                self._saw(response.text)
            return response

        return send

    def _saw(self, answer: str) -> None:
        now = time.monotonic() - self._started
        first, _ = self.seen.get(answer, (now, now))
        self.seen[answer] = (first, now)
        counts = self.by_second.setdefault(int(now), {})
        counts[answer] = counts.get(answer, 0) + 1

    def split(self, every: int = 5) -> list[tuple[int, dict[str, int]]]:
        """Answers counted per ``every`` seconds: (start second, answer -> count)."""
        out: dict[int, dict[str, int]] = {}
        for second, counts in sorted(self.by_second.items()):
            bucket = out.setdefault(second - second % every, {})
            for answer, n in counts.items():
                bucket[answer] = bucket.get(answer, 0) + n
        return sorted(out.items())

    def split_text(self, names: dict[str, str], every: int = 5) -> str:
        """The split over time, one line per interval: ``+10s  A 120  B 35``;
        ``names`` says which cluster (or version) each answer stands for."""
        lines = []
        for start, counts in self.split(every):
            parts = [f"{names.get(a, a)} {n}" for a, n in sorted(counts.items())]
            lines.append(f"  +{start:>3}s  " + "  ".join(parts))
        return "\n".join(lines)

    def _fail(self, what: str) -> None:
        self.failures.append(Failure(time.monotonic() - self._started, what))


def _cause(exc: BaseException) -> str:
    """The OS-level reason under an httpx error ("All connection attempts failed")."""
    seen: list[str] = []
    inner = exc.__cause__ or exc.__context__
    while inner is not None and len(seen) < 4:
        seen.append(f"{type(inner).__name__}: {inner}")
        inner = inner.__cause__ or inner.__context__
    return f" ({'; '.join(seen)})" if seen else ""


def _answer(response: httpx.Response) -> Any:
    """The body as JSON, or as text when it is not JSON (a plain-text app)."""
    try:
        return response.json()
    except ValueError:
        return response.text
