"""What a RayService does next, from what was observed (pure).

``roles_of`` says which owned RayCluster serves and which is pending (so the
handler knows whose dashboards to ask); ``decide`` turns the observation into
a ``Plan``: clusters to build, promote and delete, serve configs to submit,
group sizes to copy, bookkeeping annotations and pod labels to write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from raykube.builders import labels
from raykube.builders.gateway import gateway_class
from raykube.builders.rayservice import group_sizes
from raykube.decisions import rayservice_health as health
from raykube.decisions.durations import parse_seconds
from raykube.decisions.pods import PodView
from raykube.decisions.rayservice_config import ServeGoal, parse_serve_config
from raykube.decisions.rayservice_incremental import (
    Selection,
    Share,
    Step,
    StepInputs,
    candidates,
    endpoints,
    plan_step,
)
from raykube.decisions.rayservice_rollback import Rollback, interrupted, plan_rollback
from raykube.decisions.rayservice_status import (
    INITIALIZING_TIMEOUT_REASON,
    UPGRADE_IN_PROGRESS,
    UPGRADE_TIMED_OUT_REASON,
)
from raykube.decisions.rayservice_upgrade import (
    ClusterInputs,
    ClusterPlan,
    CreateReason,
    Roles,
    assign_roles,
    group_sizes_patch,
    keeps_timed_out,
    plan_clusters,
    suspend_patch,
)
from raykube.decisions.rayservice_view import (
    UNREACHABLE,
    ClusterView,
    HealthRecord,
    ServeSnapshot,
)
from raykube.models.common import find_condition
from raykube.models.rayservice import RayService, RayServiceUpgradeType
from raykube.timefmt import format_time

#: After a submission, zero applications on the head is not yet a lost config.
RESUBMIT_GRACE_SECONDS = 10


class SubmitReason(StrEnum):
    """Why the goal serve config is sent to a cluster; the event says so."""

    FIRST = "FirstSubmission"
    CHANGED = "ServeConfigChanged"
    HEAD_LOST_APPS = "HeadLostApplications"


@dataclass(frozen=True)
class Observed:
    service: RayService
    goal: ServeGoal
    goal_hash: str
    roles: Roles
    now: datetime
    #: Serve as each polled cluster's dashboard reported it, by cluster name.
    serve: Mapping[str, ServeSnapshot] = field(default_factory=dict)
    #: The live head pod of each cluster, by cluster name.
    heads: Mapping[str, PodView] = field(default_factory=dict)
    #: The cluster that traffic last went to is gone / its pods still exist.
    active_gone: bool = False
    lingering: bool = False
    replacements: health.Replacements = field(default_factory=health.Replacements)
    #: Cluster name -> serve config hash Ray refused with 400 there.
    rejected: Mapping[str, str] = field(default_factory=dict)
    last_good: str = ""
    #: Pods of each owned cluster, by cluster name (incremental upgrades only).
    pods: Mapping[str, Sequence[PodView]] = field(default_factory=dict)
    #: The serve Service selects by the serve-traffic label now (a split).
    split_selector: bool = False

    def snap(self, cluster: ClusterView) -> ServeSnapshot:
        return self.serve.get(cluster.name, UNREACHABLE)

    def head_ready(self, cluster: ClusterView) -> bool:
        head = self.heads.get(cluster.name)
        return head is not None and head.ready and not head.terminating

    def head_up(self, cluster: ClusterView) -> bool:
        """The head's Ray runs, Ready or not yet (``PodView.ray_up``)."""
        head = self.heads.get(cluster.name)
        return head is not None and head.ray_up


