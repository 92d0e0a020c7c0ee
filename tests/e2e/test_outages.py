"""Faults the service must outlive, in the middle of upgrades, with live
traffic through the serve Service.

**Control-plane outages** (blue-green upgrade under way). Every connection
through the node's relay to the API server is reset (the watches of the
operator, the kubelet and kube-proxy end at once); etcd is paused (SIGSTOP)
for 20 s; the kube-apiserver is stopped for 30 s and started again. Traffic
never passes through the control plane, so no request may fail. The release
runs with leader election on, as an HA install does, so the outages reach
its Lease. After each fault the operator must act on a change made at
recovery (``rayClusterDeletionDelaySeconds`` edited, acknowledged by
``status.observedGeneration``) within 30 s, with the same process (a leader
that cannot renew pauses its writes instead of exiting), and the upgrade
must finish as one: one new cluster created, its head and workers created
once, its serve config submitted once, the old cluster deleted after the
delay.

**The operator cut off from one head's dashboard** (its packets to port 8265
dropped on the node), a second RayService beside it. The first one's status
says so before ``deploymentUnhealthySecondThreshold`` has passed, and past
it says the cluster is kept: its head pod is Ready and its Serve proxy
answers, so only the operator's view is lost, and nothing is deleted or
built. The other RayService is unaffected (an edit to it is acknowledged
meanwhile, its conditions stay True). No request fails: the serve path is
not cut.

**Packets to the old head's serve port dropped** (port 8000, from anyone)
while a new cluster comes up: the head's ``ray.io/serve`` label turns false,
``Ready`` is False exactly while no pod serves, and traffic moves to the new
cluster as soon as it serves. Requests that were sent to the head before its
label turned false fail (they are counted and shown, not asserted to zero).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from e2e import stack
from e2e.kube import condition, eventually, is_ready, live
from e2e.load import LoadReport
from localcluster import controlplane, node
from raykube.ports import DASHBOARD_PORT, METRICS_PORT, SERVE_PORT

from .conftest import Stack
from .rayservice import (
    NAME,
    Service,
    Timeline,
    acknowledged,
    assert_no_failures,
    assert_same_cluster,
    cluster_events,
    created_clusters,
    finish,
    pods,
    restarts,
    serving_walkthrough,
    submissions,
    watch_until,
    with_env,
)
from .test_crash_points import assert_converged, operator_pod
from .test_failures import DELETION_DELAY

pytestmark = pytest.mark.e2e

ETCD_PAUSE_S = 20
APISERVER_DOWN_S = 30
#: The operator acts on a change made at recovery within this many seconds.
CONVERGE_S = 30


@pytest.fixture(scope="module")
def svc(e2e_stack: Stack, e2e_namespace: str) -> Service:
    k, image = e2e_stack.kubectl(e2e_namespace), e2e_stack.images.runtime.ref
    return serving_walkthrough(k, image, e2e_stack.cluster, DELETION_DELAY)


Fault = tuple[str, Callable[[], None], Callable[[], None], float]


def faults(e2e_stack: Stack) -> list[Fault]:
    """What each fault is called, how it begins and ends, how long it lasts."""
    cp, relay = e2e_stack.cluster.cp, e2e_stack.cluster.node
    return [
        ("watch connections cut", lambda: node.cut_apiserver_connections(relay), lambda: None, 0),
        (
            f"etcd paused {ETCD_PAUSE_S} s",
            lambda: controlplane.pause_etcd(cp),
            lambda: controlplane.resume_etcd(cp),
            ETCD_PAUSE_S,
        ),
        (
            f"kube-apiserver stopped {APISERVER_DOWN_S} s",
            lambda: controlplane.stop_apiserver(cp),
            lambda: controlplane.start_apiserver(cp),
            APISERVER_DOWN_S,
        ),
    ]


@contextlib.contextmanager
def leader_election(e2e_stack: Stack) -> Iterator[None]:
    """The release with leader election on (one replica elects itself), as an
    HA install runs: the outages then reach the operator's Lease."""

    def upgrade(value: str) -> None:
        stack.helm(
            e2e_stack.cluster, "upgrade", stack.RELEASE, str(stack.CHART),
            "-n", stack.OPERATOR_NAMESPACE, "--reuse-values", "--wait", "--timeout=300s",
            f"--set=leaderElection.enabled={value}",
        )  # fmt: skip

    upgrade("true")
    try:
        yield
    finally:
        upgrade("auto")


@pytest.mark.timeout(1500)
def test_control_plane_outages_mid_upgrade_lose_no_request(
    svc: Service, e2e_stack: Stack, load_reports: list[LoadReport], figures: dict[str, str]
) -> None:
    ops = e2e_stack.kubectl(stack.OPERATOR_NAMESPACE)
    with leader_election(e2e_stack):
        before = eventually(lambda: operator_pod(ops), 120, "the elected operator's pod")
        _outages(svc, e2e_stack, load_reports, figures, before)


