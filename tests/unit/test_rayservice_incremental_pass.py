"""``NewClusterWithIncrementalUpgrade`` without a Gateway, through whole passes
of both controllers on the in-memory API server and Ray dashboards, with a
clock the test moves.

Ray's autoscaler is not here, so ``autoscale`` plays it: each worker group is
sized to the cluster's Serve target_capacity (the share of its full size,
rounded up, within min and max) and scale-down names its victims in
``workersToDelete``, as Ray's autoscaler does. Every tick the invariants are
checked on what the operator wrote (annotations, status, pod labels, the serve
Service) and on what the heads were sent (their ``target_capacity``).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from raykube.adapters.kube import PODS, RAYCLUSTERS, RAYSERVICES
from raykube.builders import labels
from raykube.handlers import rayservice as rayservice_handler
from raykube.handlers import rayservice_observe
from raykube.timefmt import format_time, parse_time
from tests.unit.harness import NS, Harness

NAME = "rs"
SURGE, STEP, INTERVAL, DELAY = 25, 25, 10, 30
FULL = 4  # workers of a cluster at target_capacity 100, one GPU each

SERVE = yaml.safe_dump(
    {
        "applications": [
            {
                "name": "fruit_app",
                "import_path": "fruit.deployment_graph",
                "route_prefix": "/fruit",
                "deployments": [{"name": "MangoStand", "user_config": {"price": 3}}],
            }
        ]
    }
)


def _container(name: str, image: str, gpu: bool = False) -> dict[str, Any]:
    limits = {"cpu": "1", "memory": "1Gi", **({"nvidia.com/gpu": "1"} if gpu else {})}
    return {"name": name, "image": image, "resources": {"limits": limits, "requests": limits}}


def manifest(image: str = "ray:1") -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "serveConfigV2": SERVE,
            "rayClusterDeletionDelaySeconds": DELAY,
            "upgradeStrategy": {
                "type": "NewClusterWithIncrementalUpgrade",
                "clusterUpgradeOptions": {
                    "maxSurgePercent": SURGE,
                    "stepSizePercent": STEP,
                    "intervalSeconds": INTERVAL,
                },
            },
            "rayClusterConfig": {
                "rayVersion": "2.60.0",
                "enableInTreeAutoscaling": True,
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [_container("ray-head", image)]}},
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "gpu",
                        "replicas": FULL,
                        "minReplicas": 1,
                        "maxReplicas": FULL,
                        "rayStartParams": {},
                        "template": {
                            "spec": {"containers": [_container("ray-worker", image, gpu=True)]}
                        },
                    }
                ],
            },
        },
    }


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))
    drift: float = 0  # seconds each reading moves the clock on: a slow pass

    def __call__(self) -> datetime:
        at = self.now
        self.tick(self.drift)
        return at

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture()
def clock(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Clock:
    found = Clock()
    monkeypatch.setattr(rayservice_handler, "now_utc", found)
    # Every pass asks the heads afresh (the 1 s reuse is for bursts of real events).
    monkeypatch.setattr(rayservice_observe, "MIN_POLL_INTERVAL", 0.0)
    harness.kube.now = lambda: format_time(found.now)
    return found


# --- the world -----------------------------------------------------------------------


def notes(h: Harness, cluster: str) -> dict[str, str]:
    found: dict[str, str] = h.cluster(cluster)["metadata"].get("annotations") or {}
    return found


def capacity(h: Harness, cluster: str) -> int:
    """What Serve runs with there: the last target_capacity sent (100 without one)."""
    sent = [c.get("target_capacity", 100) for c in h.head(cluster).submitted]
    return sent[-1] if sent else 0


def live_clusters(h: Harness) -> list[str]:
    return sorted(
        c["metadata"]["name"]
        for c in h.kube.all(RAYCLUSTERS, NS)
        if not c["metadata"].get("deletionTimestamp")
    )


def workers(h: Harness, cluster: str) -> list[dict[str, Any]]:
    return [p for p in h.pods(cluster, "worker") if not p["metadata"].get("deletionTimestamp")]


def autoscale(h: Harness, cluster: str) -> None:
    """What Ray's autoscaler does with Serve's target_capacity: workers for that
    share of the full size (rounded up, within min and max); on the way down it
    names the workers to delete."""
    cap = capacity(h, cluster)
    have = sorted(p["metadata"]["name"] for p in workers(h, cluster))

    def change(rc: dict[str, Any]) -> None:
        group = rc["spec"]["workerGroupSpecs"][0]
        want = min(max(math.ceil(FULL * cap / 100), group["minReplicas"]), group["maxReplicas"])
        group["replicas"] = want
        victims = have[want:] if len(have) > want else []
        group["scaleStrategy"] = {"workersToDelete": victims}

    h.kube.mutate(RAYCLUSTERS, NS, cluster, change)


def gpus(h: Harness) -> int:
    """GPUs requested by the live pods of every cluster of the service."""
    total = 0
    for cluster in live_clusters(h):
        for pod in h.pods(cluster):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            for c in pod["spec"]["containers"]:
                total += int(
                    ((c.get("resources") or {}).get("requests") or {}).get("nvidia.com/gpu", 0)
                )
    return total


async def settle_pods(h: Harness) -> None:
    """The kubelet's part and the RayCluster controller's: every pod Ready."""
    for cluster in live_clusters(h):
        if h.head(cluster).submitted:
            autoscale(h, cluster)
        await h.cluster_pass(cluster)
        await h.cluster_pass(cluster)
        for pod in h.pods(cluster):
            if not _ready(pod):
                h.kube.set_pod_ready(NS, pod["metadata"]["name"], ip=_ip(pod["metadata"]["name"]))
        await h.cluster_pass(cluster)


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _ip(name: str) -> str:
    digest = sum(name.encode()) % 250
    return f"10.1.{len(name) % 250}.{digest + 1}"


def status(h: Harness) -> dict[str, Any]:
    found: dict[str, Any] = h.rayservice(NAME).get("status") or {}
    return found


def conditions(h: Harness) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status(h).get("conditions") or []}


def selected(h: Harness) -> dict[str, list[str]]:
    """Ready serving pods the serve Service selects now, by cluster."""
    svc = h.service(f"{NAME}-serve-svc")
    assert svc is not None
    selector = svc["spec"]["selector"]
    found: dict[str, list[str]] = {}
    for pod in h.kube.all(PODS, NS):
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") or not _ready(pod):
            continue
        if all(meta["labels"].get(k) == v for k, v in selector.items()):
            found.setdefault(meta["labels"][labels.CLUSTER], []).append(meta["name"])
    return found


def candidates(h: Harness, cluster: str) -> int:
    return sum(
        1
        for p in h.pods(cluster)
        if _ready(p)
        and not p["metadata"].get("deletionTimestamp")
        and p["metadata"]["labels"].get(labels.SERVE) == "true"
    )


async def reasons(h: Harness) -> list[str]:
    await h.events_posted()
    return [e.reason for e in h.kube.events]


async def messages(h: Harness, reason: str) -> list[str]:
    await h.events_posted()
    return [e.message for e in h.kube.events if e.reason == reason]


# --- the run -------------------------------------------------------------------------


@dataclass
class Tick:
    at: datetime
    capacity: dict[str, int]
    traffic: dict[str, int]
    selected: dict[str, int]
    gpus: int


@dataclass
class Watch:
    """Each tick's figures, and the invariants checked as they come."""

    old: str
    new: str
    ticks: list[Tick] = field(default_factory=list)

    def check(self, h: Harness, clock: Clock) -> Tick:
        live = live_clusters(h)
        cap = {c: capacity(h, c) for c in (self.old, self.new) if c in live}
        traffic = {
            c: int(notes(h, c)[labels.TRAFFIC_PERCENT])
            for c in cap
            if labels.TRAFFIC_PERCENT in notes(h, c)
        }
        chosen = {c: len(v) for c, v in selected(h).items()}
        tick = Tick(clock.now, cap, traffic, chosen, gpus(h))
        self.ticks.append(tick)
        # Both clusters' capacity within 100 + maxSurgePercent.
        assert sum(cap.values()) <= 100 + SURGE, tick
        # Nobody's traffic beyond its capacity; the shares add up to 100.
        for c, t in traffic.items():
            assert t <= cap[c], (c, tick)
        if len(traffic) == 2:
            assert sum(traffic.values()) == 100, tick
        # The GPU budget: never more than 125% of one cluster's workers.
        assert tick.gpus <= FULL * (100 + SURGE) // 100, tick
        # Only ready pods of these clusters serve, in the share nearest the split.
        if len(chosen) == 2 and self.new in traffic:
            _nearest(self.new, traffic[self.new], chosen, h)
        # The status says what the clusters record (KubeRay's fields).
        st = status(h)
        for key in ("activeServiceStatus", "pendingServiceStatus"):
            entry = st.get(key) or {}
            name = entry.get("rayClusterName")
            if name in traffic:
                assert entry["trafficRoutedPercent"] == traffic[name], (key, entry, tick)
                assert entry["targetCapacity"] == cap[name], (key, entry, tick)
                migrated = notes(h, name)[labels.TRAFFIC_MIGRATED_AT]
                assert entry["lastTrafficMigratedTime"] == migrated, (key, entry)
        return tick

    def pending_traffic(self) -> list[tuple[datetime, int]]:
        return [(t.at, t.traffic[self.new]) for t in self.ticks if self.new in t.traffic]


