"""The Ray dashboard client: the only module that talks HTTP to Ray heads.

Three calls, all a RayService needs (Ray 2.60, measured):

- ``PUT /api/serve/applications/`` with the whole multi-application config as
  JSON; it answers 200 before anything is deployed, and it replaces every
  application (one left out is deleted). Dashboard port only, trailing slash
  required.
- ``GET /api/serve/applications/?api_type=declarative``: each application's
  status and message and each deployment's status.
- ``GET /-/healthz`` on the Serve proxy port: 200 once the proxy runs there.

How a head is reached is a setting. ``service-dns`` (in a cluster) uses the
head Service's DNS name; ``apiserver-proxy`` (operator outside the cluster)
goes through the API server's service proxy, with the operator's own
credentials. A ``Head`` may also carry explicit URLs (see
``--dashboard-url-annotations``), which win over both.

One ``httpx.AsyncClient`` per process, explicit timeouts, bounded retries
with exponential back-off on transport errors and 5xx (a head that is
starting answers 502/503 for a few seconds), never on other 4xx. A head is
not trusted to be brief: each call has one deadline, retries included (a
read timeout alone restarts with every chunk, so a dripping body would never
trip it), and an answer is read up to a byte cap, past which the call fails
without reading the rest (and is not retried). An
optional token is sent as ``X-Ray-Authorization: Bearer ...``, the header
Ray reads for clients behind proxies, so it survives the API server's proxy
(which consumes ``Authorization`` itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import httpx

from raykube import metrics
from raykube.adapters.bodies import CHUNK, read_at_most
from raykube.adapters.writegate import WRITES
from raykube.ports import DASHBOARD_PORT, SERVE_PORT

log = logging.getLogger(__name__)

APPS_PATH = "/api/serve/applications/"
PROXY_HEALTH_PATH = "/-/healthz"
TOKEN_HEADER = "X-Ray-Authorization"

Access = Literal["service-dns", "apiserver-proxy"]
Port = Literal["dashboard", "serve"]


@dataclass(frozen=True)
class Head:
    """Where one cluster's head can be reached."""

    namespace: str
    #: The cluster's own head Service (``<cluster>-head-svc``).
    service: str
    dashboard_port: int = DASHBOARD_PORT
    serve_port: int = SERVE_PORT
    #: Explicit base URLs (``http://host:port``); empty means "by the setting".
    dashboard_url: str = ""
    serve_url: str = ""
    token: str = ""

    def port(self, which: Port) -> int:
        return self.dashboard_port if which == "dashboard" else self.serve_port


class DashboardError(Exception):
    """A call failed. ``status`` 0 means no HTTP answer at all."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status or 'no answer'}: {message}")
        self.status = status
        self.message = message

    @property
    def rejected(self) -> bool:
        """The head refused the request itself (a bad config), not its transport."""
        return self.status in (400, 422)


class TooLarge(DashboardError):
    """The answer passed the call's byte cap: asking again would only repeat it."""


class ProxyTransport(Protocol):
    """The API server's service proxy (``adapters.kube.Kube.proxy``)."""

    async def proxy(
        self,
        method: str,
        namespace: str,
        service: str,
        port: int,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        request_timeout: float = 10,
        limit: int = ...,
    ) -> tuple[int, bytes]: ...


@dataclass(frozen=True)
class Retry:
    attempts: int = 3
    first_delay: float = 0.25

    def delay(self, attempt: int) -> float:
        return float(self.first_delay * 2**attempt)


#: A PUT returns before anything deploys, but a busy head can take seconds to
#: answer any call; connecting is quick or not at all.
DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=20.0, write=10.0, pool=5.0)
#: The proxy health check is a single quick look: a slow proxy is not healthy.
PROXY_TIMEOUT = 2.0
#: One call, every try and back-off included. A pass polls its (at most two)
#: heads at once, then may submit to each in turn: three deadlines, well inside
#: the reconcile deadline (``Settings.reconcile_timeout_seconds``, 120 s).
CALL_DEADLINE = 30.0
#: The applications GET carries each application's deployed config (all of
#: them together come from one serveConfigV2, so at most the API server's
#: ~1.5 MiB object limit) plus a status message per application and deployment
#: (a traceback is a few KiB): 8 MiB is five times the largest honest answer,
#: and eight workers polling two heads each hold at most 128 MiB of answers.
APPS_BODY_LIMIT = 8 * 2**20
#: Every other answer (the PUT's, the health check's) is read for its status
#: and, on an error, a message of which only 2000 characters are kept.
SMALL_BODY_LIMIT = 64 * 2**10