@dataclass
class Plan:
    clusters: ClusterPlan
    #: Clusters to send the goal serve config to, and why.
    submit: list[tuple[ClusterView, SubmitReason]] = field(default_factory=list)
    #: JSON Patch ops (and the record they leave) copying group sizes.
    scaling: list[tuple[ClusterView, list[dict[str, Any]], dict[str, list[int]]]] = field(
        default_factory=list
    )
    #: JSON Patch ops copying ``suspend`` (cluster and groups) onto clusters.
    suspension: list[tuple[ClusterView, list[dict[str, Any]]]] = field(default_factory=list)
    #: Bookkeeping annotations to set on clusters.
    notes: list[tuple[ClusterView, dict[str, str]]] = field(default_factory=list)
    #: Head pods whose ray.io/serve label must change, to the given value.
    serve_labels: list[tuple[PodView, bool]] = field(default_factory=list)
    last_good: str | None = None
    #: The serving cluster goes back to the last good serve config.
    rollback: Rollback | None = None
    replacements: health.Replacements | None = None
    verdict: health.Verdict | None = None
    #: An incremental upgrade's step this pass (None: not in one).
    shift: Shift | None = None
    #: Serve target_capacity each cluster runs after this pass, by cluster name
    #: (sent with every submission there).
    capacity: dict[str, int] = field(default_factory=dict)
    #: Capacity-only PUTs: the cluster and the config it already runs.
    resize: list[tuple[ClusterView, ServeGoal]] = field(default_factory=list)
    #: The serve Service selects the pods labelled for this RayService.
    shared_serve: bool = False
    #: Pods whose serve-traffic label is added (True) or removed (False).
    traffic_labels: list[tuple[PodView, bool]] = field(default_factory=list)

    def deleted(self, cluster: ClusterView | None) -> bool:
        return cluster is not None and any(c.name == cluster.name for c, _ in self.clusters.delete)

    def leaving(self, cluster: ClusterView | None) -> bool:
        """Deleted now, or given a deletion time in this pass."""
        scheduled = cluster is not None and any(
            c.name == cluster.name for c, _ in self.clusters.schedule
        )
        return scheduled or self.deleted(cluster)


@dataclass(frozen=True)
class Shift:
    """An incremental upgrade's step: before, after, and the pods selected."""

    inputs: StepInputs
    step: Step
    active: ClusterView
    pending: ClusterView
    selection: Selection | None = None

    @property
    def routed(self) -> int:
        """The pending cluster's share as routed (endpoints or Gateway weights):
        none while it does not serve, whatever its recorded share."""
        return self.step.pending.traffic if self.inputs.pending_serving else 0


def roles_of(
    service: RayService, clusters: Sequence[ClusterView], traffic: str, goal_hash: str
) -> Roles:
    """Active and pending clusters; the serve Service's selector stands in for a
    lost status."""
    status = service.status
    active = (status.active_service_status.ray_cluster_name if status else None) or traffic
    pending = (status.pending_service_status.ray_cluster_name if status else None) or ""
    return assign_roles(active or "", pending, clusters, goal_hash)


def serving(obs: Observed, cluster: ClusterView) -> bool:
    """Head ready and every application of the goal config RUNNING there."""
    if not obs.head_ready(cluster) or not obs.goal.valid:
        return False
    if not obs.goal.hash:
        return True  # Serve is not managed: a ready head is all there is to wait for
    snap = obs.snap(cluster)
    return (
        cluster.serve_hash == obs.goal.hash
        and not interrupted(cluster, obs.goal)  # what RUNs may be the last good config
        and snap.reachable
        and snap.running(obs.goal.app_names)
    )


def submission(obs: Observed, cluster: ClusterView) -> SubmitReason | None:
    """Why the goal config must be (re)sent to this cluster now, if it must."""
    goal, snap = obs.goal, obs.snap(cluster)
    # Sent as soon as the dashboard answers, not when the head's readiness
    # probe first passes (10 s after its start): the applications start
    # deploying seconds earlier. Serving still waits for a Ready head.
    if not goal.valid or not goal.hash or not obs.head_up(cluster) or not snap.reachable:
        return None
    if obs.rejected.get(cluster.name) == goal.hash:
        return None  # Ray refused this very config here; wait for a new one
    if cluster.rolled_back == goal.hash:
        return None  # it failed here and was rolled back; wait for a new one
    if cluster.serve_hash != goal.hash:
        return SubmitReason.CHANGED if cluster.serve_hash else SubmitReason.FIRST
    submitted = cluster.serve_submitted_at
    settled = submitted is None or (obs.now - submitted).total_seconds() >= RESUBMIT_GRACE_SECONDS
    if goal.app_names and not snap.apps and settled:
        return SubmitReason.HEAD_LOST_APPS
    return None


