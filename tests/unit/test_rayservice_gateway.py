"""An incremental upgrade through a Gateway: the objects (pure builders) and the
HTTPRoute's weights as the upgrade steps (pure decisions)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from raykube.adapters.kube import GATEWAYS, HTTPROUTES, RAYCLUSTERS
from raykube.builders import hashing, labels
from raykube.builders.gateway import (
    Backend,
    build_cluster_serve_service,
    build_gateway,
    build_httproute,
    gateway_class,
)
from raykube.decisions.pods import PodView
from raykube.decisions.rayservice import Observed, Plan, decide
from raykube.decisions.rayservice_gateway import route_backends
from tests.unit.harness import NS, Harness, load

from . import rayservice_helpers as h

SAMPLE = "ray-service.sample.yaml"

GATEWAY = {
    "type": "NewClusterWithIncrementalUpgrade",
    "clusterUpgradeOptions": {
        "maxSurgePercent": 50,
        "stepSizePercent": 25,
        "intervalSeconds": 30,
        "gatewayClassName": "traefik",
    },
}
SERVE_PORTS = ({"name": "serve", "containerPort": 9000},)


def test_gateway_class_only_with_an_incremental_upgrade() -> None:
    assert gateway_class(h.service(upgradeStrategy=GATEWAY)) == "traefik"
    without = {**GATEWAY, "clusterUpgradeOptions": {"stepSizePercent": 25, "intervalSeconds": 30}}
    assert gateway_class(h.service(upgradeStrategy=without)) is None
    assert gateway_class(h.service()) is None


def test_gateway_is_kuberays_shape_owned_by_the_rayservice() -> None:
    body = build_gateway(h.service(upgradeStrategy=GATEWAY), "traefik", "raykube")
    meta = body["metadata"]
    assert (body["apiVersion"], body["kind"]) == ("gateway.networking.k8s.io/v1", "Gateway")
    assert (meta["name"], meta["namespace"]) == ("rs-gateway", "ns")
    assert [(o["kind"], o["uid"], o["controller"]) for o in meta["ownerReferences"]] == [
        ("RayService", "rs-uid", True)
    ]
    assert meta["labels"][labels.ORIGINATED_FROM_CR] == "rs"
    assert body["spec"] == {
        "gatewayClassName": "traefik",
        "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
    }
    assert hashing.stamp_of(body)


def test_httproute_weights_each_clusters_serve_service() -> None:
    rs = h.service(upgradeStrategy=GATEWAY)
    body = build_httproute(rs, [Backend("rs-a", 8000, 75), Backend("rs-b", 8000, 25)], "raykube")
    assert (body["kind"], body["metadata"]["name"]) == ("HTTPRoute", "rs-httproute")
    spec = body["spec"]
    assert spec["parentRefs"] == [{"name": "rs-gateway", "namespace": "ns"}]
    [rule] = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [
        {"name": "rs-a-serve-svc", "namespace": "ns", "port": 8000, "weight": 75},
        {"name": "rs-b-serve-svc", "namespace": "ns", "port": 8000, "weight": 25},
    ]
    moved = build_httproute(rs, [Backend("rs-a", 8000, 50), Backend("rs-b", 8000, 50)], "raykube")
    assert hashing.stamp_of(moved) != hashing.stamp_of(body)


def test_cluster_serve_service_selects_one_clusters_serving_pods() -> None:
    rs = h.service(upgradeStrategy=GATEWAY)
    body = build_cluster_serve_service(rs, "rs-a", "uid-a", SERVE_PORTS, "raykube")
    meta = body["metadata"]
    assert meta["name"] == "rs-a-serve-svc"
    # Goes with its cluster; not labelled as the RayCluster controller's own Service.
    assert [(o["kind"], o["name"], o["uid"]) for o in meta["ownerReferences"]] == [
        ("RayCluster", "rs-a", "uid-a")
    ]
    assert labels.CLUSTER not in meta["labels"]
    assert body["spec"]["selector"] == {labels.CLUSTER: "rs-a", labels.SERVE: "true"}
    assert body["spec"]["ports"] == [
        {"name": "serve", "port": 9000, "targetPort": 9000, "protocol": "TCP"}
    ]


# --- the weights as the upgrade steps ------------------------------------------


def _worker(name: str, cluster: str) -> PodView:
    return PodView(
        name=name, uid=name, namespace="ns", cluster=cluster, node_type="worker",
        group="small", phase="Running", ready=True, terminating=False,
        created="2026-01-01T00:00:00Z", serve_label=True,
    )  # fmt: skip


def _upgrade(
    active_notes: dict[str, Any], pending_notes: dict[str, Any], strategy: dict[str, Any]
) -> tuple[Observed, Plan]:
    old = h.service(image="ray:0", upgradeStrategy=strategy)
    new = h.service(upgradeStrategy=strategy)
    rs = h.with_status(new, active="a", pending="p")
    active = h.cluster("a", old, head_ports=SERVE_PORTS, **active_notes)
    pending = h.cluster("p", new, created=h.at(1), head_ports=SERVE_PORTS, **pending_notes)
    pods = {
        "a": [h.head("a"), *(_worker(f"a-w{i}", "a") for i in range(3))],
        "p": [h.head("p"), *(_worker(f"p-w{i}", "p") for i in range(3))],
    }
    obs = h.observe(rs, [active, pending], now=h.at(100), traffic="a", pods=pods)
    return obs, decide(obs)


def _weights(obs: Observed, plan: Plan) -> list[tuple[str, int]]:
    return [(b.cluster, b.weight) for b in route_backends(obs, plan)]


def test_weights_follow_the_step_and_no_pod_is_labelled() -> None:
    obs, plan = _upgrade({}, {"target_capacity": 50, "traffic": 0}, GATEWAY)
    assert plan.shift is not None and plan.shift.step.pending.traffic == 25
    assert _weights(obs, plan) == [("a", 75), ("p", 25)]
    # The HTTPRoute splits; the serve Service stays on the active cluster.
    assert not plan.shared_serve and not plan.traffic_labels
    assert [b.port for b in route_backends(obs, plan)] == [9000, 9000]


def test_a_new_cluster_without_traffic_is_a_backend_of_weight_zero() -> None:
    obs, plan = _upgrade({}, {"target_capacity": 0}, GATEWAY)
    assert _weights(obs, plan) == [("a", 100), ("p", 0)]


def test_after_promotion_the_route_sends_everything_to_the_new_cluster() -> None:
    obs, plan = _upgrade(
        {"target_capacity": 0, "traffic": 0},
        {"target_capacity": 100, "traffic": 100, "traffic_at": h.at(0)},
        GATEWAY,
    )
    assert plan.clusters.switch
    assert _weights(obs, plan) == [("p", 100)]


def test_without_a_gateway_the_pods_are_labelled_instead() -> None:
    plain = {**GATEWAY, "clusterUpgradeOptions": {"stepSizePercent": 25, "intervalSeconds": 30}}
    _, plan = _upgrade({}, {"target_capacity": 50, "traffic": 0}, plain)
    assert plan.shared_serve and plan.traffic_labels


def test_no_route_before_a_cluster_serves() -> None:
    rs = h.with_status(h.service(upgradeStrategy=GATEWAY), pending="p")
    pending = h.cluster("p", rs, head_ports=SERVE_PORTS)
    obs = h.observe(rs, [pending], serve={"p": h.apps("DEPLOYING", "DEPLOYING")})
    assert route_backends(obs, decide(obs)) == []


# --- whole passes on the in-memory API server ----------------------------------


async def _serving_with(h: Harness, manifests: Path, strategy: dict[str, Any] | None) -> str:
    doc = load(manifests, SAMPLE, "RayService")
    if strategy is not None:
        doc["spec"]["upgradeStrategy"] = strategy
        doc["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = True
    h.kube.put(doc)
    name: str = doc["metadata"]["name"]
    await h.service_pass(name)
    (cluster,) = h.kube.all(RAYCLUSTERS, NS)
    cluster_name: str = cluster["metadata"]["name"]
    await h.cluster_pass(cluster_name)
    h.all_pods_ready(cluster_name)
    await h.cluster_pass(cluster_name)
    for _ in range(5):
        await h.service_pass(name)
    return cluster_name


async def test_a_pass_writes_the_gateway_the_route_and_the_clusters_service(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    cluster = await _serving_with(h, manifests, GATEWAY)
    (gw,) = h.kube.all(GATEWAYS, NS)
    (route,) = h.kube.all(HTTPROUTES, NS)
    assert gw["spec"]["gatewayClassName"] == "traefik"
    [rule] = route["spec"]["rules"]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [
        (f"{cluster}-serve-svc", 100)
    ]
    assert h.service(f"{cluster}-serve-svc") is not None
    # Steady: nothing of it is applied again.
    h.kube.reset_counts()
    await h.service_pass(route["metadata"]["name"].removesuffix("-httproute"))
    assert not [r for r in h.kube.log if r.kind in ("Gateway", "HTTPRoute")]
    assert not [r for r in h.kube.log if r.kind == "Service"]


async def test_without_a_gateway_class_no_gateway_request_is_sent(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    plain = {**GATEWAY, "clusterUpgradeOptions": {"stepSizePercent": 25, "intervalSeconds": 30}}
    await _serving_with(h, manifests, plain)
    assert not [r for r in h.kube.log if r.kind in ("Gateway", "HTTPRoute")]
    assert not h.kube.all(GATEWAYS, NS)


def test_a_new_cluster_that_stopped_serving_gets_no_weight() -> None:
    obs, plan = _upgrade(
        {"target_capacity": 75, "traffic": 50},
        {"target_capacity": 75, "traffic": 50, "traffic_at": h.at(0)},
        GATEWAY,
    )
    assert _weights(obs, plan) == [("a", 25), ("p", 75)]
    lost = replace(obs, heads={"a": h.head("a"), "p": h.head("p", ready=False)})
    assert _weights(lost, decide(lost)) == [("a", 100), ("p", 0)]
