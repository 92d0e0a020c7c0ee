"""Leader election with a ``coordination.k8s.io/v1`` Lease.

Design: **kopf runs only in the process that holds the Lease.** A candidate
waits (answering its liveness probe) until it holds the Lease, then starts
kopf with a stop flag that is raised when it can no longer renew. So a
replica that is not leading sends no write at all, whoever wrote it: our
reconcilers, kopf's own annotations, finalizers and events, or any
controller added later. The price is a cold start on takeover (kopf lists
and fills its indices, about a second for a few hundred objects), which is
small next to the Lease duration itself.

A leader that cannot renew for ``renew_deadline`` (the API server stopped,
the network cut) pauses: every write of the operator, to the API server or
to a Ray head, waits (``adapters.writegate``), and renewal goes on. When it
renews the same Lease (a PUT with the resourceVersion it last saw, so
nobody took it meanwhile), writes resume: an outage of the API server costs
no restart, no cold cache, no work done twice. A leader that finds another
holder stops kopf and the process exits with status 1: the kubelet restarts
it as a fresh candidate, with no state left from the time it was leading.
(kopf's own few writes, finalizers and its annotations, do not pass the
gate; they follow a handler's writes, which wait.) A graceful stop (SIGTERM)
stops kopf, then releases the Lease at once, so a candidate takes over on its
next look instead of waiting for the Lease to expire.

Expiry is judged on the candidate's own monotonic clock, from the moment it
saw the Lease's ``resourceVersion`` change, never by comparing the holder's
``renewTime`` with the local wall clock: the clocks of two machines are not
comparable, but every renewal changes the resourceVersion. Every write is a
PUT carrying the resourceVersion that was read (optimistic concurrency), so
of two candidates that see an expired Lease at once, exactly one wins.

The decisions (``observe``, ``decide``, ``lease_spec``) are pure; ``Elector``
does the I/O through ``adapters.kube``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

import kopf
from aiohttp import web

from raykube.adapters.kube import LEASES, ApiError, Kube, Resource
from raykube.adapters.writegate import WRITES, WriteGate
from raykube.metrics import LEADER_ELECTION_ACQUIRED, LEADER_ELECTION_LEADING
from raykube.settings import Settings
from raykube.timefmt import format_micro_time

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Timing:
    """Seconds. Defaults: a killed leader is replaced within duration + retry
    period (about 17 s) plus kopf's start."""

    duration: float = 15.0
    renew_period: float = 5.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # A leader must give up before anyone may consider its Lease expired.
        if not 0 < self.renew_period < self.renew_deadline < self.duration:
            raise ValueError(
                "lease timing needs 0 < renew period < renew deadline < duration, got "
                f"{self.renew_period} / {self.renew_deadline} / {self.duration}"
            )
        if self.retry_period <= 0:
            raise ValueError("lease retry period must be positive")


@dataclass(frozen=True)
class Record:
    """The parts of a Lease the election reads."""

    holder: str
    duration: float
    acquire_time: str | None
    transitions: int
    resource_version: str


def record_of(lease: Mapping[str, Any], default_duration: float) -> Record:
    spec = lease.get("spec") or {}
    return Record(
        holder=str(spec.get("holderIdentity") or ""),
        duration=float(spec.get("leaseDurationSeconds") or default_duration),
        acquire_time=spec.get("acquireTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((lease.get("metadata") or {}).get("resourceVersion", "")),
    )


@dataclass(frozen=True)
class Seen:
    """The Lease as last read, and when (our clock) this version was first seen."""

    record: Record | None
    since: float


def observe(previous: Seen | None, record: Record | None, now: float) -> Seen:
    """Restart the expiry clock only when the Lease really changed."""
    if previous is not None and _version(previous.record) == _version(record):
        return Seen(record, previous.since)
    return Seen(record, now)


def _version(record: Record | None) -> str | None:
    return record.resource_version if record is not None else None


class Decision(Enum):
    CREATE = "create"  # there is no Lease yet
    RENEW = "renew"  # we hold it
    TAKE = "take"  # released, or not renewed for its duration
    WAIT = "wait"  # another holder is alive


def decide(seen: Seen, identity: str, now: float) -> Decision:
    record = seen.record
    if record is None:
        return Decision.CREATE
    if record.holder == identity:
        return Decision.RENEW
    if not record.holder or now - seen.since >= record.duration:
        return Decision.TAKE
    return Decision.WAIT


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return format_micro_time(moment)


def lease_spec(
    decision: Decision, record: Record | None, identity: str, timing: Timing, now: str
) -> JSON:
    """The Lease spec to write for CREATE, RENEW or TAKE."""
    if decision is Decision.WAIT:
        raise ValueError("nothing to write while another holder is alive")
    transitions = record.transitions if record is not None else 0
    acquired = now
    if record is not None and record.holder != identity:
        transitions += 1
    elif record is not None and decision is Decision.RENEW:
        acquired = record.acquire_time or now
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": int(timing.duration),
        "acquireTime": acquired,
        "renewTime": now,
        "leaseTransitions": transitions,
    }