def being_replaced(obs: Observed) -> bool:
    """The serving cluster is on its way out (a new cluster is or will be built):
    a new serve config goes to the new cluster only, and the old one keeps
    serving what it has until it is deleted."""
    active = obs.roles.active
    if active is None or obs.service.spec.upgrade_strategy.type == RayServiceUpgradeType.NONE:
        return False
    return obs.roles.pending is not None or active.config_hash != obs.goal_hash


def _members(roles: Roles) -> list[ClusterView]:
    return [c for c in (roles.active, roles.pending) if c is not None]


@dataclass(frozen=True)
class Assessment:
    """The serving cluster's health after this look."""

    record: HealthRecord | None = None
    verdict: health.Verdict | None = None
    #: The verdict asks for a replacement and the back-off allows one now.
    replace: bool = False


def assess(obs: Observed) -> Assessment:
    active = obs.roles.active
    if active is None:
        return Assessment()
    record = health.track(active, obs.head_ready(active), obs.snap(active), obs.now)
    spec = obs.service.spec
    verdict = health.verdict(record, spec, obs.now)
    if verdict is None:
        return Assessment(record, health.warning(record, spec))
    if (
        verdict.reason == health.DASHBOARD_UNREACHABLE
        and obs.head_ready(active)
        and obs.snap(active).proxy_healthy
    ):
        return Assessment(record, health.kept(verdict))
    if spec.upgrade_strategy.type == RayServiceUpgradeType.NONE:
        return Assessment(record, verdict)
    timeout = spec.upgrade_strategy.timeout_seconds
    allowed = health.may_replace(obs.replacements, verdict.reason, timeout, obs.now)
    return Assessment(record, verdict, allowed)


def _bookkeeping(obs: Observed, plan: Plan) -> None:
    """Record configs proven on a cluster, and the last good one on the service."""
    goal = obs.goal
    for cluster in _members(obs.roles):
        if goal.hash and serving(obs, cluster) and cluster.serve_healthy_hash != goal.hash:
            plan.notes.append((cluster, {labels.SERVE_CONFIG_HEALTHY_HASH: goal.hash}))
    serving_now = serving_after(obs, plan)
    text = obs.service.spec.serve_config_v2 or ""
    if (
        serving_now is not None
        and goal.hash
        and serving(obs, serving_now)
        and text != obs.last_good
    ):
        plan.last_good = text


def serving_after(obs: Observed, plan: Plan) -> ClusterView | None:
    """The cluster traffic goes to once the plan is carried out."""
    roles = obs.roles
    if plan.clusters.switch:
        return roles.pending
    return None if plan.deleted(roles.active) else roles.active


def pending_after(
    obs: Observed, plan: Plan, created: ClusterView | None = None
) -> ClusterView | None:
    """The cluster being prepared once the plan is carried out (``created`` if
    this pass built one)."""
    pending = obs.roles.pending
    if created is not None:
        return created
    return None if plan.clusters.switch or plan.leaving(pending) else pending


def count_endpoints(cluster: ClusterView | None, pods: Sequence[PodView], plan: Plan) -> int:
    """Ready pods of ``cluster`` the serve Service selects once head labels are flipped."""
    if cluster is None:
        return 0
    relabelled = {pod.name: serving for pod, serving in plan.serve_labels}
    return sum(
        1
        for pod in pods
        if pod.ready and not pod.terminating and relabelled.get(pod.name, pod.serve_label)
    )


def upgrade_cause(plan: Plan, active: ClusterView | None, pending: ClusterView | None) -> str:
    """Why a second cluster exists, for the UpgradeInProgress condition."""
    if active is None or pending is None:
        return ""
    return _why_pending(plan, active, pending) + _progress(plan.shift)


def _progress(shift: Shift | None) -> str:
    """Where an incremental upgrade stands (percentages and what it waits for)."""
    if shift is None:
        return ""
    step, a, p = shift.step, shift.active.name, shift.pending.name
    if shift.step.retreat:
        way = f"moving traffic back ({shift.step.retreat})"
    elif shift.inputs.forward:
        way = "incremental upgrade"
    else:
        way = "rolling back (the spec changed)"
    text = (
        f"; {way}: {p} target_capacity {step.pending.capacity}% traffic "
        f"{step.pending.traffic}%, {a} target_capacity {step.active.capacity}% traffic "
        f"{step.active.traffic}%"
    )
    return text + (f"; {step.waiting}" if step.waiting else "")


