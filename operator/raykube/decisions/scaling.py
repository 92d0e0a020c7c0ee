"""Which Ray pods to create and delete, given what exists (pure).

Rules (KubeRay's, made explicit):
- exactly one live head; a dead head is deleted, then recreated;
- each worker group keeps ``clamp(replicas, min, max) * numOfHosts`` pods;
- pods named in ``scaleStrategy.workersToDelete`` are deleted, exactly those;
- while in-tree autoscaling is on, nothing else is ever deleted to scale down
  (Ray's autoscaler names its victims);
- otherwise scale-down victims are chosen deterministically: not ready first,
  then newest first, then by name;
- a suspended cluster (or group) has no pods;
- without GCS fault tolerance a new head is a new Ray cluster: once it is
  Ready, workers whose Ray started before that head pod existed belong to the
  old one (they may linger un-Ready), and workers waiting in a restart
  back-off after a run that began before the head was Ready (they failed to
  reach it; the back-off grows to 5 minutes) are replaced, autoscaling or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from raykube.builders import labels
from raykube.decisions.pods import PodView
from raykube.models.raycluster import RayCluster


@dataclass(frozen=True)
class GroupIntent:
    name: str
    replicas: int
    min_replicas: int
    max_replicas: int
    num_of_hosts: int = 1
    workers_to_delete: tuple[str, ...] = ()
    suspended: bool = False

    @property
    def desired(self) -> int:
        if self.suspended:
            return 0
        # KubeRay's order: below min gives min, else above max gives max. The CRD
        # refuses min > max; for an object stored before that rule, max wins over
        # a larger replicas, so a stray min never raises the pod count past max.
        if self.replicas < self.min_replicas:
            clamped = self.min_replicas
        else:
            clamped = min(self.replicas, self.max_replicas)
        return clamped * max(1, self.num_of_hosts)


@dataclass(frozen=True)
class ClusterIntent:
    groups: tuple[GroupIntent, ...]
    autoscaling: bool = False
    suspended: bool = False
    #: GCS state survives a head restart (Redis): workers outlive the head.
    fault_tolerant: bool = False


@dataclass(frozen=True)
class Deletion:
    name: str
    uid: str
    node_type: str
    group: str
    reason: str


@dataclass
class PodPlan:
    create_head: bool = False
    #: group name -> number of worker pods to create
    create_workers: dict[str, int] = field(default_factory=dict)
    delete: list[Deletion] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create_head or any(self.create_workers.values()) or self.delete)


def _delete(pods: Iterable[PodView], reason: str) -> list[Deletion]:
    return [Deletion(p.name, p.uid, p.node_type, p.group, reason) for p in pods]


def _victim_order(pod: PodView) -> tuple[bool, str, str]:
    # Not-ready first; among equals the newest (largest timestamp) first.
    inverted = "".join(chr(0x10FFFF - ord(c)) for c in pod.created)
    return (pod.ready, inverted, pod.name)


def _plan_head(pods: Sequence[PodView], plan: PodPlan) -> None:
    heads = [p for p in pods if p.node_type == "head" and not p.terminating]
    dead = [p for p in heads if p.dead]
    plan.delete += _delete(dead, "HeadPodDead")
    alive = sorted((p for p in heads if not p.dead), key=lambda p: (p.created, p.name))
    # More than one live head can only come from a race; keep the oldest.
    plan.delete += _delete(alive[1:], "DuplicateHeadPod")
    any_terminating = any(p.node_type == "head" and p.terminating for p in pods)
    plan.create_head = not alive and not dead and not any_terminating


def _ready_head(intent: ClusterIntent, pods: Sequence[PodView]) -> PodView | None:
    """The Ready head, when workers that predate it are to be replaced."""
    if intent.fault_tolerant:
        return None
    heads = [p for p in pods if p.node_type == "head" and p.ready and not p.terminating]
    return heads[0] if len(heads) == 1 else None


def _orphaned(worker: PodView, head: PodView | None) -> bool:
    started = worker.ray_started
    if head is None or not started or worker.dead:
        return False
    # Strictly before: a worker starting in the head's first second is its own,
    # unless the pod itself predates the head (times have one-second precision;
    # a head is always created before the workers of its own pass, so a worker
    # pod older than the head started under an earlier one).
    if started < head.created or (started == head.created and worker.created < head.created):
        return True
    return worker.backing_off and bool(head.ready_since) and started < head.ready_since


def _plan_group(
    group: GroupIntent,
    pods: Sequence[PodView],
    autoscaling: bool,
    plan: PodPlan,
    head: PodView | None = None,
) -> None:
    mine = [
        p for p in pods if p.node_type == "worker" and p.group == group.name and not p.terminating
    ]
    named = set(group.workers_to_delete)
    requested = [p for p in mine if p.name in named]
    dead = [p for p in mine if p.dead and p.name not in named]
    orphans = [p for p in mine if p.name not in named and _orphaned(p, head)]
    plan.delete += _delete(requested, "WorkersToDelete")
    plan.delete += _delete(dead, "WorkerPodDead")
    plan.delete += _delete(orphans, "HeadReplaced")
    gone = {p.name for p in orphans}
    remaining = [p for p in mine if p.name not in named and not p.dead and p.name not in gone]
    diff = group.desired - len(remaining)
    if diff > 0:
        plan.create_workers[group.name] = diff
    elif diff < 0 and (not autoscaling or group.suspended):
        victims = sorted(remaining, key=_victim_order)[:-diff]
        plan.delete += _delete(victims, "ScaleDown" if not group.suspended else "GroupSuspended")


def plan_pods(intent: ClusterIntent, pods: Sequence[PodView]) -> PodPlan:
    plan = PodPlan()
    if intent.suspended:
        plan.delete = _delete((p for p in pods if not p.terminating), "ClusterSuspended")
        return plan
    _plan_head(pods, plan)
    head = _ready_head(intent, pods)
    for group in intent.groups:
        _plan_group(group, pods, intent.autoscaling, plan, head)
    known = {g.name for g in intent.groups}
    orphans = [
        p for p in pods if p.node_type == "worker" and p.group not in known and not p.terminating
    ]
    plan.delete += _delete(orphans, "WorkerGroupRemoved")
    return plan


def intent_of(cluster: RayCluster) -> ClusterIntent:
    """What the spec asks for, in the terms the plan uses."""
    spec = cluster.spec
    groups = tuple(
        GroupIntent(
            name=g.group_name,
            replicas=g.replicas if g.replicas is not None else 0,
            min_replicas=g.min_replicas or 0,
            max_replicas=g.max_replicas if g.max_replicas is not None else 2**31 - 1,
            num_of_hosts=g.num_of_hosts or 1,
            workers_to_delete=tuple(g.scale_strategy.workers_to_delete or ()),
            suspended=bool(g.suspend),
        )
        for g in spec.worker_group_specs
    )
    return ClusterIntent(
        groups=groups,
        autoscaling=bool(spec.enable_in_tree_autoscaling),
        suspended=bool(spec.suspend),
        fault_tolerant=fault_tolerant(cluster),
    )


def fault_tolerant(cluster: RayCluster) -> bool:
    """GCS fault tolerance, however it is asked for: the options, KubeRay's older
    annotation, or a Redis address given to the head by hand."""
    if cluster.spec.gcs_fault_tolerance_options is not None:
        return True
    if cluster.metadata.annotations.get(labels.FT_ENABLED, "").lower() == "true":
        return True
    head = cluster.spec.head_group_spec.ray_container()
    return any(e.get("name") == "RAY_REDIS_ADDRESS" for e in head.get("env") or [])
