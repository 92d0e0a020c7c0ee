"""The operator stopped dead at every crash point of a pass, then restarted.

Each flow (first creation, in-place serve update, blue-green upgrade,
automatic rollback of a failing serve config, incremental upgrade) runs on
the in-memory API server and Ray dashboards with a clock the test moves. A
first run records every crash point the flow reaches (``CrashPoints`` of
``handlers/crashpoints.py``) and whether the pass wrote anything (to the
store or a head) since the point before; then, for each such reaching and
each point's first reaching, the flow runs again and the operator is stopped
there (``Crashed`` raised out of the pass: what ``os._exit`` is in a real
process), its whole runtime thrown away, and a fresh one (a restarted
process: only what the store and the heads hold survives) runs until the flow
settles. Checked, during and after:

- at most one serving and one pending cluster at any time (clusters with a
  deletion time set are on their way out), at most one head pod per cluster;
- the end equals the run without a crash: the same objects (cluster names
  aside), pods, Services and their selectors, conditions, the config each
  head runs;
- no RayCluster or pod created beyond that run's, and no serve config sent
  to a head more than once beyond what that run sent (a crash between a PUT
  and its annotation costs one resend, never more); the last good config's
  Secret as in that run;
- no missed deletion: the flow settles only with the old clusters gone.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from raykube.adapters.kube import PODS, RAYCLUSTERS, RAYSERVICES, SECRETS, SERVICES
from raykube.builders import labels
from raykube.decisions import rayservice as decisions
from raykube.decisions.rayservice_config import parse_serve_config
from raykube.decisions.rayservice_rollback import interrupted, plan_rollback
from raykube.handlers import crashpoints, rayservice_observe
from raykube.handlers import raycluster as raycluster_handler
from raykube.handlers import rayservice as rayservice_handler
from raykube.handlers.crashpoints import POINTS, Crashed, CrashPoints
from raykube.settings import Settings
from raykube.timefmt import format_time
from tests.unit import rayservice_helpers as helpers
from tests.unit.fakedashboard import FakeServe
from tests.unit.fakekube import FakeKube
from tests.unit.harness import NS, Harness, running

NAME = "rs"
DELAY = 20  # rayClusterDeletionDelaySeconds
TICK = 5  # seconds the clock moves between ticks
BAD_PRICE = 99  # a serve config the fake heads fail to deploy
FULL = 2  # workers of a cluster at full size


def serve_config(price: int) -> str:
    app = {
        "name": "fruit_app",
        "import_path": "fruit.deployment_graph",
        "route_prefix": "/fruit",
        "deployments": [{"name": "MangoStand", "user_config": {"price": price}}],
    }
    return yaml.safe_dump({"applications": [app]})


def manifest(incremental: bool = False) -> dict[str, Any]:
    def container(name: str) -> dict[str, Any]:
        return {"name": name, "image": "ray:1"}

    spec: dict[str, Any] = {
        "serveConfigV2": serve_config(3),
        "rayClusterDeletionDelaySeconds": DELAY,
        "rayClusterConfig": {
            "rayVersion": "2.60.0",
            "enableInTreeAutoscaling": incremental,
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [container("ray-head")]}},
            },
            "workerGroupSpecs": [
                {
                    "groupName": "small",
                    "replicas": FULL,
                    "minReplicas": 1,
                    "maxReplicas": FULL,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [container("ray-worker")]}},
                }
            ],
        },
    }
    if incremental:
        spec["upgradeStrategy"] = {
            "type": "NewClusterWithIncrementalUpgrade",
            "clusterUpgradeOptions": {
                "maxSurgePercent": 50,
                "stepSizePercent": 50,
                "intervalSeconds": TICK,
            },
        }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": spec,
    }


# --- the world: the kubelet, Ray's autoscaler and the heads' Serve -----------------------


START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    kube: FakeKube
    serve: FakeServe
    clock: Clock
    #: Ray's autoscaler sizes worker groups to Serve's target_capacity.
    autoscaling: bool = False
    recorder: Recorder | None = None

    def pass_starts(self) -> None:
        """What the world did between passes is no step's write."""
        if self.recorder is not None:
            self.recorder.last = self.fingerprint()

    def clusters(self) -> list[dict[str, Any]]:
        """Stored RayClusters in creation order (the store keeps insertion
        order); read, never changed, so not copied."""
        return [obj for (kind, _, _), obj in self.kube.objects.items() if kind == RAYCLUSTERS.kind]

    def live(self) -> list[str]:
        return [
            c["metadata"]["name"]
            for c in self.clusters()
            if not c["metadata"].get("deletionTimestamp")
        ]

    def head(self, cluster: str) -> Any:
        return self.serve.head(NS, labels.head_service_name(cluster))

    def puts(self) -> int:
        return sum(h.requests["PUT /api/serve/applications/"] for h in self.serve.heads.values())

    def fingerprint(self) -> tuple[int, int]:
        """Changes when anything is written to the store or sent to a head."""
        return self.kube.revision, self.puts()

    def status(self) -> dict[str, Any]:
        found = self.kube.stored(RAYSERVICES, NS, NAME)
        assert found is not None
        status: dict[str, Any] = found.get("status") or {}
        return status

    def conditions(self) -> dict[str, tuple[str, str]]:
        conds = self.status().get("conditions") or []
        return {c["type"]: (c["status"], c["reason"]) for c in conds}

    def pods(self, cluster: str) -> list[dict[str, Any]]:
        return [
            p
            for (kind, _, _), p in self.kube.objects.items()
            if kind == PODS.kind
            and p["metadata"]["labels"].get(labels.CLUSTER) == cluster
            and not p["metadata"].get("deletionTimestamp")
        ]

    def kubelet(self) -> None:
        """Every pod of every cluster Running and Ready, each with its own IP."""
        for cluster in self.live():
            for pod in self.pods(cluster):
                conds = (pod.get("status") or {}).get("conditions") or []
                if not any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                    name = pod["metadata"]["name"]
                    ip = f"10.1.{len(name) % 250}.{sum(name.encode()) % 250 + 1}"
                    self.kube.set_pod_ready(NS, name, ip=ip)

    def autoscale(self) -> None:
        """Ray's autoscaler: workers for the share of full size that Serve's
        target_capacity asks (at least one), victims named on the way down."""
        for cluster in self.live():
            sent = self.head(cluster).submitted
            if not self.autoscaling or not sent:
                continue
            cap = sent[-1].get("target_capacity", 100)
            want = min(max(math.ceil(FULL * cap / 100), 1), FULL)
            have = sorted(p["metadata"]["name"] for p in self.pods(cluster)
                          if p["metadata"]["labels"].get(labels.NODE_TYPE) == "worker")  # fmt: skip
            group = self.kube.objects[(RAYCLUSTERS.kind, NS, cluster)]["spec"]["workerGroupSpecs"][
                0
            ]
            victims = have[want:] if len(have) > want else []
            if (
                group["replicas"] == want
                and (group.get("scaleStrategy") or {}).get("workersToDelete", []) == victims
            ):
                continue

            def change(rc: dict[str, Any], want: int = want, victims: list[str] = victims) -> None:
                g = rc["spec"]["workerGroupSpecs"][0]
                g["replicas"] = want
                g["scaleStrategy"] = {"workersToDelete": victims}

            self.kube.mutate(RAYCLUSTERS, NS, cluster, change)

    def serve_reports(self) -> None:
        """A head whose last config carries BAD_PRICE fails to deploy it."""
        for head in self.serve.heads.values():
            if not head.submitted:
                continue
            bad = f'"price": {BAD_PRICE}' in json.dumps(head.submitted[-1])
            want = "DEPLOY_FAILED" if bad else "RUNNING"
            why = "Traceback ...\nValueError: reconfigure refused" if bad else ""
            if any(a["status"] != want for a in head.applications.values()):
                head.set_status(want, why)

    def check(self) -> None:
        """What must hold at every moment, a crash included."""
        serving = [
            c["metadata"]["name"]
            for c in self.clusters()
            if not c["metadata"].get("deletionTimestamp")
            and labels.DELETE_AFTER not in (c["metadata"].get("annotations") or {})
        ]
        assert len(serving) <= 2, f"more than one serving and one pending cluster: {serving}"
        for cluster in serving:
            heads = [
                p for p in self.pods(cluster)
                if p["metadata"]["labels"].get(labels.NODE_TYPE) == "head"
            ]  # fmt: skip
            assert len(heads) <= 1, f"{cluster} has {len(heads)} head pods"