def _why_pending(plan: Plan, active: ClusterView, pending: ClusterView) -> str:
    if pending.config_hash != active.config_hash:
        return "rayClusterConfig changed"
    verdict = plan.verdict
    return (
        f"{active.name} is unhealthy: {verdict.message}"
        if verdict and verdict.over
        else "replacing an unhealthy cluster"
    )


def _head_labels(obs: Observed, plan: Plan) -> None:
    exclude = bool(obs.service.spec.exclude_head_pod_from_serve_svc)
    for cluster in _members(obs.roles):
        head = obs.heads.get(cluster.name)
        if head is None or head.terminating or plan.deleted(cluster):
            continue
        wanted = obs.snap(cluster).proxy_healthy and not exclude
        if head.serve_label != wanted:
            plan.serve_labels.append((head, wanted))


def _suspension(obs: Observed, plan: Plan) -> None:
    config = obs.service.spec.ray_cluster_config
    groups = {g.group_name: bool(g.suspend) for g in config.worker_group_specs}
    for cluster in _members(obs.roles):
        if not plan.deleted(cluster):
            ops = suspend_patch(bool(config.suspend), groups, cluster)
            if ops:
                plan.suspension.append((cluster, ops))


def _scaling(obs: Observed, plan: Plan) -> None:
    wanted = group_sizes(obs.service)
    for cluster in _members(obs.roles):
        if plan.deleted(cluster):
            continue
        patch = group_sizes_patch(wanted, cluster)
        if patch is not None:
            plan.scaling.append((cluster, *patch))


def initializing_timeout(service: RayService) -> tuple[float | None, str]:
    """``ray.io/initializing-timeout`` in seconds, or None and why it is unusable."""
    text = service.metadata.annotations.get(labels.INITIALIZING_TIMEOUT)
    if text is None:
        return None, ""
    try:
        return parse_seconds(text), ""
    except ValueError as err:
        return None, f"annotation {labels.INITIALIZING_TIMEOUT}: {err}; no timeout applies"


def _gave_up(service: RayService, type_: str, reason: str) -> bool:
    """The stored condition ``type_`` has ``reason`` for this very spec
    (generation): what an earlier pass gave up stays given up until it changes."""
    status = service.status
    cond = find_condition(status.conditions, type_) if status else None
    return (
        cond is not None
        and cond.reason == reason
        and cond.observed_generation == service.metadata.generation
    )


def gave_up_initializing(service: RayService) -> bool:
    """Initializing timed out: no cluster is built for this spec."""
    return _gave_up(service, "Ready", INITIALIZING_TIMEOUT_REASON)


def gave_up_upgrading(service: RayService) -> bool:
    """The upgrade timed out: its pending cluster is not built again for this spec."""
    return _gave_up(service, UPGRADE_IN_PROGRESS, UPGRADE_TIMED_OUT_REASON)


def _inputs(
    obs: Observed,
    ready: Callable[[ClusterView], bool],
    replace_unhealthy: bool = False,
    migrating: bool = False,
) -> ClusterInputs:
    return ClusterInputs(
        spec=obs.service.spec,
        goal_hash=obs.goal_hash,
        roles=obs.roles,
        now=obs.now,
        ready=ready,
        replace_unhealthy=replace_unhealthy,
        active_gone=obs.active_gone,
        lingering=obs.lingering,
        initializing_timeout=initializing_timeout(obs.service)[0],
        gave_up_initializing=gave_up_initializing(obs.service),
        gave_up_upgrading=gave_up_upgrading(obs.service),
        keep_timed_out=keeps_timed_out(obs.service),
        migrating=migrating,
    )


def incremental(service: RayService) -> bool:
    strategy = service.spec.upgrade_strategy
    return (
        strategy.type == RayServiceUpgradeType.INCREMENTAL
        and strategy.cluster_upgrade_options is not None
    )


def config_of(obs: Observed, cluster: ClusterView) -> ServeGoal | None:
    """The serve config ``cluster`` runs, when the operator knows its text: the
    goal, or the last good one (what an old cluster runs while it is replaced)."""
    if obs.goal.hash and cluster.serve_hash == obs.goal.hash:
        return obs.goal
    if obs.last_good:
        known = parse_serve_config(obs.last_good)
        if known.hash and known.hash == cluster.serve_hash:
            return known
    return None


