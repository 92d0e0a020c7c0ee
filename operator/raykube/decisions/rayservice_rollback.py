"""Automatic rollback of a serve config that fails in place (pure).

An in-place ``serveConfigV2`` edit goes to the serving cluster itself: when
the new config leaves an application ``DEPLOY_FAILED`` or ``UNHEALTHY``, that
application stops answering while the RayService still serves. Once the
failure has lasted ``raykube.ray.io/auto-rollback-after`` (default 15 s) since
the config was submitted, the last good config (the RayService's Secret,
``builders.labels.last_good_serve_config_name``) is submitted again. The
cluster remembers the hash it was rolled back from, and that config is not
sent there again until ``serveConfigV2`` changes.

Only a config never seen healthy on that cluster is rolled back: one that ran
and later turned unhealthy is the health thresholds' case (a new cluster), and
a config sent to a pending cluster never serves until it runs.
``raykube.ray.io/auto-rollback: "false"`` turns rollback off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from raykube.builders import labels
from raykube.decisions.durations import parse_seconds
from raykube.decisions.rayservice_config import ServeGoal, parse_serve_config
from raykube.decisions.rayservice_health import FAILED_STATES
from raykube.decisions.rayservice_view import ClusterView, ServeSnapshot
from raykube.models.rayservice import RayService
from raykube.text import safe

DEFAULT_WINDOW_SECONDS = 15.0
#: The cause kept on the cluster (an annotation) and quoted in status.
CAUSE_LIMIT = 512


@dataclass(frozen=True)
class Rollback:
    """Submit ``to`` (the last good config) to ``cluster`` instead of the goal."""

    cluster: ClusterView
    to: ServeGoal
    #: The hash of the config that failed there.
    rejected: str
    #: Which applications failed, and how.
    cause: str

    def intent(self) -> dict[str, str | None]:
        """Written before the last good config is sent: without it, an operator
        stopped right after the PUT would take the head's RUNNING applications
        for the failed config (and record it as healthy)."""
        return {
            labels.SERVE_CONFIG_ROLLED_BACK: self.rejected,
            labels.SERVE_CONFIG_ROLLBACK_CAUSE: self.cause,
        }

    def notes(self, now: str) -> dict[str, str | None]:
        return {
            labels.SERVE_CONFIG_HASH: self.to.hash,
            labels.SERVE_CONFIG_SUBMITTED_AT: now,
            labels.SERVE_CONFIG_ROLLED_BACK: self.rejected,
            labels.SERVE_CONFIG_ROLLBACK_CAUSE: self.cause,
        }


def window(service: RayService) -> tuple[float | None, str]:
    """Seconds a failing in-place config is given (None: rollback is off), and a
    problem with the annotations, if any (the default applies then)."""
    notes = service.metadata.annotations
    if notes.get(labels.AUTO_ROLLBACK, "").strip().lower() == "false":
        return None, ""
    text = notes.get(labels.AUTO_ROLLBACK_AFTER)
    if text is None:
        return DEFAULT_WINDOW_SECONDS, ""
    try:
        return parse_seconds(text), ""
    except ValueError as err:
        return DEFAULT_WINDOW_SECONDS, (
            f"annotation {labels.AUTO_ROLLBACK_AFTER}: {err}; {DEFAULT_WINDOW_SECONDS:g}s applies"
        )


def last_line(message: str) -> str:
    """The last non-blank line of Ray's message (a traceback's exception)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def failing(names: tuple[str, ...] | list[str], snap: ServeSnapshot) -> list[str]:
    """``"<app> <STATUS>: <last line of Ray's message>"`` for each app among
    ``names`` that does not answer: DEPLOY_FAILED, UNHEALTHY, or a deployment
    that should have replicas and has none running."""
    out = []
    for name in sorted(names):
        app = snap.apps.get(name)
        if app is None:
            continue
        if app.status in FAILED_STATES:
            out.append(f"{name} {app.status}: {last_line(app.message)}".rstrip(": "))
            continue
        empty = sorted(
            dep
            for dep, view in app.deployments.items()
            if view.running == 0 and (view.target or 0) > 0
        )
        if empty:
            out.append(f"{name}: no running replica of {', '.join(empty)}")
    return out


def plan_rollback(
    service: RayService,
    goal: ServeGoal,
    active: ClusterView | None,
    snap: ServeSnapshot,
    last_good: str,
    now: datetime,
    *,
    in_place: bool,
) -> Rollback | None:
    """The rollback this pass makes, if the serving cluster needs one now."""
    seconds, _ = window(service)
    if seconds is None or not in_place or active is None or not goal.hash:
        return None
    if active.serve_hash != goal.hash or active.serve_healthy_hash == goal.hash:
        return None  # not this config on this cluster, or it ran here before
    if interrupted(active, goal):
        # What the head runs is unknown (the last good config may have gone
        # or not): sent again, and the notes finished.
        cause = active.rollback_cause
    else:
        if not snap.reachable:
            return None
        causes = failing(goal.app_names, snap)
        submitted = active.serve_submitted_at
        if not causes or submitted is None or (now - submitted).total_seconds() < seconds:
            return None
        cause = safe("; ".join(causes), CAUSE_LIMIT)
    if not last_good:
        return None
    # Parsed only now: a rollback is rare, and the text is bounded like serveConfigV2.
    previous = parse_serve_config(last_good)
    if not previous.valid or not previous.hash or previous.hash == goal.hash:
        return None
    return Rollback(active, previous, goal.hash, cause)


def interrupted(cluster: ClusterView, goal: ServeGoal) -> bool:
    """A rollback begun (``Rollback.intent`` written) whose notes were not
    finished: the operator stopped around the PUT of the last good config."""
    return bool(goal.hash) and cluster.rolled_back == goal.hash == cluster.serve_hash
