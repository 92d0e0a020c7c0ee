"""Which Ray pods to create and delete, given what exists (pure).

Rules (KubeRay's, made explicit):
- exactly one live head; a dead head is deleted, then recreated;
- each worker group keeps ``clamp(replicas, min, max)`` replicas of
  ``numOfHosts`` pods each; every worker carries its replica's index in the
  group (the lowest free one when it was created, as KubeRay numbers them);
- a replica of more than one host is a slice: its hosts are created together
  under one replica name, and a slice that lost a host (dead, deleted, named
  in ``workersToDelete``, orphaned by a new head) is deleted whole; scale-down
  removes whole slices. A slice larger than one pass may create is finished
  by the next passes (``building``); any other incomplete slice is broken;
- pods named in ``scaleStrategy.workersToDelete`` are deleted, exactly those
  (with the rest of their slice);
- while in-tree autoscaling is on, nothing else is ever deleted to scale down
  (Ray's autoscaler names its victims);
- otherwise scale-down victims are chosen deterministically: not ready first,
  then newest first, then by name;
- a suspended cluster (or group) has no pods;
- without GCS fault tolerance a new head is a new Ray cluster: once it is
  Ready, workers whose Ray started before that head pod existed belong to the
  old one (they may linger un-Ready), and workers waiting in a restart
  back-off after a run that began before the head was Ready (they failed to
  reach it; the back-off grows to 5 minutes) are replaced, autoscaling or not,
  and while the head is being replaced no worker is created;
- with ``upgradeStrategy.type: Recreate``, once a pod's template hash differs
  from the spec's, every pod is deleted (and the next passes create them anew).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from raykube.builders import labels
from raykube.builders.pods import pod_template_hash
from raykube.decisions.pods import PodView
from raykube.models.clusterspec import RayClusterUpgradeType
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
    def hosts(self) -> int:
        return max(1, self.num_of_hosts)

    @property
    def desired_replicas(self) -> int:
        if self.suspended:
            return 0
        # KubeRay's order: below min gives min, else above max gives max. The CRD
        # refuses min > max; for an object stored before that rule, max wins over
        # a larger replicas, so a stray min never raises the pod count past max.
        if self.replicas < self.min_replicas:
            return self.min_replicas
        return min(self.replicas, self.max_replicas)

    @property
    def desired(self) -> int:
        """Pods: every host of every replica (what KubeRay's status counts)."""
        return self.desired_replicas * self.hosts


@dataclass(frozen=True)
class ClusterIntent:
    groups: tuple[GroupIntent, ...]
    autoscaling: bool = False
    suspended: bool = False
    #: GCS state survives a head restart (Redis, or rocksdb on a PVC): workers outlive the head.
    fault_tolerant: bool = False
    #: upgradeStrategy.type Recreate: pods of another template hash are replaced.
    recreate: bool = False
    #: The digest every pod built from this spec carries.
    template_hash: str = ""


#: Why a pod is deleted (Deletion.reason; metrics and event messages say it).
RECREATE = "Recreate"
SLICE_INCOMPLETE = "SliceIncomplete"
NOT_IN_SLICE = "NotInSlice"


@dataclass(frozen=True)
class Deletion:
    name: str
    uid: str
    node_type: str
    group: str
    reason: str
    #: The slice deleted with it ("" for a single-host worker or the head).
    replica: str = ""


@dataclass(frozen=True)
class NewReplicas:
    """``count`` new replicas of a group, at the lowest indices not ``taken``."""

    group: str
    count: int
    hosts: int = 1
    taken: frozenset[int] = frozenset()


@dataclass(frozen=True)
class UnfinishedSlice:
    """A slice an earlier pass began: the hosts it still lacks are created."""

    group: str
    index: int
    name: str
    hosts: int
    present: frozenset[int]


@dataclass(frozen=True)
class WorkerToCreate:
    group: str
    replica_index: int
    #: The slice's name, for a host of a multi-host replica; else None.
    replica_name: str | None = None
    host_index: int = 0


@dataclass
class PodPlan:
    create_head: bool = False
    new_replicas: list[NewReplicas] = field(default_factory=list)
    unfinished: list[UnfinishedSlice] = field(default_factory=list)
    delete: list[Deletion] = field(default_factory=list)

    @property
    def create_workers(self) -> dict[str, int]:
        """group name -> number of worker pods to create."""
        out: dict[str, int] = {}
        for u in self.unfinished:
            out[u.group] = out.get(u.group, 0) + u.hosts - len(u.present)
        for n in self.new_replicas:
            out[n.group] = out.get(n.group, 0) + n.count * n.hosts
        return {g: c for g, c in out.items() if c > 0}

    @property
    def empty(self) -> bool:
        return not (self.create_head or self.create_workers or self.delete)


def workers_to_create(plan: PodPlan, slice_name: Callable[[str], str]) -> Iterator[WorkerToCreate]:
    """Every worker pod the plan creates, lazily (a group may ask for two
    billion): unfinished slices first, then new replicas, each slice's hosts
    in order. ``slice_name(group)`` names a new slice (it is random)."""
    for u in plan.unfinished:
        for host in range(u.hosts):
            if host not in u.present:
                yield WorkerToCreate(u.group, u.index, u.name, host)
    for n in plan.new_replicas:
        for index in _free_indices(n.taken, n.count):
            name = slice_name(n.group) if n.hosts > 1 else None
            for host in range(n.hosts):
                yield WorkerToCreate(n.group, index, name, host)


def still_building(
    plan: PodPlan, sent: Sequence[WorkerToCreate], following: WorkerToCreate | None
) -> frozenset[str]:
    """The slices left unfinished once ``sent`` (the first of
    ``workers_to_create``) are created, ``following`` being the next one: a
    slice the budget cut short, and unfinished ones not reached. The next
    passes finish these; any other slice that lacks a host is broken."""
    started = {w.replica_name for w in sent}
    out = {u.name for u in plan.unfinished if u.name not in started}
    cut = following.replica_name if following is not None else None
    if cut and cut in started:
        out.add(cut)
    return frozenset(out)


def _free_indices(taken: frozenset[int], count: int) -> Iterator[int]:
    index = 0
    while count > 0:
        if index not in taken:
            yield index
            count -= 1
        index += 1


def _delete(pods: Iterable[PodView], reason: str, replica: str = "") -> list[Deletion]:
    return [Deletion(p.name, p.uid, p.node_type, p.group, reason, replica) for p in pods]


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


def _live_head(pods: Sequence[PodView]) -> bool:
    return any(p.node_type == "head" and not p.terminating and not p.dead for p in pods)


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
    building: frozenset[str] = frozenset(),
) -> None:
    mine = [
        p for p in pods if p.node_type == "worker" and p.group == group.name and not p.terminating
    ]
    if group.hosts > 1:
        _plan_slices(group, mine, autoscaling, plan, head, building)
        return
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
        taken = frozenset(p.replica_index for p in remaining if p.replica_index >= 0)
        plan.new_replicas.append(NewReplicas(group.name, diff, 1, taken))
    elif diff < 0 and (not autoscaling or group.suspended):
        victims = sorted(remaining, key=_victim_order)[:-diff]
        plan.delete += _delete(victims, "ScaleDown" if not group.suspended else "GroupSuspended")


