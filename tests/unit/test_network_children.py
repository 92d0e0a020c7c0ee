"""The head Ingress and the NetworkPolicies: built purely, then kept by the
RayCluster controller on the in-memory API store (created, updated, deleted
when no longer asked for, never someone else's)."""

from __future__ import annotations

import copy
from typing import Any

from raykube.adapters.kube import INGRESSES, NETWORK_POLICIES, RAYCLUSTERS
from raykube.builders import labels
from raykube.builders.ingress import build_head_ingress
from raykube.builders.network_policy import build_network_policies
from raykube.builders.pods import BuildContext
from raykube.handlers.children import NOT_OWNED
from raykube.models.raycluster import RayCluster, parse_raycluster

from .harness import NS, Harness

CTX = BuildContext(created_by="raykube")


def manifest(name: str = "net", **spec: Any) -> dict[str, Any]:
    container = {"name": "ray-head", "image": "rayproject/ray:2.60.0"}
    worker = {"name": "ray-worker", "image": "rayproject/ray:2.60.0"}
    body: dict[str, Any] = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NS, "uid": f"{name}-uid"},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [container]}},
            },
            "workerGroupSpecs": [
                {
                    "groupName": g,
                    "replicas": 1,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [copy.deepcopy(worker)]}},
                }
                for g in ("cpu", "gpu")
            ],
        },
    }
    body["spec"].update(spec)
    return body


def cluster_of(body: dict[str, Any]) -> RayCluster:
    return parse_raycluster(body)


def with_ingress(body: dict[str, Any], **options: Any) -> dict[str, Any]:
    body["spec"]["headGroupSpec"]["enableIngress"] = True
    if options:
        body["spec"]["headGroupSpec"]["ingressOptions"] = options
    return body


# --- the Ingress, built -------------------------------------------------------------------


def test_ingress_without_options_is_kuberays() -> None:
    body = with_ingress(manifest("c1"))
    body["metadata"]["annotations"] = {
        "kubernetes.io/ingress.class": "nginx",
        "nginx.ingress.kubernetes.io/rewrite-target": "/$1",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        labels.SERVE_CONFIG_HASH: "abc",
    }
    ingress = build_head_ingress(cluster_of(body), CTX)
    meta = ingress["metadata"]
    assert meta["name"] == "c1-head-ingress" and meta["namespace"] == NS
    assert meta["labels"] == {
        "ray.io/cluster": "c1",
        "ray.io/identifier": "c1-head",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "raykube",
    }
    # The class becomes ingressClassName (never both); the rest of the cluster's
    # annotations are the Ingress controller's settings, but not kubectl's copy
    # of the manifest nor raykube's bookkeeping.
    assert meta["annotations"] == {"nginx.ingress.kubernetes.io/rewrite-target": "/$1"}
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RayCluster", "c1-uid", True)
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert "tls" not in spec
    (rule,) = spec["rules"]
    assert "host" not in rule
    assert rule["http"]["paths"] == [
        {
            "path": "/c1/(.*)",
            "pathType": "Exact",
            "backend": {"service": {"name": "c1-head-svc", "port": {"number": 8265}}},
        }
    ]