async def tick(h: Harness, world: World) -> None:
    world.clock.now += timedelta(seconds=TICK)
    world.autoscale()
    for cluster in world.live():
        world.pass_starts()
        await h.cluster_pass(cluster)
        world.kubelet()
        world.pass_starts()
        await h.cluster_pass(cluster)
    world.serve_reports()
    world.pass_starts()
    await h.service_pass(NAME)
    world.serve_reports()
    world.check()


# --- flows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    name: str
    #: What is done to the settled service (None: the RayService is created).
    change: Callable[[World], None] | None
    #: The serve config price the serving head must end up running.
    price: int
    incremental: bool = False


def edit(world: World, change: Callable[[dict[str, Any]], None]) -> None:
    world.kube.mutate(RAYSERVICES, NS, NAME, lambda rs: change(rs["spec"]))


def price(value: int) -> Callable[[World], None]:
    def run(world: World) -> None:
        def change(spec: dict[str, Any]) -> None:
            spec["serveConfigV2"] = serve_config(value)

        edit(world, change)

    return run


def image(world: World) -> None:
    def change(spec: dict[str, Any]) -> None:
        cfg = spec["rayClusterConfig"]
        for part in [cfg["headGroupSpec"], *cfg["workerGroupSpecs"]]:
            part["template"]["spec"]["containers"][0]["image"] = "ray:2"

    edit(world, change)


