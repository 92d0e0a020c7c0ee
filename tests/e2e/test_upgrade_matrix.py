"""Upgrades, and upgrades changed mid-way, under continuous load, for both
strategies that build a new cluster (``NewCluster`` and
``NewClusterWithIncrementalUpgrade`` without a Gateway).

One RayService per strategy (the walkthrough's, localized, with Ray's
autoscaler on as the incremental strategy requires) goes through versions A,
B, C, D and E. Each version changes the cluster (an env var: a new cluster
hash) and the serve config together (MangoStand's price), so every answer
says which version, and so which cluster, served it: A answers 6, B 8, C 10,
D 12, E 14. In order:

1. A serves.
2. A -> B -> A: B is reverted mid-way (blue-green: while B starts; incremental:
   once traffic has begun to move to B, which then moves back step by step).
   B is deleted, nothing new is built, A still serves.
3. A -> B -> A -> B: one pending cluster at a time; B ends up serving.
4. B -> C -> D: C is superseded while it starts; D ends up serving, and no
   more than one pending cluster exists at any time.
5. D -> E with the pending cluster's head pod deleted (blue-green: while it
   starts; incremental: once it carries 25% of the traffic, which comes back
   to D at once): the cluster is never promoted with a dead head; E ends up
   serving.

Throughout, the load (12 closed-loop clients, a new connection per request)
goes through ``<rs>-serve-svc``; every answer is checked against the versions
that may serve at that point, and each step prints the load report and the
split of answers per 5 s. Every kubectl sample (once a second) checks that at
most one cluster exists besides those that served.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from e2e import sample, stack
from e2e.kube import (
    Kubectl,
    answers,
    clusters_of,
    eventually,
    is_ready,
    live,
    pod_ready,
    serve_url,
    summary,
    wait_routed,
)
from e2e.load import BackgroundLoad, LoadReport
from localcluster.node import LocalCluster

from .conftest import Stack
from .rayservice import FRUIT, assert_no_failures, finish, with_env

pytestmark = pytest.mark.e2e

#: version -> MangoStand's price; FRUIT asks for 2 mangoes, so the answer is 2x.
PRICES = {"A": 3, "B": 4, "C": 5, "D": 6, "E": 7}
STRATEGIES: dict[str, dict[str, Any]] = {
    "blue-green": {"type": "NewCluster"},
    "incremental": {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "maxSurgePercent": 50,
            "stepSizePercent": 25,
            "intervalSeconds": 3,
        },
    },
}
DELETION_DELAY = 5
LOAD_CLIENTS = 12
STEP_TIMEOUT = 420.0


def answer(version: str) -> str:
    return str(2 * PRICES[version])


def versioned(base: dict[str, Any], version: str) -> dict[str, Any]:
    out = with_env(base, "E2E_VERSION", version)
    config = sample.serve_config(out)
    sample.deployment(config, "fruit_app", "MangoStand")["user_config"]["price"] = PRICES[version]
    return sample.with_serve_config(out, config)


def matrix_service(image: str, name: str, strategy: dict[str, Any]) -> dict[str, Any]:
    doc = sample.localize(sample.load_sample(), image).doc
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["upgradeStrategy"] = copy.deepcopy(strategy)
    spec["rayClusterDeletionDelaySeconds"] = DELETION_DELAY
    cluster = spec["rayClusterConfig"]
    # The incremental strategy needs Ray's autoscaler (KubeRay's rule); both
    # strategies get it so that they run the same clusters.
    cluster["enableInTreeAutoscaling"] = True
    group = cluster["workerGroupSpecs"][0]
    group.update({"replicas": 1, "minReplicas": 1, "maxReplicas": 2})
    return doc


@dataclass
class Matrix:
    k: Kubectl
    local: LocalCluster
    name: str
    strategy: str
    base: dict[str, Any]
    version: str = ""
    #: clusters that served at some point (promoted): they may linger until deleted
    served: set[str] = field(default_factory=set)

    @property
    def incremental(self) -> bool:
        return self.strategy == "incremental"

    def apply(self, version: str) -> None:
        self.version = version
        self.k.apply(versioned(self.base, version))

    def get(self) -> dict[str, Any]:
        return self.k.get("rayservice", self.name) or {}

    @property
    def url(self) -> str:
        return serve_url(self.k, self.name)

    def load(self, what: str, *versions: str) -> BackgroundLoad:
        accept = tuple(2 * PRICES[v] for v in versions)
        name = f"{self.strategy}: {what}"
        return BackgroundLoad(
            name, self.url, *FRUIT, accept=accept, concurrency=LOAD_CLIENTS
        ).start()

    def names(self) -> dict[str, str]:
        return {answer(v): f"{v}" for v in PRICES}


@dataclass
class Sample:
    at: float
    clusters: list[str]
    active: str
    pending: str
    pending_traffic: int | None
    heads: dict[str, tuple[str, bool]]  # cluster -> (head pod uid, ready)


@dataclass
class Watch:
    """Samples a RayService once a second while a step runs; checks that no
    more than one cluster exists besides those that served, and that no
    cluster is promoted while its head pod is not Ready."""

    m: Matrix
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    #: every cluster seen that never served
    built: set[str] = field(default_factory=set)
    promoted: list[tuple[float, str, tuple[str, bool]]] = field(default_factory=list)

    def sample(self) -> Sample:
        m = self.m
        rs = m.get()
        status = rs.get("status") or {}
        active = (status.get("activeServiceStatus") or {}).get("rayClusterName") or ""
        pending_status = status.get("pendingServiceStatus") or {}
        pending = pending_status.get("rayClusterName") or ""
        traffic = pending_status.get("trafficRoutedPercent")
        clusters = sorted(c["metadata"]["name"] for c in clusters_of(m.k, m.name))
        heads: dict[str, tuple[str, bool]] = {}
        for pod in live(m.k.items("pods", "ray.io/node-type=head")):
            cluster = (pod["metadata"].get("labels") or {}).get("ray.io/cluster", "")
            if cluster in clusters:
                heads[cluster] = (pod["metadata"]["uid"], pod_ready(pod))
        s = Sample(time.monotonic() - self.started, clusters, active, pending, traffic, heads)
        if active and active not in m.served:
            self.promoted.append((s.at, active, heads.get(active, ("", False))))
            m.served.add(active)
        unserved = [c for c in clusters if c not in m.served]
        self.built.update(unserved)
        assert len(unserved) <= 1, f"+{s.at:.0f}s more than one pending cluster: {clusters}"
        self.samples.append(s)
        return s

    def until(self, done: Callable[[Sample], bool], what: str) -> Sample:
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            s = self.sample()
            if done(s):
                return s
            time.sleep(1)
        raise AssertionError(
            f"{what} not within {STEP_TIMEOUT:.0f}s: {summary(self.m.k, self.m.name)}"
        )

    def text(self) -> str:
        lines = []
        last = ""
        for s in self.samples:
            traffic = "" if s.pending_traffic is None else f" traffic {s.pending_traffic}%"
            clusters = ", ".join(s.clusters)
            line = f"active {s.active or '-'}, pending {s.pending or '-'}{traffic}; {clusters}"
            if line != last:
                lines.append(f"  +{s.at:>3.0f}s  {line}")
                last = line
        return "\n".join(lines)


def settled(m: Matrix, version: str) -> Callable[[Sample], bool]:
    """One cluster left, it serves, and it answers ``version``."""

    def check(s: Sample) -> bool:
        return (
            len(s.clusters) == 1
            and s.active == s.clusters[0]
            and not s.pending
            and answers(m.url, *FRUIT, 2 * PRICES[version])
        )

    return check


def report(m: Matrix, load: BackgroundLoad, watch: Watch, reports: list[LoadReport]) -> LoadReport:
    result = finish(load, reports)
    print(f"answers per 5 s ({', '.join(f'{v} = {answer(v)}' for v in PRICES)}):")
    print(load.split_text(m.names()))
    print("what the RayService said:")
    print(watch.text())
    return result


@pytest.fixture(scope="module", params=sorted(STRATEGIES))
def matrix(
    request: pytest.FixtureRequest, e2e_stack: Stack, e2e_namespace: str
) -> Iterator[Matrix]:
    strategy: str = request.param
    name = f"rs-{strategy}"
    k = e2e_stack.kubectl(e2e_namespace)
    m = Matrix(
        k,
        e2e_stack.cluster,
        name,
        strategy,
        matrix_service(e2e_stack.images.runtime.ref, name, STRATEGIES[strategy]),
    )
    yield m
    # The next strategy's clusters get the node to themselves.
    k.run("delete", "rayservice", name, "--wait=false", check=False)
    eventually(
        lambda: not k.items("rayclusters", f"ray.io/originated-from-cr-name={name}"),
        300,
        f"{name}'s clusters to be deleted",
    )


@pytest.mark.timeout(1800)
def test_1_version_a_serves(matrix: Matrix) -> None:
    m = matrix
    m.apply("A")
    eventually(lambda: is_ready(m.get()), 600, f"{m.name} Ready")
    wait_routed(m.url, *FRUIT, programmed=stack.routes(m.local, m.url))
    watch = Watch(m)
    watch.until(settled(m, "A"), "A serving")
    assert m.served == set(watch.samples[-1].clusters)


@pytest.mark.timeout(900)
def test_2_a_b_a_reverts_without_building_anything(
    matrix: Matrix, load_reports: list[LoadReport]
) -> None:
    m = matrix
    (a,) = m.served
    load = m.load("A -> B -> A", "A", "B")
    watch = Watch(m)
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        m.apply("B")
        if m.incremental:
            # Reverted once traffic has begun to move: it must move back.
            watch.until(lambda s: (s.pending_traffic or 0) >= 25, "traffic to begin moving to B")
        else:
            watch.until(lambda s: bool(s.pending), "B's cluster")
        m.apply("A")
        watch.until(settled(m, "A"), "A alone again")
        time.sleep(3)
    finally:
        result = report(m, load, watch, load_reports)
    assert_no_failures(result)
    assert len(watch.built) == 1, watch.built
    assert m.served == {a}, "a reverted upgrade promoted its cluster"
    if m.incremental:
        # B served some of the traffic, then none: A has all of it since.
        assert answer("B") in load.seen, load.seen
    else:
        assert answer("B") not in load.seen, load.seen


@pytest.mark.timeout(900)
def test_3_a_b_a_b_converges_on_one_pending_cluster(
    matrix: Matrix, load_reports: list[LoadReport]
) -> None:
    m = matrix
    load = m.load("A -> B -> A -> B", "A", "B")
    watch = Watch(m)
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        m.apply("B")
        watch.until(lambda s: bool(s.pending), "B's cluster")
        m.apply("A")
        watch.sample()
        m.apply("B")
        watch.until(settled(m, "B"), "B alone, serving")
        time.sleep(3)
    finally:
        result = report(m, load, watch, load_reports)
    assert_no_failures(result)
    assert len(watch.built) <= 2, watch.built
    assert len(watch.promoted) == 1, watch.promoted
    first_b, _ = load.seen[answer("B")]
    _, last_a = load.seen[answer("A")]
    if not m.incremental:
        # Blue-green switches at once: A's answers end when B's begin (1 s of
        # slack for requests already inside a replica).
        assert last_a <= first_b + 1.0, load.seen


@pytest.mark.timeout(900)
def test_4_b_c_d_supersedes_the_pending_cluster(
    matrix: Matrix, load_reports: list[LoadReport]
) -> None:
    m = matrix
    load = m.load("B -> C -> D", "B", "C", "D")
    watch = Watch(m)
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        m.apply("C")
        watch.until(lambda s: bool(s.pending), "C's cluster")
        m.apply("D")
        watch.until(settled(m, "D"), "D alone, serving")
        time.sleep(3)
    finally:
        result = report(m, load, watch, load_reports)
    assert_no_failures(result)
    assert len(watch.promoted) == 1, watch.promoted
    assert answer("C") not in load.seen, "the superseded version C served"


@pytest.mark.timeout(900)
def test_5_pending_head_killed_is_never_promoted(
    matrix: Matrix, load_reports: list[LoadReport]
) -> None:
    m = matrix
    load = m.load("D -> E, pending head pod deleted", "D", "E")
    watch = Watch(m)
    killed, killed_at = "", 0.0
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        m.apply("E")
        if m.incremental:
            # Killed while it carries traffic: the traffic must come back at once.
            s = watch.until(
                lambda s: (s.pending_traffic or 0) >= 25 and s.pending in s.heads,
                "traffic to begin moving to E",
            )
        else:
            s = watch.until(
                lambda s: bool(s.pending) and s.pending in s.heads, "E's cluster and its head pod"
            )
        killed, killed_at = s.heads[s.pending][0], s.at
        pod = [
            p["metadata"]["name"]
            for p in m.k.items("pods", f"ray.io/cluster={s.pending},ray.io/node-type=head")
            if p["metadata"]["uid"] == killed
        ]
        m.k.run("delete", "pod", *pod, "--wait=false")
        watch.until(settled(m, "E"), "E alone, serving")
        time.sleep(3)
    finally:
        result = report(m, load, watch, load_reports)
    assert_no_failures(result)
    ((_, cluster, (head_uid, head_ready)),) = watch.promoted
    assert head_uid != killed and head_ready, (cluster, head_uid, killed)
    if m.incremental:
        after = [x.pending_traffic for x in watch.samples if x.at > killed_at and x.pending]
        assert 0 in after, f"the traffic did not come back from the dead head: {after}"
