"""What a RayService owns, built purely: its RayCluster and the two stable Services."""

from __future__ import annotations

import json

from raykube.builders import labels
from raykube.builders.rayservice import (
    build_cluster,
    build_head_service,
    build_serve_service,
)
from raykube.decisions.rayservice_view import cluster_view
from raykube.models.raycluster import parse_raycluster
from raykube.ports import service_ports

from .rayservice_helpers import service


def test_cluster_is_owned_labelled_and_remembers_what_it_was_built_from() -> None:
    rs = service()
    body = build_cluster(rs, "rs-abcde", "h1")
    meta = body["metadata"]
    assert meta["name"] == "rs-abcde" and meta["namespace"] == "ns"
    assert meta["labels"] == {
        "ray.io/originated-from-crd": "RayService",
        "ray.io/originated-from-cr-name": "rs",
    }
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "RayService",
        "rs",
        "rs-uid",
        True,
    )
    assert meta["annotations"][labels.CLUSTER_CONFIG_HASH] == "h1"
    assert json.loads(meta["annotations"][labels.APPLIED_SCALING]) == {"small": [1, 1, 5]}
    spec = body["spec"]
    # Head starts out of the serve Service; workers are in it once their proxy is ready.
    assert spec["headGroupSpec"]["template"]["metadata"]["labels"] == {"ray.io/serve": "false"}
    worker = spec["workerGroupSpecs"][0]["template"]["metadata"]["labels"]
    assert worker == {"ray.io/serve": "true"}
    # The rest is the RayService's rayClusterConfig, untouched (the model is not mutated).
    assert spec["rayVersion"] == "2.60.0"
    assert "metadata" not in rs.spec.ray_cluster_config.head_group_spec.template
    # It is a valid RayCluster, and the RayService reads back what it wrote.
    parse_raycluster(body)
    view = cluster_view(body)
    assert view.config_hash == "h1" and view.applied_scaling == {"small": [1, 1, 5]}


def test_stable_services_select_the_serving_cluster() -> None:
    rs = service()
    head = build_head_service(rs, "rs-abcde", [], "raykube")
    assert head["metadata"]["name"] == "rs-head-svc"
    assert head["spec"]["selector"] == {"ray.io/cluster": "rs-abcde", "ray.io/node-type": "head"}
    ports = {p["name"]: p["port"] for p in head["spec"]["ports"]}
    assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000,
                     "metrics": 8080}  # fmt: skip
    serve = build_serve_service(rs, "rs-abcde", [], "raykube")
    assert serve["metadata"]["name"] == "rs-serve-svc"
    assert serve["spec"]["selector"] == {"ray.io/cluster": "rs-abcde", "ray.io/serve": "true"}
    assert serve["spec"]["ports"] == [
        {"name": "serve", "port": 8000, "targetPort": 8000, "protocol": "TCP"}
    ]
    for svc in (head, serve):
        assert svc["metadata"]["ownerReferences"][0]["kind"] == "RayService"
        assert "ray.io/cluster" not in svc["metadata"]["labels"]  # not a cluster's child


def test_switching_changes_the_selector_and_the_spec_hash_only_then() -> None:
    rs = service()
    a = build_serve_service(rs, "rs-a", [], "raykube")
    again = build_serve_service(rs, "rs-a", [], "raykube")
    b = build_serve_service(rs, "rs-b", [], "raykube")
    key = labels.SPEC_HASH
    assert a["metadata"]["annotations"][key] == again["metadata"]["annotations"][key]
    assert a["metadata"]["annotations"][key] != b["metadata"]["annotations"][key]


def test_serve_port_follows_the_head_container() -> None:
    ports = [{"name": "serve", "containerPort": 9000}]
    serve = build_serve_service(service(), "rs-a", ports, "raykube")
    assert serve["spec"]["ports"][0]["port"] == 9000
    assert {p["name"]: p["port"] for p in service_ports(ports)}["serve"] == 9000


def test_serve_service_override_renames_types_and_labels_but_keeps_the_selector() -> None:
    override = {
        "metadata": {"name": "custom-serve", "labels": {"team": "a"}, "annotations": {"x": "y"}},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "p", "port": 12345}],
                 "selector": {"app": "elsewhere"}},
    }  # fmt: skip
    serve = build_serve_service(service(serveService=override), "rs-a", [], "raykube")
    assert serve["metadata"]["name"] == "custom-serve"
    assert serve["metadata"]["labels"]["team"] == "a"
    assert serve["metadata"]["annotations"]["x"] == "y"
    assert serve["spec"]["type"] == "LoadBalancer"
    assert serve["spec"]["ports"] == [{"name": "p", "port": 12345}]
    assert serve["spec"]["selector"] == {"ray.io/cluster": "rs-a", "ray.io/serve": "true"}


def test_hand_edited_cluster_annotations_read_as_no_record() -> None:
    """Anyone may edit a cluster's annotations: deep, huge or wrong-shaped JSON
    must read as "no record", never raise out of a RayService pass."""
    deep = "[" * 100_000 + "]" * 100_000
    for text in (deep, '{"a": ' * 2000 + "1" + "}" * 2000, "x" * 100_000, "[1, 2]"):
        body = {
            "metadata": {
                "name": "rs-a",
                "annotations": {labels.SERVE_HEALTH: text, labels.APPLIED_SCALING: text},
            }
        }
        view = cluster_view(body)
        assert view.applied_scaling == {}
        assert view.health.unreachable_since is None
    shaped = '{"g": [1, 1, 5], "bad": [1, "x", 3], "bool": [true, 1, 2], "neg": [-1, 0, 1]}'
    body = {"metadata": {"name": "rs-a", "annotations": {labels.APPLIED_SCALING: shaped}}}
    assert cluster_view(body).applied_scaling == {"g": [1, 1, 5]}