def _broken(
    hosts: Sequence[PodView], group: GroupIntent, head: PodView | None, building: frozenset[str]
) -> str:
    """Why a slice must go whole ("" when it stays)."""
    named = set(group.workers_to_delete)
    if any(p.name in named for p in hosts):
        return "WorkersToDelete"
    if any(p.dead for p in hosts):
        return "WorkerPodDead"
    if any(_orphaned(p, head) for p in hosts):
        return "HeadReplaced"
    indices = {p.host_index for p in hosts}
    if len(indices) != len(hosts) or not all(0 <= i < group.hosts for i in indices):
        return SLICE_INCOMPLETE
    if len(hosts) < group.hosts and hosts[0].replica_name not in building:
        return SLICE_INCOMPLETE
    return ""


def _slice_order(hosts: Sequence[PodView]) -> tuple[bool, str, str]:
    """Scale-down order of slices: one with a host not ready first, then the newest."""
    newest = max(p.created for p in hosts)
    inverted = "".join(chr(0x10FFFF - ord(c)) for c in newest)
    return (all(p.ready for p in hosts), inverted, hosts[0].replica_name)


def _plan_slices(
    group: GroupIntent,
    mine: Sequence[PodView],
    autoscaling: bool,
    plan: PodPlan,
    head: PodView | None,
    building: frozenset[str],
) -> None:
    # A host without a slice name (created before slices, or by hand) belongs
    # to no replica that could be kept whole: it is replaced by whole slices.
    plan.delete += _delete((p for p in mine if not p.replica_name), NOT_IN_SLICE)
    slices: dict[str, list[PodView]] = {}
    for p in mine:
        if p.replica_name:
            slices.setdefault(p.replica_name, []).append(p)
    kept: list[list[PodView]] = []
    for name, hosts in sorted(slices.items()):
        reason = _broken(hosts, group, head, building)
        if reason:
            plan.delete += _delete(hosts, reason, name)
        else:
            kept.append(hosts)
    diff = group.desired_replicas - len(kept)
    if diff < 0 and (not autoscaling or group.suspended):
        reason = "ScaleDown" if not group.suspended else "GroupSuspended"
        for hosts in sorted(kept, key=_slice_order)[:-diff]:
            plan.delete += _delete(hosts, reason, hosts[0].replica_name)
            kept.remove(hosts)
    for hosts in kept:
        if len(hosts) < group.hosts:
            present = frozenset(p.host_index for p in hosts)
            name, index = hosts[0].replica_name, hosts[0].replica_index
            plan.unfinished.append(UnfinishedSlice(group.name, index, name, group.hosts, present))
    if diff > 0:
        taken = frozenset(h[0].replica_index for h in kept if h[0].replica_index >= 0)
        plan.new_replicas.append(NewReplicas(group.name, diff, group.hosts, taken))