FLOWS = {
    f.name: f
    for f in (
        Flow("first-creation", None, 3),
        Flow("in-place-serve-update", price(7), 7),
        Flow("blue-green", image, 3),
        Flow("serve-config-rollback", price(BAD_PRICE), 3),
        Flow("incremental-upgrade", image, 3, incremental=True),
    )
}


def settled(world: World, flow: Flow) -> bool:
    """One cluster left, serving the expected config, Ready, nothing pending."""
    live = world.live()
    if len(world.clusters()) != 1 or len(live) != 1:
        return False
    status = world.status()
    active = (status.get("activeServiceStatus") or {}).get("rayClusterName")
    pending = (status.get("pendingServiceStatus") or {}).get("rayClusterName")
    sent = world.head(live[0]).submitted
    runs = sent[-1]["applications"] if sent else None
    wanted = yaml.safe_load(serve_config(flow.price))["applications"]
    return (
        active == live[0]
        and not pending
        and world.conditions().get("Ready", ("", ""))[0] == "True"
        and runs == wanted
    )


async def settle(h: Harness, world: World, flow: Flow, ticks: int = 60) -> None:
    """Ticks until the flow settled and a whole tick wrote nothing."""
    for _ in range(ticks):
        before = world.fingerprint()
        await tick(h, world)
        if world.fingerprint() == before and settled(world, flow):
            return
    raise AssertionError(f"{flow.name} never settled: {world.conditions()}, {world.live()}")