def _nearest(new: str, weight: int, chosen: dict[str, int], h: Harness) -> None:
    """The endpoints' split is the best whole-pod approximation of ``weight``."""
    (old,) = [c for c in chosen if c != new]
    got = chosen[new] / (chosen[new] + chosen[old])
    best = min(
        abs(k / (k + m) - weight / 100)
        for k in range(0, candidates(h, new) + 1)
        for m in range(0, candidates(h, old) + 1)
        if k + m
    )
    assert abs(got - weight / 100) <= best + 1e-9, (chosen, weight)


def moves(series: list[tuple[datetime, int]]) -> list[tuple[datetime, int]]:
    """The moments the value changed, and what it changed to."""
    out: list[tuple[datetime, int]] = []
    for at, value in series:
        if not out or out[-1][1] != value:
            out.append((at, value))
    return out


async def step(h: Harness, clock: Clock, watch: Watch | None = None, seconds: float = 1) -> None:
    clock.tick(seconds)
    await settle_pods(h)
    await h.service_pass(NAME)
    if watch is not None:
        watch.check(h, clock)


async def first_cluster(h: Harness, clock: Clock) -> str:
    h.kube.put(manifest())
    for _ in range(10):
        await step(h, clock)
        if conditions(h).get("Ready") == ("True", "NonZeroServeEndpoints"):
            (cluster,) = live_clusters(h)
            return cluster
    raise AssertionError(f"not serving: {conditions(h)}")


