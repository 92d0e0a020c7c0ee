"""Unhealthy thresholds of the serving cluster, and back-off of replacements (pure).

Two clocks run on the active cluster, both kept in its ``serve-health``
annotation so a restart does not reset them:

- the dashboard (or the head pod behind it) cannot be reached: compared with
  ``deploymentUnhealthySecondThreshold``;
- a Serve application is ``DEPLOY_FAILED`` or ``UNHEALTHY``: compared with
  ``serviceUnhealthySecondThreshold``. Ray replaces a replica whose health
  check fails, so such an app flaps between UNHEALTHY and RUNNING; the clock
  therefore stops only after every app has stayed RUNNING for
  ``RECOVERY_SECONDS``, never on a single good sample.

Only failures of a config that already ran on this cluster count: a config
that fails from its first deployment would fail on a new cluster too, so it
is reported (see ``rayservice_status``) but never replaces the cluster.

A threshold of 0 turns its clock off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from raykube.decisions.rayservice_view import (
    ClusterView,
    HealthRecord,
    ServeSnapshot,
)
from raykube.models.rayservice import RayServiceSpec
from raykube.timefmt import format_time, parse_time

FAILED_STATES = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
RECOVERY_SECONDS = 60
DASHBOARD_UNREACHABLE = "DashboardUnreachable"
APPLICATION_UNHEALTHY = "ServeApplicationUnhealthy"
#: A replacement that did not help is retried after the upgrade deadline,
#: then twice as long each time, up to this.
MAX_BACKOFF_SECONDS = 12 * 3600
#: Replacements longer ago than this no longer count.
FORGET_AFTER_SECONDS = 24 * 3600
#: The annotation is user-editable, so what is read from it is bounded: attempts
#: stop counting here (the back-off reached its maximum long before), and a
#: longer text, or a value out of these bounds, reads as no record at all.
MAX_ATTEMPTS = 64
_MAX_RECORD_CHARS = 512
_MAX_REASON_CHARS = 64
#: Doublings of the back-off: even a 1 s base passes 12 h by then.
_MAX_DOUBLINGS = 16
#: Times a record may hold: others (year 1, year 9999) are garbage, and would
#: overflow when a back-off is added to them.
_EARLIEST, _LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Verdict:
    """Why the serving cluster is declared unhealthy (or, ``over`` False, a
    clock that runs but has not passed its threshold yet)."""

    reason: str
    message: str
    since: datetime
    over: bool = True
    #: Past its threshold, but only the operator's view of the cluster is lost
    #: (its head pod is Ready and its Serve proxy answers): it is not replaced.
    kept: bool = False

    @property
    def replaces(self) -> bool:
        return self.over and not self.kept


def failing_apps(snap: ServeSnapshot) -> list[str]:
    return sorted(name for name, app in snap.apps.items() if app.status in FAILED_STATES)


def config_proved_here(cluster: ClusterView) -> bool:
    """The serve config on this cluster once had all its applications RUNNING."""
    return bool(cluster.serve_hash) and cluster.serve_hash == cluster.serve_healthy_hash


def _app_clock(
    record: HealthRecord, snap: ServeSnapshot, counts: bool, now: datetime
) -> HealthRecord:
    if not counts:
        # A config not yet proven on this cluster starts with a clean slate.
        return replace(record, failing_since=None, running_since=None)
    if not snap.reachable:
        return record  # nothing learnt about the applications
    if failing_apps(snap):
        return replace(record, failing_since=record.failing_since or now, running_since=None)
    if record.failing_since is None:
        return replace(record, running_since=None)
    if all(app.status == "RUNNING" for app in snap.apps.values()):
        since = record.running_since or now
        if now - since >= timedelta(seconds=RECOVERY_SECONDS):
            return replace(record, failing_since=None, running_since=None)
        return replace(record, running_since=since)
    return replace(record, running_since=None)


def track(
    cluster: ClusterView, head_ready: bool, snap: ServeSnapshot, now: datetime
) -> HealthRecord:
    """The cluster's health record after one more look at it."""
    record = cluster.health
    if head_ready and snap.reachable:
        record = replace(record, unreachable_since=None)
    else:
        record = replace(record, unreachable_since=record.unreachable_since or now)
    return _app_clock(record, snap, config_proved_here(cluster), now)


def _over(since: datetime | None, threshold: int, now: datetime) -> bool:
    return threshold > 0 and since is not None and now - since > timedelta(seconds=threshold)