class Recorder(CrashPoints):
    """Stops nowhere; notes each point reached and whether the world changed
    since the point before."""

    def __init__(self, world: World) -> None:
        super().__init__("")
        self.world = world
        self.last = world.fingerprint()
        self.seen: list[tuple[str, int, bool]] = []

    def reach(self, name: str) -> None:
        super().reach(name)
        now = self.world.fingerprint()
        self.seen.append((name, self.reached[name], now != self.last))
        self.last = now


def stop(name: str) -> None:
    raise Crashed(name)


@dataclass
class Outcome:
    world: World
    crashed: bool = False


@dataclass(frozen=True)
class Before:
    """The world just before the flow's change (copied for each run)."""

    kube: FakeKube
    serve: FakeServe
    now: datetime


async def before(flow: Flow, clock: Clock) -> Before:
    """The RayService settled by a first operator (for a change), or just applied."""
    clock.now = START
    kube = FakeKube()
    kube.now = lambda: format_time(clock.now)
    world = World(kube, FakeServe(), clock, autoscaling=flow.incremental)
    kube.put(manifest(flow.incremental))
    if flow.change is not None:
        async with running(kube=world.kube, serve=world.serve) as h:
            await settle(h, world, Flow("setup", None, 3))
    return Before(kube, world.serve, clock.now)


async def run_flow(
    flow: Flow,
    clock: Clock,
    start: Before,
    crash: tuple[str, int] | None = None,
    record: bool = False,
) -> tuple[Outcome, Recorder | None]:
    """The change made, then driven by an operator armed with ``crash``, and
    after a crash by another on what is left."""
    kube, serve = copy.deepcopy((start.kube, start.serve))
    clock.now = start.now
    world = World(kube, serve, clock, autoscaling=flow.incremental)
    if flow.change is not None:
        flow.change(world)
    armed: CrashPoints | None = None
    recorder = None
    if record:
        armed = recorder = world.recorder = Recorder(world)
    elif crash is not None:
        armed = CrashPoints(*crash, stop=stop)
    outcome = Outcome(world)
    async with running(kube=world.kube, serve=world.serve, crashes=armed) as h:
        try:
            await settle(h, world, flow)
        except Crashed:
            outcome.crashed = True
            world.check()
    if outcome.crashed:
        async with running(kube=world.kube, serve=world.serve) as h:
            await settle(h, world, flow)
    return outcome, recorder


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock the handlers read and the world moves. Heads are asked afresh
    on every pass, and cluster status writes are not paced by the wall clock."""
    found = Clock()
    monkeypatch.setattr(rayservice_handler, "now_utc", found)
    monkeypatch.setattr(rayservice_observe, "MIN_POLL_INTERVAL", 0.0)
    monkeypatch.setattr(raycluster_handler, "STATUS_PACE_SECONDS", 0.0)
    return found


# --- what is compared ----------------------------------------------------------------------


def creations(world: World, kind: str) -> int:
    return sum(1 for r in world.kube.log if r.verb == "create" and r.kind == kind)


def summary(world: World) -> dict[str, Any]:
    """The settled world, cluster names and random suffixes aside."""
    (cluster,) = world.live()

    def norm(value: Any) -> Any:
        return json.loads(json.dumps(value).replace(cluster, "<cluster>"))

    objects = sorted(
        (kind, norm(name)) for (kind, _, name) in world.kube.objects if kind != PODS.kind
    )
    pods = sorted(
        (p["metadata"]["labels"].get(labels.NODE_TYPE), p["metadata"]["labels"].get(labels.GROUP))
        for p in world.pods(cluster)
    )
    services = sorted(
        (norm(s["metadata"]["name"]), norm(s["spec"].get("selector")))
        for s in world.kube.all(SERVICES, NS)
    )
    rc = world.kube.stored(RAYCLUSTERS, NS, cluster)
    assert rc is not None
    secrets = sorted(
        (name, obj.get("data"))
        for (kind, _, name), obj in world.kube.objects.items()
        if kind == SECRETS.kind
    )
    return {
        "secrets": secrets,
        "objects": objects,
        "pods": pods,
        "services": services,
        "cluster spec": norm(rc["spec"]),
        "conditions": world.conditions(),
        "runs": world.head(cluster).submitted[-1],
    }


def total_puts(world: World) -> Counter[str]:
    """Each config sent to each head, how often; heads by their cluster's
    creation order (names are random)."""
    created = [r.name for r in world.kube.log if r.verb == "create" and r.kind == RAYCLUSTERS.kind]
    order = {labels.head_service_name(name): i for i, name in enumerate(created)}
    found: Counter[str] = Counter()
    for (_, service), head in world.serve.heads.items():
        where = order.get(service, service)
        found.update(f"{where} {json.dumps(b, sort_keys=True)}" for b in head.submitted)
    return found


# --- the tests ---------------------------------------------------------------------------


def differences(
    world: World, expected: dict[str, Any], created: tuple[int, int], puts: Counter[str]
) -> list[str]:
    """How a run after a crash ended otherwise than the run without one."""
    got = summary(world)
    found = [f"{k}: {got[k]} != {v}" for k, v in expected.items() if got[k] != v]
    again = creations(world, RAYCLUSTERS.kind), creations(world, PODS.kind)
    if again != created:
        found.append(f"RayClusters, pods created {again} != {created}")
    sent = total_puts(world)
    if set(sent) != set(puts):
        found.append("other serve configs sent")
    extra = sum((sent - puts).values())
    if extra > 1:
        found.append(f"{extra} serve configs sent again: {sent - puts}")
    return found


def chosen(recorder: Recorder) -> list[tuple[str, int]]:
    """Where to crash: every reaching of a point that follows a change (a
    step that wrote), and each point's first reaching besides."""
    picks = [(name, n) for name, n, changed in recorder.seen if changed]
    firsts = {name: n for name, n, _ in reversed(recorder.seen) if n == 1}
    picks += [(name, 1) for name in firsts if (name, 1) not in picks]
    return picks