def test_ingress_routes_to_the_containers_dashboard_port_and_has_no_class_unless_named() -> None:
    body = with_ingress(manifest())
    head = body["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["ports"] = [{"name": "dashboard", "containerPort": 9999}]
    ingress = build_head_ingress(cluster_of(body), CTX)
    assert "ingressClassName" not in ingress["spec"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["port"] == {"number": 9999}


def test_ingress_options_choose_host_path_type_and_tls() -> None:
    tls = [{"hosts": ["ray.example.com"], "secretName": "ray-tls"}]
    body = with_ingress(manifest(), host="ray.example.com", tls=tls)
    spec = build_head_ingress(cluster_of(body), CTX)["spec"]
    (rule,) = spec["rules"]
    assert rule["host"] == "ray.example.com"
    (path,) = rule["http"]["paths"]
    # With ingressOptions, unset path and pathType mean "/" and Prefix (KubeRay 1.7).
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert spec["tls"] == tls
    body = with_ingress(manifest(), path="/ray", pathType="ImplementationSpecific")
    (path,) = build_head_ingress(cluster_of(body), CTX)["spec"]["rules"][0]["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/ray", "ImplementationSpecific")


def test_a_long_cluster_name_gives_kuberays_cut_ingress_name() -> None:
    name = "a" * 45
    ingress = build_head_ingress(cluster_of(with_ingress(manifest(name))), CTX)
    assert ingress["metadata"]["name"] == f"{name}-head-ingress"[-50:]
    assert labels.ingress_name("9" * 40) == "r" + ("9" * 40 + "-head-ingress")[-49:]


# --- the NetworkPolicies, built -----------------------------------------------------------


def policies(**config: Any) -> dict[str, dict[str, Any]]:
    built = build_network_policies(cluster_of(manifest(networkPolicy=config)), CTX)
    return {p["metadata"]["name"]: p for p in built}


def test_no_network_policy_no_policies() -> None:
    assert build_network_policies(cluster_of(manifest()), CTX) == []


def test_deny_all_gives_head_and_group_policies_open_to_the_cluster_only() -> None:
    built = policies()
    assert list(built) == ["net-head", "net-workers-cpu", "net-workers-gpu"]
    same_cluster = [{"podSelector": {"matchLabels": {"ray.io/cluster": "net"}}}]
    head = built["net-head"]
    assert head["metadata"]["labels"] == {
        "ray.io/cluster": "net",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "raykube",
    }
    assert head["metadata"]["ownerReferences"][0]["uid"] == "net-uid"
    assert head["spec"] == {
        "podSelector": {"matchLabels": {"ray.io/cluster": "net", "ray.io/node-type": "head"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": same_cluster}],
        "egress": [{"to": same_cluster}],
    }
    gpu = built["net-workers-gpu"]["spec"]
    assert gpu["podSelector"] == {
        "matchLabels": {
            "ray.io/cluster": "net",
            "ray.io/node-type": "worker",
            "ray.io/group": "gpu",
        }
    }
    assert gpu["ingress"] == [{"from": same_cluster}] and gpu["egress"] == [{"to": same_cluster}]


def test_modes_restrict_one_direction_and_user_rules_follow_the_clusters_own() -> None:
    dns = {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}
    dashboard = {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 8265}]}
    built = policies(mode="DenyAllIngress", head={"ingressRules": [dashboard]})
    head = built["net-head"]["spec"]
    assert head["policyTypes"] == ["Ingress"] and "egress" not in head
    assert head["ingress"][1:] == [dashboard]
    built = policies(
        mode="DenyAllEgress",
        head={"egressRules": [dns]},
        worker={"egressRules": [dns, dns]},
        workerGroups=[{"groupName": "gpu", "egressRules": []}],
    )
    head = built["net-head"]["spec"]
    assert head["policyTypes"] == ["Egress"] and "ingress" not in head
    assert head["egress"][1:] == [dns]
    # worker's rules apply to every group without an entry; an entry replaces them.
    assert built["net-workers-cpu"]["spec"]["egress"][1:] == [dns, dns]
    assert built["net-workers-gpu"]["spec"]["egress"][1:] == []


# --- kept by the controller ---------------------------------------------------------------


def stored(h: Harness, res: Any, name: str) -> dict[str, Any] | None:
    return h.kube.stored(res, NS, name)


async def test_children_are_created_updated_and_deleted_when_no_longer_asked_for(
    harness: Harness,
) -> None:
    h = harness
    body = with_ingress(manifest(), host="a.example.com")
    body["spec"]["networkPolicy"] = {"mode": "DenyAll"}
    h.kube.put(body)
    await h.cluster_pass("net")
    ingress = stored(h, INGRESSES, "net-head-ingress")
    assert ingress is not None
    assert ingress["spec"]["rules"][0]["host"] == "a.example.com"
    names = {p["metadata"]["name"] for p in h.kube.all(NETWORK_POLICIES, NS)}
    assert names == {"net-head", "net-workers-cpu", "net-workers-gpu"}
    # Nothing changed: nothing is sent for them (read from the watch caches).
    await h.cluster_pass("net")
    h.kube.reset_counts()
    await h.cluster_pass("net")
    assert h.kube.requests == {}, h.kube.log

    def edit(obj: dict[str, Any]) -> None:
        obj["spec"]["headGroupSpec"]["ingressOptions"]["host"] = "b.example.com"
        obj["spec"]["workerGroupSpecs"] = obj["spec"]["workerGroupSpecs"][:1]

    h.kube.mutate(RAYCLUSTERS, NS, "net", edit)
    await h.cluster_pass("net")
    ingress = stored(h, INGRESSES, "net-head-ingress")
    assert ingress is not None and ingress["spec"]["rules"][0]["host"] == "b.example.com"
    # The removed group's policy goes.
    names = {p["metadata"]["name"] for p in h.kube.all(NETWORK_POLICIES, NS)}
    assert names == {"net-head", "net-workers-cpu"}

    def off(obj: dict[str, Any]) -> None:
        obj["spec"]["headGroupSpec"]["enableIngress"] = False
        del obj["spec"]["networkPolicy"]

    h.kube.mutate(RAYCLUSTERS, NS, "net", off)
    await h.cluster_pass("net")
    assert stored(h, INGRESSES, "net-head-ingress") is None
    assert h.kube.all(NETWORK_POLICIES, NS) == []
    await h.events_posted()
    reasons = [e.reason for e in h.kube.events]
    assert "DeletedIngress" in reasons and "DeletedNetworkPolicy" in reasons


async def test_a_child_someone_else_controls_is_left_alone(harness: Harness) -> None:
    h = harness
    theirs = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "net-head", "namespace": NS, "labels": {"ray.io/cluster": "net"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    h.kube.put(theirs)
    body = manifest(networkPolicy={})
    h.kube.put(body)
    await h.cluster_pass("net")
    head = stored(h, NETWORK_POLICIES, "net-head")
    assert head is not None and head["spec"] == theirs["spec"]
    assert not head["metadata"].get("ownerReferences")
    await h.events_posted()
    assert NOT_OWNED in [e.reason for e in h.kube.events]
    # Nor is it deleted when the cluster stops asking for policies.
    h.kube.mutate(RAYCLUSTERS, NS, "net", lambda o: o["spec"].pop("networkPolicy"))
    await h.cluster_pass("net")
    assert stored(h, NETWORK_POLICIES, "net-head") is not None