def released_spec(record: Record, now: str) -> JSON:
    """No holder: the next candidate that looks takes the Lease."""
    return {
        "leaseDurationSeconds": int(record.duration),
        "renewTime": now,
        "leaseTransitions": record.transitions,
    }


class LeaseApi(Protocol):
    """``adapters.kube.Kube``, as far as the election uses it."""

    async def get(self, res: Resource, namespace: str | None, name: str) -> JSON | None: ...
    async def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON: ...
    async def update(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON: ...


def _now() -> str:
    return micro_time(datetime.now(UTC))


class Elector:
    def __init__(
        self,
        kube: LeaseApi,
        name: str,
        namespace: str,
        identity: str,
        timing: Timing | None = None,
        clock: Clock = time.monotonic,
        wall: Callable[[], str] = _now,
        gate: WriteGate = WRITES,
    ) -> None:
        self.kube, self.name, self.namespace, self.identity = kube, name, namespace, identity
        self.gate = gate
        self.timing = timing or Timing()
        self._clock, self._wall = clock, wall
        self._seen: Seen | None = None
        self.leading = False

    async def step(self) -> bool:
        """One look at the Lease and, when due, one write. True while we hold it."""
        lease = await self.kube.get(LEASES, self.namespace, self.name)
        self._see(lease)
        assert self._seen is not None
        decision = decide(self._seen, self.identity, self._clock())
        if decision is Decision.WAIT:
            return self._set_leading(False)
        record = self._seen.record
        spec = lease_spec(decision, record, self.identity, self.timing, self._wall())
        try:
            written = await self._write(record, spec)
        except ApiError as err:
            if err.conflict:  # another candidate wrote first: look again later
                return self._set_leading(False)
            raise
        self._see(written)
        return self._set_leading(True)

    def _see(self, lease: Mapping[str, Any] | None) -> None:
        record = record_of(lease, self.timing.duration) if lease is not None else None
        self._seen = observe(self._seen, record, self._clock())

    async def _write(self, record: Record | None, spec: JSON) -> JSON:
        meta: JSON = {"name": self.name, "namespace": self.namespace}
        body: JSON = {"apiVersion": LEASES.api_version, "kind": LEASES.kind, "metadata": meta}
        body["spec"] = spec
        if record is None:
            return await self.kube.create(LEASES, self.namespace, body)
        meta["resourceVersion"] = record.resource_version
        return await self.kube.update(LEASES, self.namespace, self.name, body)

    def _set_leading(self, leading: bool) -> bool:
        if leading and not self.leading:
            LEADER_ELECTION_ACQUIRED.inc()
            log.info("became the leader", extra={"lease": self.name, "identity": self.identity})
        self.leading = leading
        LEADER_ELECTION_LEADING.set(1 if leading else 0)
        return leading

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Look every retry period until we hold the Lease (True) or ``stop`` is set."""
        while not stop.is_set():
            try:
                if await asyncio.wait_for(self.step(), timeout=self.timing.duration):
                    return True
            except (ApiError, OSError, TimeoutError) as err:
                log.warning("could not read or write the leader Lease: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.timing.retry_period)
        return False

    async def hold(self) -> str:
        """Renew until another holder is found; return why leadership ended.

        Not renewed for ``renew_deadline``, the leader pauses: ``gate`` closes
        and every write waits, while renewal goes on every retry period. The
        first renewal of the same Lease opens it again (nobody wrote the
        Lease meanwhile, or the PUT would have been refused); finding another
        holder ends leadership."""
        last_ok = self._clock()
        delay = self.timing.renew_period
        try:
            while True:
                await asyncio.sleep(delay)
                left = self.timing.renew_deadline - (self._clock() - last_ok)
                try:
                    held = await asyncio.wait_for(
                        self.step(), timeout=max(left, self.timing.retry_period)
                    )
                except (ApiError, OSError, TimeoutError) as err:
                    log.warning("could not renew the leader Lease: %s", err)
                else:
                    if not held:
                        self._set_leading(False)
                        return "another replica holds the Lease"
                    if self.gate.closed:
                        paused = self._clock() - last_ok
                        log.warning("renewed the leader Lease after %.0fs: writes resume", paused)
                        self.gate.open()
                    last_ok, delay = self._clock(), self.timing.renew_period
                    continue
                if self._clock() - last_ok >= self.timing.renew_deadline and not self.gate.closed:
                    self._set_leading(False)
                    log.error(
                        "could not renew the leader Lease for %gs: writes paused until it is "
                        "renewed",
                        self.timing.renew_deadline,
                    )
                    self.gate.close()
                delay = self.timing.retry_period
        finally:
            self.gate.open()

    async def release(self) -> None:
        """Give the Lease up now (graceful shutdown); errors are logged, not raised."""
        seen = self._seen.record if self._seen else None
        self._set_leading(False)
        if seen is None or seen.holder != self.identity:
            return
        body: JSON = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": seen.resource_version,
            },
            "spec": released_spec(seen, self._wall()),
        }
        try:
            await asyncio.wait_for(
                self.kube.update(LEASES, self.namespace, self.name, body), timeout=5
            )
            log.info("released the leader Lease", extra={"lease": self.name})
        except (ApiError, OSError, TimeoutError) as err:
            log.warning("could not release the leader Lease: %s", err)


# --- the process around kopf ---------------------------------------------------------------

Operator = Callable[[asyncio.Event], Awaitable[None]]


def identity_of(cfg: Settings) -> str:
    return cfg.lease_identity or f"{socket.gethostname()}-{os.getpid()}"


def timing_of(cfg: Settings) -> Timing:
    return Timing(
        duration=cfg.lease_duration,
        renew_period=cfg.lease_renew_period,
        renew_deadline=cfg.lease_renew_deadline,
        retry_period=cfg.lease_retry_period,
    )


async def run_elected(cfg: Settings, operator: Operator) -> int:
    """Wait for the Lease, run ``operator(stop_flag)`` while holding it.

    Exit status: 0 after a graceful stop (the Lease is released), 1 when
    leadership was lost (the process must restart as a candidate).
    """
    timing = timing_of(cfg)
    # Its own writes (the Lease) never wait on the gate that it closes.
    kube = await Kube.connect(cfg.field_manager, gated=False)
    elector = Elector(kube, cfg.lease_name, cfg.lease_namespace, identity_of(cfg), timing)
    log.info(
        "waiting for the leader Lease",
        extra={"lease": f"{cfg.lease_namespace}/{cfg.lease_name}", "identity": elector.identity},
    )
    try:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            async with standby_health(cfg.bind_host, cfg.health_port):
                leading = await elector.acquire(stop)
        return await _lead(elector, operator) if leading else 0
    finally:
        await kube.close()


async def _lead(elector: Elector, operator: Operator) -> int:
    lost, stop = asyncio.Event(), asyncio.Event()

    async def keep() -> None:
        reason = await elector.hold()
        log.error("lost the leader Lease (%s): stopping", reason)
        lost.set()
        stop.set()

    # Created before kopf starts, so kopf's shutdown leaves this task alone.
    keeper = asyncio.create_task(keep(), name="leader lease renewal")
    try:
        await operator(stop)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        if not lost.is_set():
            await elector.release()
    return 1 if lost.is_set() else 0


STOP_FLAG = "stop_flag"


@kopf.on.cleanup()
async def _raise_stop_flag(memo: Any, **_: Any) -> None:
    """kopf is stopping, maybe on a signal: raise its stop flag as well. kopf
    leaves its waiter on an unraised flag pending, and then waits 5 s for it
    before it returns, which would delay releasing the Lease."""
    flag = memo.get(STOP_FLAG)
    if isinstance(flag, asyncio.Event):
        flag.set()


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT while waiting end the wait; kopf installs its own later."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def standby_health(host: str, port: int) -> AsyncIterator[None]:
    """``/healthz`` on kopf's liveness port while not leading (kopf serves it after)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"leading": False})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    try:
        yield
    finally:
        await runner.cleanup()