class DashboardClient:
    def __init__(
        self,
        access: Access = "service-dns",
        cluster_domain: str = "cluster.local",
        proxy: ProxyTransport | None = None,
        *,
        retry: Retry | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        deadline: float = CALL_DEADLINE,
    ) -> None:
        if access == "apiserver-proxy" and proxy is None:
            raise ValueError("apiserver-proxy access needs the Kubernetes client")
        self.access = access
        self.cluster_domain = cluster_domain
        self.retry = retry or Retry()
        self._proxy = proxy
        self._timeout = timeout
        self.deadline = deadline
        self._http = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
            # Heads are in-cluster (or loopback) addresses: never through an
            # HTTP proxy that the environment may name for other traffic.
            trust_env=False,
            # Tests serve the dashboard from memory (httpx.MockTransport).
            transport=transport,
        )

    async def close(self) -> None:
        await self._http.aclose()

    # --- the three calls -----------------------------------------------------------------

    async def get_applications(self, head: Head) -> dict[str, Any]:
        status, data = await self._send(
            "GET", head, "dashboard", APPS_PATH, APPS_BODY_LIMIT, api_type=True
        )
        if status != 200:
            raise DashboardError(status, _text(data))
        try:
            return cast(dict[str, Any], json.loads(data))
        except (ValueError, RecursionError):
            raise DashboardError(status, f"not JSON: {_text(data)}") from None

    async def put_applications(self, head: Head, config: dict[str, Any]) -> None:
        # Outside the call's deadline: a paused leader's PUT waits, then runs whole.
        await WRITES.wait()
        status, data = await self._send(
            "PUT", head, "dashboard", APPS_PATH, SMALL_BODY_LIMIT, body=config
        )
        if status != 200:
            raise DashboardError(status, _text(data))

    async def proxy_healthy(self, head: Head) -> bool:
        try:
            async with self._deadline(PROXY_TIMEOUT):
                status, _ = await self._once(
                    "GET", head, "serve", PROXY_HEALTH_PATH, SMALL_BODY_LIMIT, PROXY_TIMEOUT
                )
        except DashboardError:
            return False
        return status == 200

    # --- transport ---------------------------------------------------------------------

    def base_url(self, head: Head, port: Port) -> str | None:
        """Direct base URL, or None when the API server proxy must be used."""
        explicit = head.dashboard_url if port == "dashboard" else head.serve_url
        if explicit:
            return explicit.rstrip("/")
        if self.access == "apiserver-proxy":
            return None
        number = head.port(port)
        return f"http://{head.service}.{head.namespace}.svc.{self.cluster_domain}:{number}"

    @contextlib.asynccontextmanager
    async def _deadline(self, seconds: float) -> AsyncIterator[None]:
        """``seconds`` for everything inside, or a DashboardError saying so."""
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError:
            raise DashboardError(0, f"no complete answer within {seconds:g}s") from None

    async def _send(
        self,
        method: str,
        head: Head,
        port: Port,
        path: str,
        limit: int,
        *,
        body: Any = None,
        api_type: bool = False,
    ) -> tuple[int, bytes]:
        if api_type:
            path += "?api_type=declarative"
        async with self._deadline(self.deadline):
            return await self._tries(method, head, port, path, limit, body)

    async def _tries(
        self, method: str, head: Head, port: Port, path: str, limit: int, body: Any
    ) -> tuple[int, bytes]:
        last: DashboardError | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                await asyncio.sleep(self.retry.delay(attempt - 1))
            try:
                status, data = await self._once(method, head, port, path, limit, None, body)
            except TooLarge:
                raise
            except DashboardError as err:
                last = err
                continue
            if status < 500:
                return status, data
            last = DashboardError(status, _text(data))
        assert last is not None
        raise last

    async def _once(
        self,
        method: str,
        head: Head,
        port: Port,
        path: str,
        limit: int,
        read_timeout: float | None,
        body: Any = None,
    ) -> tuple[int, bytes]:
        """One request, timed by endpoint (method and path) and answer code (0: none)."""
        endpoint = f"{method} {path.split('?', 1)[0]}"
        started = time.monotonic()
        code = 0
        try:
            code, data = await self._exchange(method, head, port, path, limit, read_timeout, body)
            if len(data) > limit:
                raise TooLarge(code, f"answer larger than {limit} bytes, not read further")
            return code, data
        finally:
            elapsed = time.monotonic() - started
            metrics.DASHBOARD_SECONDS.labels(endpoint, str(code)).observe(elapsed)

    async def _exchange(
        self,
        method: str,
        head: Head,
        port: Port,
        path: str,
        limit: int,
        read_timeout: float | None,
        body: Any = None,
    ) -> tuple[int, bytes]:
        headers = {TOKEN_HEADER: f"Bearer {head.token}"} if head.token else {}
        base = self.base_url(head, port)
        if base is None:
            assert self._proxy is not None
            number = head.port(port)
            return await self._proxy.proxy(
                method,
                head.namespace,
                head.service,
                number,
                path,
                body=body,
                headers=headers,
                request_timeout=read_timeout or self._timeout.read or 10.0,
                limit=limit,
            )
        # Uncompressed only: the cap counts bytes as they arrive, and a small
        # compressed chunk could unpack to far more than it.
        headers["Accept-Encoding"] = "identity"
        try:
            async with self._http.stream(
                method,
                base + path,
                json=body,
                headers=headers,
                timeout=read_timeout if read_timeout is not None else self._timeout,
            ) as resp:
                encoding = resp.headers.get("content-encoding", "identity")
                if encoding != "identity":
                    raise DashboardError(resp.status_code, f"compressed answer ({encoding})")
                # Identity: the decoded bytes are the bytes that arrived.
                data = await read_at_most(resp.aiter_bytes(CHUNK), limit)
        except httpx.HTTPError as exc:
            raise DashboardError(0, f"{type(exc).__name__}: {exc} ({base})") from None
        return resp.status_code, data


def _text(data: bytes, limit: int = 2000) -> str:
    return data.decode(errors="replace").strip()[:limit]