def _outages(
    svc: Service,
    e2e_stack: Stack,
    load_reports: list[LoadReport],
    figures: dict[str, str],
    before: dict[str, Any],
) -> None:
    ops = e2e_stack.kubectl(stack.OPERATOR_NAMESPACE)
    load = svc.load("control plane outages mid-upgrade", accept=(6,))
    timeline = Timeline(old=svc.cluster["name"])
    acks: dict[str, float] = {}
    pending_at_fault: dict[str, str] = {}
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        svc.apply(with_env(svc.doc, "E2E_OUTAGE", "1"))
        timeline.started = time.monotonic()
        watch_until(svc, timeline, lambda t: bool(t.pending))

        for n, (what, begin, end, seconds) in enumerate(faults(e2e_stack), start=1):
            timeline.watch(svc.k)
            pending_at_fault[what] = timeline.text()
            begin()
            try:
                time.sleep(seconds)
            finally:
                end()
            acks[what] = acknowledged(svc, DELETION_DELAY + n)

        watch_until(svc, timeline, lambda t: t.done)
    finally:
        report = finish(load, load_reports)
        line = "; ".join(f"{what}: {seconds:.1f} s" for what, seconds in acks.items())
        figures["control plane outages: recovery to the operator acting on an edit"] = line
        figures["control plane outages: upgrade"] = timeline.text()
        print(line)
        for what, state in pending_at_fault.items():
            print(f"  at {what}: {state}")
    assert_no_failures(report)
    assert_converged(svc, timeline)
    new = svc.cluster["name"]
    after = operator_pod(ops)
    assert after is not None
    assert (after["metadata"]["name"], restarts(after)) == (
        before["metadata"]["name"],
        restarts(before),
    ), "the operator restarted"
    created = [m for m in cluster_events(svc.k, NAME, "CreatedRayCluster") if f"/{new}:" in m]
    assert len(created) == 1, created
    assert len(cluster_events(svc.k, new, "CreatedHeadPod")) == 1
    workers = sum(
        int(g.get("replicas", 1))
        for g in svc.doc["spec"]["rayClusterConfig"].get("workerGroupSpecs") or []
    )
    assert len(cluster_events(svc.k, new, "CreatedWorkerPod")) == workers
    assert len(submissions(svc.k, new)) == 1, submissions(svc.k, new)
    assert len(live(svc.k.items("rayclusters"))) == 1
    logs = ops.run("logs", after["metadata"]["name"])
    assert "writes paused until it is renewed" in logs and "writes resume" in logs, (
        "the leader never paused: the outages did not reach its Lease"
    )
    slow = {what: s for what, s in acks.items() if s > CONVERGE_S}
    assert not slow, f"the operator acted later than {CONVERGE_S} s after recovery: {slow}"


# --- network faults ----------------------------------------------------------------------

SERVE = "ray.io/serve"
DASHBOARD_THRESHOLD_S = 40
#: Failed looks at the cut dashboard, past its threshold, with nothing deleted.
LOOKS_PAST_THRESHOLD = 3
METRIC = "raykube_dashboard_request_duration_seconds_count{"
#: The metric's labels, in whatever order they are written.
UNANSWERED_READS = ('code="0"', 'endpoint="GET /api/serve/applications/"')


@pytest.fixture
def other(e2e_stack: Stack) -> Iterator[Service]:
    """The walkthrough RayService again, in a namespace of its own."""
    cp = e2e_stack.cluster.cp
    ns = f"e2e-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("wait", "--for=create", "serviceaccount/default", "-n", ns, "--timeout=60s")
    try:
        k, image = e2e_stack.kubectl(ns), e2e_stack.images.runtime.ref
        yield serving_walkthrough(k, image, e2e_stack.cluster, DELETION_DELAY)
    finally:
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def health(svc: Service) -> tuple[str, str, str]:
    cond = condition(svc.get(), "ServingClusterHealthy")
    return cond.get("status", ""), cond.get("reason", ""), cond.get("message", "")


def failed_looks(pod: dict[str, Any]) -> float:
    """Dashboard reads the operator sent that got no answer, from its metrics."""
    url = f"http://{pod['status']['podIP']}:{METRICS_PORT}/metrics"
    text = httpx.get(url, timeout=10).text
    for line in text.splitlines():
        if line.startswith(METRIC) and all(label in line for label in UNANSWERED_READS):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no unanswered dashboard reads in the operator's metrics ({url})")