def change_image(h: Harness, image: str) -> None:
    def change(rs: dict[str, Any]) -> None:
        new = manifest(image)["spec"]["rayClusterConfig"]
        rs["spec"]["rayClusterConfig"] = copy.deepcopy(new)

    h.kube.mutate(RAYSERVICES, NS, NAME, change)


async def upgrade_started(h: Harness, clock: Clock, old: str) -> Watch:
    change_image(h, "ray:2")
    await step(h, clock)
    (new,) = [c for c in live_clusters(h) if c != old]
    group = h.cluster(new)["spec"]["workerGroupSpecs"][0]
    assert group["replicas"] == group["minReplicas"] == 1, "the new cluster starts small"
    return Watch(old, new)


def _intervals_kept(series: list[tuple[datetime, int]]) -> None:
    # The first entry is where the series starts, not a step.
    changes = moves(series)[1:]
    for (t0, _), (t1, _) in itertools.pairwise(changes):
        assert t1 - t0 >= timedelta(seconds=INTERVAL), changes


async def test_an_incremental_upgrade_moves_capacity_and_traffic_step_by_step(
    harness: Harness, clock: Clock
) -> None:
    h = harness
    old = await first_cluster(h, clock)
    watch = await upgrade_started(h, clock, old)
    new = watch.new
    for _ in range(400):
        await step(h, clock, watch)
        if status(h).get("activeServiceStatus", {}).get("rayClusterName") == new:
            break
        assert conditions(h)["UpgradeInProgress"] == ("True", "BothActivePendingClustersExist")
    else:
        raise AssertionError(f"never promoted: {watch.ticks[-1]}")

    # Capacity: the new cluster's head was told 25, 50, 75, 100; the old one's
    # 75, 50, 25, 0 (the config it runs, re-sent with each target_capacity).
    rising = [c.get("target_capacity") for c in h.head(new).submitted]
    falling = [c.get("target_capacity") for c in h.head(old).submitted[1:]]
    assert rising == [25, 50, 75, 100], rising
    assert falling == [75, 50, 25, 0], falling
    assert all(c["applications"] == h.head(old).submitted[0]["applications"]
               for c in h.head(old).submitted)  # fmt: skip
    # Traffic: up by stepSizePercent, never back, never sooner than intervalSeconds.
    series = watch.pending_traffic()
    values = [v for _, v in moves(series)]
    assert values == [0, 25, 50, 75, 100], values
    _intervals_kept(series)
    # Both clusters took traffic through the one serve Service on the way.
    shared = [t for t in watch.ticks if len(t.selected) == 2]
    assert shared and {t.traffic[new] for t in shared} == {25, 50, 75}
    print(
        f"incremental upgrade: {len(watch.ticks)} ticks, max GPUs requested "
        f"{max(t.gpus for t in watch.ticks)} of {FULL} per cluster"
    )

    # Promoted: the Services point at the new cluster alone; the old one is at 0.
    svc = h.service(f"{NAME}-serve-svc")
    assert svc is not None and svc["spec"]["selector"] == labels.serve_selector_labels(new)
    st = status(h)
    assert st["activeServiceStatus"]["targetCapacity"] == 100
    assert st["activeServiceStatus"]["trafficRoutedPercent"] == 100
    assert "lastTrafficMigratedTime" in st["activeServiceStatus"]
    assert not st.get("pendingServiceStatus", {}).get("rayClusterName")
    got = await reasons(h)
    for reason in ("UpdatedTargetCapacity", "TrafficShifted", "SwitchedTraffic",
                   "ScheduledRayClusterDeletion"):  # fmt: skip
        assert reason in got, (reason, got)
    shifted = await messages(h, "TrafficShifted")
    assert len(shifted) == 4 and "100% to RayCluster" in shifted[-1], shifted
    assert "serve endpoint" in shifted[0]
    # The old cluster goes after the deletion delay, not before.
    assert old in live_clusters(h)
    await step(h, clock, seconds=DELAY - 2)
    assert old in live_clusters(h)
    await step(h, clock, seconds=3)
    assert live_clusters(h) == [new]
    assert "DeletedRayCluster" in await reasons(h)
    # Steady afterwards: no pod keeps the split's label.
    await step(h, clock)
    assert not [
        p for p in h.kube.all(PODS, NS) if p["metadata"]["labels"].get(labels.SERVE_TRAFFIC)
    ]