def _recreate(intent: ClusterIntent, pods: Sequence[PodView]) -> list[Deletion]:
    """Every pod, when one was built from another spec (pods without the stamp,
    from before it existed, never count)."""
    live = [p for p in pods if not p.terminating]
    stale = any(p.template_hash and p.template_hash != intent.template_hash for p in live)
    return _delete(live, RECREATE) if stale else []


def plan_pods(
    intent: ClusterIntent, pods: Sequence[PodView], building: frozenset[str] = frozenset()
) -> PodPlan:
    """``building``: slices an earlier pass began and could not finish."""
    plan = PodPlan()
    if intent.suspended:
        plan.delete = _delete((p for p in pods if not p.terminating), "ClusterSuspended")
        return plan
    if intent.recreate:
        plan.delete = _recreate(intent, pods)
        if plan.delete:
            return plan
    _plan_head(pods, plan)
    head = _ready_head(intent, pods)
    for group in intent.groups:
        _plan_group(group, pods, intent.autoscaling, plan, head, building)
    if not intent.fault_tolerant and not plan.create_head and not _live_head(pods):
        # The head is on its way out (dead, or every pod deleted by Recreate):
        # a worker started now would belong to no head and be replaced again
        # once the new one is Ready. Workers wait for the new head.
        plan.new_replicas, plan.unfinished = [], []
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
    strategy = spec.upgrade_strategy
    return ClusterIntent(
        groups=groups,
        autoscaling=bool(spec.enable_in_tree_autoscaling),
        suspended=bool(spec.suspend),
        fault_tolerant=fault_tolerant(cluster),
        recreate=strategy is not None and strategy.type == RayClusterUpgradeType.RECREATE,
        template_hash=pod_template_hash(cluster),
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