def _step_inputs(obs: Observed, just_sent: set[str]) -> StepInputs | None:
    roles, options = obs.roles, obs.service.spec.upgrade_strategy.cluster_upgrade_options
    active, pending = roles.active, roles.pending
    if (
        not incremental(obs.service)
        or options is None
        or active is None
        or pending is None
        or not obs.goal.hash
    ):
        return None
    # The pending cluster's record is the split; the active one has the rest.
    traffic = pending.traffic or 0
    return StepInputs(
        options=options,
        active=Share(_capacity(active), 100 - traffic),
        pending=Share(_capacity(pending), traffic),
        migrated_at=pending.traffic_at,
        now=obs.now,
        forward=pending.config_hash == obs.goal_hash,
        pending_serving=pending.name not in just_sent and serving(obs, pending),
        active_adjustable=config_of(obs, active) is not None,
    )


def _capacity(cluster: ClusterView) -> int:
    """The target_capacity Serve runs with there: a config sent without one runs
    at 100; a cluster that has no config yet has none."""
    if cluster.target_capacity is not None:
        return cluster.target_capacity
    return 100 if cluster.serve_hash else 0


def _resize(obs: Observed, plan: Plan, cluster: ClusterView, want: int) -> None:
    """Send ``want`` as the cluster's target_capacity: with its next submission,
    or on its own with the config it runs."""
    plan.capacity[cluster.name] = want
    if _capacity(cluster) == want or any(c.name == cluster.name for c, _ in plan.submit):
        return
    config = config_of(obs, cluster)
    if config is not None and obs.head_ready(cluster) and obs.snap(cluster).reachable:
        plan.resize.append((cluster, config))


def _traffic_notes(plan: Plan, cluster: ClusterView, percent: int, now: datetime) -> None:
    if cluster.traffic != percent:
        note = {labels.TRAFFIC_PERCENT: str(percent), labels.TRAFFIC_MIGRATED_AT: format_time(now)}
        plan.notes.append((cluster, note))


def _select(obs: Observed, plan: Plan, shift: Shift, weight: int) -> Selection:
    """Label the pods the serve Service selects while traffic is split: the
    pending cluster's share of endpoints as near its weight as whole pods allow,
    every other pod of the service unlabelled."""
    name = obs.service.metadata.name
    relabelled = {pod.name: wanted for pod, wanted in plan.serve_labels}
    labelled = frozenset(
        p.name for pods in obs.pods.values() for p in pods if p.serve_traffic == name
    )
    a, p = shift.active.name, shift.pending.name
    selection = endpoints(
        weight,
        (p, candidates(obs.pods.get(p, ()), relabelled)),
        (a, candidates(obs.pods.get(a, ()), relabelled)),
        labelled,
    )
    chosen = {pod for names in selection.chosen.values() for pod in names}
    for pods in obs.pods.values():
        for pod in pods:
            if pod.terminating:
                continue
            if pod.name in chosen and pod.serve_traffic != name:
                plan.traffic_labels.append((pod, True))
            elif pod.name not in chosen and pod.serve_traffic == name:
                plan.traffic_labels.append((pod, False))
    # Added before removed: the Service never has fewer endpoints than either set.
    plan.traffic_labels.sort(key=lambda item: not item[1])
    return selection


def _unlabel(obs: Observed, plan: Plan) -> None:
    """The split is over: its label leaves the pods, once the serve Service is
    seen selecting one cluster again (removed sooner, the Service, still
    selecting by the label, would have no endpoints until it is re-applied)."""
    if obs.split_selector:
        return
    name = obs.service.metadata.name
    for pods in obs.pods.values():
        for pod in pods:
            if pod.serve_traffic == name and not pod.terminating:
                plan.traffic_labels.append((pod, False))