@pytest.mark.parametrize("flow", list(FLOWS))
async def test_a_restart_after_a_crash_at_any_point_converges_to_the_same_end(
    flow: str, clock: Clock
) -> None:
    f = FLOWS[flow]
    start = await before(f, clock)
    base, recorder = await run_flow(f, clock, start, record=True)
    assert recorder is not None
    expected = summary(base.world)
    created = creations(base.world, RAYCLUSTERS.kind), creations(base.world, PODS.kind)
    puts = total_puts(base.world)
    points = chosen(recorder)
    assert points, "the flow reached no crash point"
    failed: dict[str, str] = {}
    for point in points:
        outcome, _ = await run_flow(f, clock, start, crash=point)
        where = f"{point[0]}#{point[1]}"
        found = differences(outcome.world, expected, created, puts)
        if not outcome.crashed:
            found.insert(0, "never reached")
        if found:
            failed[where] = found[0]
    assert not failed, failed
    covered = sorted({name for name, _ in points})
    print(f"\n{flow}: {len(points)} crashes at {len(covered)} points: {', '.join(covered)}")


async def test_every_crash_point_is_reached_by_some_flow(clock: Clock) -> None:
    reached: dict[str, set[str]] = {}
    changed: set[str] = set()
    for flow in FLOWS.values():
        _, recorder = await run_flow(flow, clock, await before(flow, clock), record=True)
        assert recorder is not None
        for name, _, moved in recorder.seen:
            reached.setdefault(name, set()).add(flow.name)
            if moved:
                changed.add(name)
    missing = [p for p in POINTS if p not in reached]
    assert not missing, f"crash points no flow reaches: {missing}"
    assert len(POINTS) >= 20
    print(f"\n{len(POINTS)} crash points, each crashed at by the flows that reach it:")
    for point in POINTS:
        mark = "after a write" if point in changed else "no write before it in these flows"
        print(f"  {point}: {', '.join(sorted(reached[point]))} ({mark})")