async def test_a_reverted_spec_moves_traffic_back_step_by_step(
    harness: Harness, clock: Clock
) -> None:
    h = harness
    old = await first_cluster(h, clock)
    watch = await upgrade_started(h, clock, old)
    new = watch.new
    for _ in range(200):
        await step(h, clock, watch)
        if watch.ticks[-1].traffic.get(new, 0) >= 50:
            break
    else:
        raise AssertionError(f"traffic never reached 50%: {watch.ticks[-1]}")
    created = (await reasons(h)).count("CreatedRayCluster")
    reverted_at = len(watch.ticks)
    change_image(h, "ray:1")  # back to what the old cluster runs
    for _ in range(200):
        await step(h, clock, watch)
        if new not in live_clusters(h):
            break
        assert conditions(h)["UpgradeInProgress"][0] == "True"
    else:
        raise AssertionError(f"the new cluster was never deleted: {watch.ticks[-1]}")

    back = [(t.at, t.traffic[new]) for t in watch.ticks[reverted_at:] if new in t.traffic]
    values = [v for _, v in moves(back)]
    assert values == [50, 25, 0], values
    _intervals_kept(watch.pending_traffic())
    assert all(t.traffic.get(new, 0) == 0 for t in watch.ticks[-1:])
    # The old cluster was given its capacity back before it took traffic back.
    assert capacity(h, old) == 100
    assert (await reasons(h)).count("CreatedRayCluster") == created, "no new cluster built"
    assert any("Moved traffic back" in m for m in await messages(h, "TrafficShifted"))
    # The pass that deleted it says so.
    assert conditions(h)["UpgradeInProgress"] == ("False", "NoPendingCluster")
    assert not status(h).get("pendingServiceStatus", {}).get("rayClusterName")
    await step(h, clock)
    assert live_clusters(h) == [old]
    svc = h.service(f"{NAME}-serve-svc")
    assert svc is not None and svc["spec"]["selector"] == labels.serve_selector_labels(old)
    st = status(h)
    assert st["activeServiceStatus"]["rayClusterName"] == old
    assert st["activeServiceStatus"]["trafficRoutedPercent"] == 100
    assert conditions(h)["UpgradeInProgress"] == ("False", "NoPendingCluster")
    assert not [
        p for p in h.kube.all(PODS, NS) if p["metadata"]["labels"].get(labels.SERVE_TRAFFIC)
    ]