def verdict(record: HealthRecord, spec: RayServiceSpec, now: datetime) -> Verdict | None:
    """The cluster is unhealthy once a clock has run past its threshold."""
    dash = spec.deployment_unhealthy_second_threshold
    if record.unreachable_since is not None and _over(record.unreachable_since, dash, now):
        return Verdict(
            DASHBOARD_UNREACHABLE,
            f"the dashboard could not be reached since {format_time(record.unreachable_since)}, "
            f"longer than deploymentUnhealthySecondThreshold ({dash}s)",
            record.unreachable_since,
        )
    svc = spec.service_unhealthy_second_threshold
    if record.failing_since is not None and _over(record.failing_since, svc, now):
        return Verdict(
            APPLICATION_UNHEALTHY,
            "a Serve application has been DEPLOY_FAILED or UNHEALTHY since "
            f"{format_time(record.failing_since)}, longer than serviceUnhealthySecondThreshold "
            f"({svc}s)",
            record.failing_since,
        )
    return None


def warning(record: HealthRecord, spec: RayServiceSpec) -> Verdict | None:
    """The dashboard unreachable, its threshold not passed yet: said at once."""
    since = record.unreachable_since
    if since is None:
        return None
    dash = spec.deployment_unhealthy_second_threshold
    limit = f"deploymentUnhealthySecondThreshold {dash}s" if dash > 0 else "no threshold"
    return Verdict(
        DASHBOARD_UNREACHABLE,
        f"the dashboard could not be reached since {format_time(since)} ({limit})",
        since,
        over=False,
    )


def kept(verdict: Verdict) -> Verdict:
    """An unreachable dashboard of a head that is Ready and serves: reported,
    never a reason to replace a cluster that answers its clients."""
    note = (
        "; its head pod is Ready and its Serve proxy answers, so only the operator's view "
        "is lost: the cluster is kept"
    )
    return replace(verdict, message=verdict.message + note, kept=True)


def seconds_to_threshold(record: HealthRecord, spec: RayServiceSpec, now: datetime) -> float | None:
    """When the next threshold would be crossed, to look again just then."""
    waits = []
    for since, threshold in (
        (record.unreachable_since, spec.deployment_unhealthy_second_threshold),
        (record.failing_since, spec.service_unhealthy_second_threshold),
    ):
        if since is not None and threshold > 0:
            # Subtracted first: a hand-edited time near year 9999 plus a threshold
            # would overflow a datetime.
            waits.append((since - now).total_seconds() + threshold + 1)
    return max(0.0, min(waits)) if waits else None


# --- back-off of replacements -------------------------------------------------------


@dataclass(frozen=True)
class Replacements:
    """Recent replacements of unhealthy clusters (kept on the RayService)."""

    reason: str = ""
    attempts: int = 0
    last: datetime | None = None

    def to_json(self) -> str:
        last = format_time(self.last) if self.last else None
        return json.dumps(
            {"reason": self.reason, "attempts": self.attempts, "last": last}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str | None) -> Replacements:
        """The record in ``text``; anything but one within bounds reads as none."""
        if not text or len(text) > _MAX_RECORD_CHARS:
            return cls()
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        reason, attempts, last = data.get("reason", ""), data.get("attempts", 0), data.get("last")
        if not isinstance(reason, str) or len(reason) > _MAX_REASON_CHARS:
            return cls()
        if type(attempts) is not int or not 0 <= attempts <= MAX_ATTEMPTS:
            return cls()
        when = parse_time(last) if isinstance(last, str) else None
        if last is not None and (when is None or not _EARLIEST <= when <= _LATEST):
            return cls()
        return cls(reason=reason, attempts=attempts, last=when)


def backoff_seconds(attempts: int, upgrade_timeout: int) -> int:
    """Wait after the ``attempts``-th replacement before trying again."""
    base = upgrade_timeout if upgrade_timeout > 0 else 600
    doublings = min(max(0, attempts - 1), _MAX_DOUBLINGS)
    return int(min(MAX_BACKOFF_SECONDS, base * 2**doublings))


def _counts(record: Replacements, reason: str, now: datetime) -> bool:
    # A record from the future is garbage (a hand edit): it does not hold anything back.
    last = record.last
    recent = last is not None and timedelta(0) <= now - last < timedelta(
        seconds=FORGET_AFTER_SECONDS
    )
    return recent and record.reason == reason and record.attempts > 0


def may_replace(record: Replacements, reason: str, upgrade_timeout: int, now: datetime) -> bool:
    """A replacement for ``reason`` is allowed now (first try, or back-off over)."""
    if not _counts(record, reason, now) or record.last is None:
        return True
    wait = timedelta(seconds=backoff_seconds(record.attempts, upgrade_timeout))
    return now >= record.last + wait


def after_attempt(record: Replacements, reason: str, now: datetime) -> Replacements:
    attempts = min(record.attempts + 1, MAX_ATTEMPTS) if _counts(record, reason, now) else 1
    return Replacements(reason=reason, attempts=attempts, last=now)