@pytest.mark.timeout(1500)
def test_operator_cut_off_from_one_dashboard_keeps_that_cluster_and_the_others(
    svc: Service,
    other: Service,
    e2e_stack: Stack,
    load_reports: list[LoadReport],
    figures: dict[str, str],
) -> None:
    ops = e2e_stack.kubectl(stack.OPERATOR_NAMESPACE)
    operator = operator_pod(ops)
    assert operator is not None
    patch = {"spec": {"deploymentUnhealthySecondThreshold": DASHBOARD_THRESHOLD_S}}
    svc.k.run("patch", "rayservice", NAME, "--type=merge", "-p", json.dumps(patch))
    eventually(lambda: health(svc)[:2] == ("True", "Healthy"), 120, "a healthy service")
    cluster = svc.remember_cluster()
    (head,) = pods(svc.k, cluster["name"], "head")
    built_before = created_clusters(svc.k)
    cut = (
        "-s", operator["status"]["podIP"], "-d", head["status"]["podIP"],
        "-p", "tcp", "--dport", str(DASHBOARD_PORT),
    )  # fmt: skip
    load = svc.load("operator cut off from one head's dashboard", accept=(6,))
    found: dict[str, str] = {}
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        with stack.dropped(e2e_stack.cluster, *cut):
            started = time.monotonic()
            eventually(
                lambda: health(svc)[1] == "DashboardUnreachable", 120, "the status to say so"
            )
            said = time.monotonic() - started
            eventually(lambda: health(svc)[0] == "False", 180, "the threshold to pass")
            past = time.monotonic() - started
            found["kept"] = health(svc)[2]
            looks = failed_looks(operator)
            acked = acknowledged(other, DELETION_DELAY + 1)
            eventually(
                lambda: failed_looks(operator) >= looks + LOOKS_PAST_THRESHOLD,
                180,
                f"{LOOKS_PAST_THRESHOLD} more looks at the cut dashboard",
            )
            assert_same_cluster(svc)
            assert (
                pods(svc.k, cluster["name"], "head")[0]["metadata"]["uid"]
                == head["metadata"]["uid"]
            )
            assert created_clusters(svc.k) == built_before
            assert is_ready(other.get()) and health(other)[:2] == ("True", "Healthy")
        eventually(lambda: health(svc)[:2] == ("True", "Healthy"), 180, "healthy again")
        back = time.monotonic() - started
    finally:
        report = finish(load, load_reports)
    line = (
        f"status said DashboardUnreachable {said:.0f} s after the cut (threshold "
        f"{DASHBOARD_THRESHOLD_S} s), kept past it at {past:.0f} s, Healthy again "
        f"{back:.0f} s after the cut began; the other RayService acknowledged an edit in "
        f"{acked:.1f} s meanwhile"
    )
    print(line)
    figures["operator cut off from one dashboard"] = line
    assert_no_failures(report)
    assert said < DASHBOARD_THRESHOLD_S, line
    assert "only the operator's view is lost" in found["kept"], found["kept"]


@pytest.mark.timeout(1500)
def test_old_heads_serve_port_dropped_mid_upgrade(
    svc: Service, e2e_stack: Stack, load_reports: list[LoadReport], figures: dict[str, str]
) -> None:
    old = svc.remember_cluster()["name"]
    (head,) = pods(svc.k, old, "head")
    drop = ("-d", head["status"]["podIP"], "-p", "tcp", "--dport", str(SERVE_PORT))
    load = svc.load("old head's serve port dropped mid-upgrade", accept=(6,))
    timeline = Timeline(old=old)
    samples: list[tuple[float, bool, int, str]] = []
    unlabelled: float | None = None

    def look(t: Timeline) -> bool:
        nonlocal unlabelled
        rs = svc.get()
        status = rs.get("status") or {}
        endpoints = int(status.get("numServeEndpoints") or 0)
        now = time.monotonic() - t.started
        samples.append((now, is_ready(rs), endpoints, condition(rs, "Ready").get("reason", "")))
        heads = pods(svc.k, old, "head")
        if unlabelled is None and heads and heads[0]["metadata"]["labels"].get(SERVE) == "false":
            unlabelled = now
        return t.switched_at is not None

    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        with stack.dropped(e2e_stack.cluster, *drop):
            svc.apply(with_env(svc.doc, "E2E_SERVE_PORT_DROPPED", "1"))
            timeline.started = time.monotonic()
            watch_until(svc, timeline, look)
        watch_until(svc, timeline, lambda t: t.done)
    finally:
        report = finish(load, load_reports)
    assert_converged(svc, timeline)
    kinds = ", ".join(f"{k} x{n}" for k, n in report.failure_kinds().items()) or "none"
    window = (
        f"between +{report.failures[0].at_s:.1f} s and +{report.failures[-1].at_s:.1f} s"
        if report.failures
        else ""
    )
    line = (
        f"head's ray.io/serve false {unlabelled if unlabelled is None else round(unlabelled)} s "
        f"after the drop; {timeline.text()}; {len(report.failures)} of {report.requests} "
        f"requests failed ({kinds}) {window}"
    )
    print(line)
    print("  +s  Ready  endpoints  reason")
    for at, ready, endpoints, reason in samples:
        print(f"  {at:5.0f}  {ready!s:5}  {endpoints:9}  {reason}")
    figures["old head's serve port dropped mid-upgrade"] = line
    assert unlabelled is not None, "the old head kept its ray.io/serve label"
    wrong = [(at, ready, n) for at, ready, n, _ in samples if ready != (n > 0)]
    assert not wrong, f"Ready disagreed with the serve endpoints: {wrong}"
    switched = timeline.switched_at or 0.0
    assert not [f for f in report.failures if f.at_s > switched + 30], (
        "requests failed after traffic moved to the new cluster: " + report.failure_text()
    )
