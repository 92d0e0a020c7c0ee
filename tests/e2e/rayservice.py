"""What the e2e scenarios share: one RayService under test, load, upgrades."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

from e2e import sample, stack
from e2e.kube import Kubectl, clusters_of, eventually, is_ready, live, serve_url, wait_routed
from e2e.load import BackgroundLoad, LoadReport
from localcluster.node import LocalCluster

NAME = "rayservice-sample"
FRUIT: tuple[str, Any] = ("/fruit/", ["MANGO", 2])
CALC: tuple[str, Any] = ("/calc/", ["MUL", 3])
READY_TIMEOUT = 600.0
UPGRADE_TIMEOUT = 600.0


@dataclass
class Service:
    """The walkthrough's RayService in one namespace, as last applied."""

    k: Kubectl
    runtime_image: str
    doc: dict[str, Any]
    local: LocalCluster
    cluster: dict[str, str] = field(default_factory=dict)  # name, uid of the serving cluster

    def apply(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.k.apply(doc)

    def get(self) -> dict[str, Any]:
        return self.k.get("rayservice", NAME) or {}

    @property
    def url(self) -> str:
        return serve_url(self.k, NAME)

    def load(self, name: str, accept: tuple[Any, ...], **kw: Any) -> BackgroundLoad:
        return BackgroundLoad(name, self.url, *FRUIT, accept=accept, **kw).start()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Ready, and the serve Service routed by the node (see ``wait_routed``)."""
        eventually(lambda: is_ready(self.get()), timeout, f"RayService {NAME} to be Ready")
        url = self.url
        wait_routed(url, *FRUIT, programmed=stack.routes(self.local, url))

    def remember_cluster(self) -> dict[str, Any]:
        meta: dict[str, Any] = only_cluster(self)["metadata"]
        self.cluster = {"name": meta["name"], "uid": meta["uid"]}
        return meta


def serving_walkthrough(k: Kubectl, image: str, local: LocalCluster, delay: int) -> Service:
    """The walkthrough's RayService applied, Ready and routed, its cluster
    remembered; ``delay`` is its ``rayClusterDeletionDelaySeconds``."""
    doc = localized(image, rayClusterDeletionDelaySeconds=delay)
    service = Service(k, image, doc, local)
    service.apply(doc)
    service.wait_ready()
    service.remember_cluster()
    return service


def localized(image: str, **spec: Any) -> dict[str, Any]:
    doc = sample.localize(sample.load_sample(), image).doc
    doc["spec"].update(spec)
    return doc


def only_cluster(svc: Service) -> dict[str, Any]:
    clusters = clusters_of(svc.k, NAME)
    assert len(clusters) == 1, [c["metadata"]["name"] for c in clusters]
    return clusters[0]


def assert_same_cluster(svc: Service) -> None:
    meta = only_cluster(svc)["metadata"]
    assert {"name": meta["name"], "uid": meta["uid"]} == svc.cluster


def pods(k: Kubectl, cluster: str, node_type: str) -> list[dict[str, Any]]:
    return live(k.items("pods", f"ray.io/cluster={cluster},ray.io/node-type={node_type}"))


def finish(load: BackgroundLoad, reports: list[LoadReport]) -> LoadReport:
    report = load.stop()
    reports.append(report)
    print(report.line())
    return report


def assert_no_failures(report: LoadReport, at_least: int = 1) -> None:
    assert report.requests >= at_least, report.line()
    assert not report.failures, report.line() + "\n" + report.failure_text()


def serving_cluster(k: Kubectl) -> str:
    svc = k.get("service", f"{NAME}-serve-svc") or {}
    return str(svc.get("spec", {}).get("selector", {}).get("ray.io/cluster", ""))


def with_env(doc: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    """``doc`` with one more env var in every Ray container: a new cluster hash."""
    out = copy.deepcopy(doc)
    for _, container in sample.containers(out):
        env = [e for e in container.get("env") or [] if e.get("name") != name]
        container["env"] = [*env, {"name": name, "value": value}]
    return out


@dataclass
class Timeline:
    """An upgrade seen from outside, in seconds after ``started``."""

    old: str
    started: float = field(default_factory=time.monotonic)
    pending: str = ""
    pending_at: float | None = None
    switched_at: float | None = None
    old_gone_at: float | None = None

    def watch(self, k: Kubectl) -> None:
        now = time.monotonic() - self.started
        status = (k.get("rayservice", NAME) or {}).get("status") or {}
        pending = (status.get("pendingServiceStatus") or {}).get("rayClusterName")
        if pending and not self.pending:
            self.pending, self.pending_at = pending, now
        target = serving_cluster(k)
        if self.switched_at is None and target not in ("", self.old):
            self.switched_at = now
        names = {c["metadata"]["name"] for c in clusters_of(k, NAME)}
        if self.old_gone_at is None and self.old not in names:
            self.old_gone_at = now

    @property
    def done(self) -> bool:
        return self.old_gone_at is not None

    def text(self) -> str:
        def at(t: float | None) -> str:
            return "-" if t is None else f"{t:.0f} s"

        return (
            f"pending cluster seen {at(self.pending_at)}, switch {at(self.switched_at)}, "
            f"old cluster deleted {at(self.old_gone_at)} after kubectl apply"
        )


def watch_until(
    svc: Service, timeline: Timeline, until: Any, timeout: float = UPGRADE_TIMEOUT
) -> Timeline:
    """Poll the upgrade every second until ``until(timeline)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        timeline.watch(svc.k)
        if until(timeline):
            return timeline
        time.sleep(1)
    raise AssertionError(f"upgrade did not get there in {timeout:.0f}s: {timeline.text()}")


# --- what the operator did, seen from outside ---------------------------------------------


def acknowledged(svc: Service, delay: int) -> float:
    """Seconds until the operator records the generation of an edit made now."""
    started = time.monotonic()
    patch = {"spec": {"rayClusterDeletionDelaySeconds": delay}}
    svc.k.run("patch", "rayservice", NAME, "--type=merge", "-p", json.dumps(patch))
    generation = svc.get()["metadata"]["generation"]

    def seen() -> bool:
        status = svc.get().get("status") or {}
        return int(status.get("observedGeneration") or 0) >= int(generation)

    eventually(seen, 120, f"the operator to record generation {generation}", every=0.5)
    return time.monotonic() - started


def cluster_events(k: Kubectl, cluster: str, reason: str) -> list[str]:
    return [
        str(e.get("message", ""))
        for e in k.items("events")
        if e.get("reason") == reason and e.get("involvedObject", {}).get("name") == cluster
    ]


def submissions(k: Kubectl, cluster: str) -> list[str]:
    return [
        str(e.get("message", ""))
        for e in k.items("events")
        if e.get("reason") == "SubmittedServeConfig" and f"/{cluster} " in str(e.get("message"))
    ]


def created_clusters(k: Kubectl) -> list[str]:
    return [
        str(e.get("message", ""))
        for e in k.items("events")
        if e.get("reason") == "CreatedRayCluster"
    ]


def restarts(pod: dict[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return int(statuses[0].get("restartCount", 0))