async def test_a_pass_on_a_stale_cache_after_the_promotion_does_not_promote_again(
    harness: Harness, clock: Clock
) -> None:
    """The watch has not delivered the promotion's status yet: the next pass must
    not read the old roles, switch (and count an upgrade) again and restart the
    old cluster's deletion timer."""
    h = harness
    old = await first_cluster(h, clock)
    await upgrade_started(h, clock, old)
    cache = h.indices["rayservice_objects"]
    switched = (await reasons(h)).count("SwitchedTraffic")
    for _ in range(400):
        clock.tick(1)
        await settle_pods(h)
        cache.freeze()  # what the next passes read of the RayService
        await h.service_pass(NAME)
        if (await reasons(h)).count("SwitchedTraffic") > switched:
            break
        cache.thaw()
    else:
        raise AssertionError("never promoted")
    deletion = notes(h, old)[labels.DELETE_AFTER]
    clock.tick(1)
    await h.service_pass(NAME)  # the cache still shows the status before the promotion
    cache.thaw()
    got = await reasons(h)
    assert got.count("SwitchedTraffic") == switched + 1, got
    assert got.count("ScheduledRayClusterDeletion") == 1, got
    assert notes(h, old).get(labels.DELETE_AFTER) == deletion


async def test_the_deletion_delay_counts_from_the_switch_not_from_the_start_of_the_pass(
    harness: Harness, clock: Clock
) -> None:
    """A pass whose look at the heads took seconds (a silent dashboard) still
    keeps the old cluster the whole delay after the switch it wrote: CI once saw
    a 20 s delay end 18 s after the SwitchedTraffic event."""
    h = harness
    old = await first_cluster(h, clock)
    await upgrade_started(h, clock, old)
    switched = (await reasons(h)).count("SwitchedTraffic")
    slow = 7
    for _ in range(400):
        clock.tick(1)
        await settle_pods(h)
        started = clock.now
        clock.drift = slow  # every later reading in this pass is 7 s on
        await h.service_pass(NAME)
        clock.drift = 0
        if (await reasons(h)).count("SwitchedTraffic") > switched:
            break
    else:
        raise AssertionError("never promoted")
    deletion = parse_time(notes(h, old)[labels.DELETE_AFTER])
    assert deletion is not None
    assert deletion >= started + timedelta(seconds=DELAY + slow)