# --- the setting ---------------------------------------------------------------------------


def test_a_crash_point_is_refused_without_the_test_switch() -> None:
    point = POINTS[0]
    assert crashpoints.refusal(Settings()) == ""
    assert "--test-hooks" in crashpoints.refusal(Settings(test_crash_at=point))
    assert crashpoints.refusal(Settings(test_crash_at=point, test_hooks=True)) == ""
    unknown = crashpoints.refusal(Settings(test_crash_at="nowhere", test_hooks=True))
    assert "unknown crash point 'nowhere'" in unknown
    bad = crashpoints.refusal(Settings(test_crash_at=f"{point}#0", test_hooks=True))
    assert "number >= 1" in bad
    armed = CrashPoints.from_settings(Settings(test_crash_at=f"{point}#3", test_hooks=True))
    assert armed is not None and (armed.name, armed.nth) == (point, 3)
    assert CrashPoints.from_settings(Settings()) is None


def test_the_operator_does_not_start_with_a_crash_point_alone() -> None:
    env = {"PATH": "/usr/bin:/bin", "RAYKUBE_TEST_CRASH_AT": POINTS[0]}
    done = subprocess.run(
        [sys.executable, "-m", "raykube", "--metrics-port=0", "--health-port=0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "is for tests only: it needs --test-hooks" in done.stderr


def test_reaching_the_armed_point_ends_the_process_at_once() -> None:
    code = (
        "from raykube.handlers.crashpoints import CrashPoints\n"
        f"c = CrashPoints({POINTS[1]!r}, 2)\n"
        f"c.reach({POINTS[1]!r})\n"
        "print('first reaching passes', flush=True)\n"
        "try:\n"
        f"    c.reach({POINTS[1]!r})\n"
        "finally:\n"
        "    print('a finally ran')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == crashpoints.CRASH_EXIT_CODE, done.stderr
    assert done.stdout == "first reaching passes\n"
    assert f"stopped at crash point {POINTS[1]}" in done.stderr


def test_the_chart_never_sets_a_test_setting() -> None:
    chart = Path(__file__).resolve().parents[2] / "charts" / "raykube"
    for path in chart.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for word in ("test-crash-at", "TEST_CRASH_AT", "test-hooks", "TEST_HOOKS"):
                assert word not in text, f"{path} names {word}"


def test_a_rollback_stopped_around_its_put_is_finished_not_taken_for_the_failed_config() -> None:
    """The intent (rolled-back hash and cause) is written before the last good
    config is sent; a restart that finds it without the finished notes sends
    that config again at once, and never counts the head's RUNNING apps as the
    failed config's."""
    text = helpers.SERVE.replace("price: 3", f"price: {BAD_PRICE}")
    bad, good = parse_serve_config(text), helpers.SERVE
    rs = helpers.service(serveConfigV2=text)
    begun = helpers.cluster(
        "c1", rs, serve_hash=bad.hash, serve_healthy_hash=parse_serve_config(good).hash,
        rolled_back=bad.hash, rollback_cause="fruit_app DEPLOY_FAILED: ValueError",
        serve_submitted_at=helpers.T0,
    )  # fmt: skip
    assert interrupted(begun, bad)
    rollback = plan_rollback(rs, bad, begun, helpers.RUNNING, good, helpers.T0, in_place=True)
    assert rollback is not None and rollback.to.hash == parse_serve_config(good).hash
    assert rollback.cause == "fruit_app DEPLOY_FAILED: ValueError"
    obs = helpers.observe(rs, [begun], traffic="c1", last_good=good)
    assert not decisions.serving(obs, begun)
    finished = helpers.cluster("c1", rs, serve_hash=parse_serve_config(good).hash,
                               rolled_back=bad.hash)  # fmt: skip
    assert not interrupted(finished, bad)