def _incremental(obs: Observed, plan: Plan, inputs: StepInputs | None, step: Step | None) -> None:
    """Carry an incremental upgrade's step into the plan (capacities, traffic
    records, pod labels, the serve Service's selector)."""
    roles = obs.roles
    active, pending = roles.active, roles.pending
    if inputs is None or step is None or active is None or pending is None:
        if incremental(obs.service) and active is not None and pending is None:
            # No second cluster (deleted by hand mid-way): all of it to the one left.
            if active.target_capacity is not None:
                _resize(obs, plan, active, 100)
            if active.traffic is not None:
                _traffic_notes(plan, active, 100, obs.now)
        _unlabel(obs, plan)
        return
    shift = Shift(inputs, step, active, pending)
    if plan.deleted(pending):
        plan.shift = shift
        return
    _resize(obs, plan, pending, step.pending.capacity)
    if not plan.clusters.switch:
        _resize(obs, plan, active, step.active.capacity)
    if step.traffic_moved(inputs) or pending.traffic is None:
        _traffic_notes(plan, pending, step.pending.traffic, obs.now)
        _traffic_notes(plan, active, step.active.traffic, obs.now)
    # With a Gateway the HTTPRoute's weights split traffic; the serve Service
    # stays on the active cluster, as in KubeRay.
    by_labels = gateway_class(obs.service) is None
    weight = shift.routed
    if not plan.clusters.switch and weight > 0 and by_labels:
        plan.shared_serve = True
        shift = Shift(inputs, step, active, pending, _select(obs, plan, shift, weight))
    elif not plan.clusters.switch:
        _unlabel(obs, plan)
    plan.shift = shift


def decide(obs: Observed) -> Plan:
    if obs.service.spec.suspend:
        # Nothing is submitted, judged or copied: the clusters are going away.
        return Plan(plan_clusters(_inputs(obs, ready=lambda c: False)))
    judged = assess(obs)
    submits = [(c, why) for c in _members(obs.roles) if (why := submission(obs, c))]
    if being_replaced(obs):
        # Only the config it already runs, restored after its head lost it.
        submits = [
            (c, why)
            for c, why in submits
            if c is not obs.roles.active or c.serve_hash == obs.goal.hash
        ]
    just_sent = {c.name for c, _ in submits}
    stepping = _step_inputs(obs, just_sent)
    step = plan_step(stepping) if stepping is not None else None
    inputs = _inputs(
        obs,
        ready=(lambda c: step.promote)
        if step is not None
        else (lambda c: c.name not in just_sent and serving(obs, c)),
        replace_unhealthy=judged.replace,
        migrating=stepping is not None
        and step is not None
        and (stepping.pending.traffic > 0 or step.pending.traffic > 0 or step.settling),
    )
    plan = Plan(plan_clusters(inputs), verdict=judged.verdict)
    active = obs.roles.active
    if active is not None and judged.record is not None and judged.record != active.health:
        plan.notes.append((active, {labels.SERVE_HEALTH: judged.record.to_json()}))
    plan.submit = [(c, why) for c, why in submits if not plan.leaving(c)]
    in_place = (
        active is not None
        and obs.roles.pending is None
        and plan.clusters.create is None
        and not plan.leaving(active)
    )
    plan.rollback = plan_rollback(
        obs.service,
        obs.goal,
        active,
        obs.snap(active) if active is not None else UNREACHABLE,
        obs.last_good,
        obs.now,
        in_place=in_place,
    )
    _bookkeeping(obs, plan)
    _head_labels(obs, plan)
    _incremental(obs, plan, stepping, step)
    _scaling(obs, plan)
    _suspension(obs, plan)
    drifted = active is not None and active.config_hash != obs.goal_hash
    acted_on_health = plan.clusters.create == CreateReason.UNHEALTHY or (
        judged.replace and not drifted and plan.deleted(active)
    )
    if acted_on_health and judged.verdict is not None and judged.verdict.replaces:
        plan.replacements = health.after_attempt(obs.replacements, judged.verdict.reason, obs.now)
    return plan


def submitted_notes(goal: ServeGoal, now: datetime) -> dict[str, str | None]:
    """What a cluster records once the goal config was accepted by its head (a
    new config: any rollback recorded there is history)."""
    return {
        labels.SERVE_CONFIG_HASH: goal.hash,
        labels.SERVE_CONFIG_SUBMITTED_AT: format_time(now),
        labels.SERVE_CONFIG_ROLLED_BACK: None,
        labels.SERVE_CONFIG_ROLLBACK_CAUSE: None,
    }
