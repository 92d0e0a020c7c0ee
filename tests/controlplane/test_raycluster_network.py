"""The head Ingress (enableIngress, ingressOptions) and the NetworkPolicies
(networkPolicy) of a RayCluster, kept by the operator process against a real
API server and garbage collector.

The control plane's nodes are kwok's: nothing here enforces a NetworkPolicy or
serves an Ingress; what is proved is the objects, their owner and their life.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localcluster.controlplane import ControlPlane
from tests.kubehelpers import OperatorProcess, apply, get_json, look_again, wait_for

pytestmark = pytest.mark.controlplane

IMAGE = "rayproject/ray:2.60.0"
ANY_NAMESPACE: dict[str, Any] = {"from": [{"namespaceSelector": {}}]}


def _cluster(name: str, **spec: Any) -> dict[str, Any]:
    head: dict[str, Any] = {
        "rayStartParams": {},
        "template": {"spec": {"containers": [{"name": "ray-head", "image": IMAGE}]}},
    }
    body: dict[str, Any] = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {
            "rayVersion": "2.60.0",
            "headGroupSpec": head,
            "workerGroupSpecs": [
                {
                    "groupName": "cpu",
                    "replicas": 1,
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "ray-worker", "image": IMAGE}]}},
                }
            ],
        },
    }
    body["spec"].update(spec)
    return body


def _get(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = cp.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    if proc.returncode != 0:
        assert "NotFound" in proc.stderr, proc.stderr
        return None
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


def _names(cp: ControlPlane, ns: str, kind: str) -> set[str]:
    items = get_json(cp, kind, "-n", ns)["items"]
    return {i["metadata"]["name"] for i in items if not i["metadata"].get("deletionTimestamp")}


def _controller(obj: dict[str, Any]) -> tuple[str, str, str]:
    (ref,) = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")]
    return ref["kind"], ref["name"], ref["uid"]


def test_ingress_and_policies_are_owned_updated_deleted_and_collected(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, name = control_plane, "net"
    body = _cluster(name, networkPolicy={"worker": {"ingressRules": [ANY_NAMESPACE]}})
    body["spec"]["headGroupSpec"]["enableIngress"] = True
    apply(cp, namespace, body)
    uid = get_json(cp, "raycluster", name, "-n", namespace)["metadata"]["uid"]

    ingress = wait_for(lambda: _get(cp, namespace, "ingress", f"{name}-head-ingress"), timeout=60)
    assert _controller(ingress) == ("RayCluster", name, uid)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert (path["path"], path["pathType"]) == (f"/{name}/(.*)", "Exact")
    assert path["backend"]["service"] == {"name": f"{name}-head-svc", "port": {"number": 8265}}

    policies = {f"{name}-head", f"{name}-workers-cpu"}
    wait_for(lambda: _names(cp, namespace, "networkpolicy") == policies or None, timeout=60)
    head = _get(cp, namespace, "networkpolicy", f"{name}-head")
    assert head is not None and _controller(head) == ("RayCluster", name, uid)
    # The API server defaulted mode to DenyAll: both directions, the cluster's own pods.
    assert head["spec"]["policyTypes"] == ["Ingress", "Egress"]
    worker = _get(cp, namespace, "networkpolicy", f"{name}-workers-cpu")
    assert worker is not None
    assert worker["spec"]["podSelector"]["matchLabels"]["ray.io/group"] == "cpu"
    assert worker["spec"]["ingress"][1] == ANY_NAMESPACE

    # ingressOptions change the Ingress in place.
    body["spec"]["headGroupSpec"]["ingressOptions"] = {"host": "ray.example.com"}
    apply(cp, namespace, body)

    def moved() -> dict[str, Any] | None:
        got = _get(cp, namespace, "ingress", f"{name}-head-ingress")
        return got if got and got["spec"]["rules"][0].get("host") == "ray.example.com" else None

    ingress = wait_for(moved, timeout=60)
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")

    # Turned off: ours is deleted.
    body["spec"]["headGroupSpec"]["enableIngress"] = False
    apply(cp, namespace, body)
    wait_for(lambda: _get(cp, namespace, "ingress", f"{name}-head-ingress") is None, timeout=60)

    # Deleting the cluster takes the policies with it (the garbage collector).
    cp.kubectl("delete", "raycluster", name, "-n", namespace, "--wait=false")
    wait_for(lambda: not _names(cp, namespace, "networkpolicy"), timeout=90)


def test_objects_of_the_same_names_controlled_by_someone_else_are_left_alone(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, name = control_plane, "taken"
    theirs_ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": f"{name}-head-ingress", "labels": {"ray.io/cluster": name}},
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/mine",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "mine", "port": {"number": 80}}},
                            }
                        ]
                    }
                }
            ]
        },
    }
    theirs_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{name}-head", "labels": {"ray.io/cluster": name}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    apply(cp, namespace, theirs_ingress)
    apply(cp, namespace, theirs_policy)
    body = _cluster(name, networkPolicy={"mode": "DenyAllIngress"})
    body["spec"]["headGroupSpec"]["enableIngress"] = True
    apply(cp, namespace, body)

    def warned() -> set[str] | None:
        events = get_json(cp, "events", "-n", namespace)["items"]
        found = {
            e["message"].split(" exists")[0]
            for e in events
            if e["reason"] == "ObjectNotOwned"
            and e["involvedObject"]["kind"] == "RayCluster"
            and e["involvedObject"]["name"] == name
        }
        want = {
            f"Ingress {namespace}/{name}-head-ingress",
            f"NetworkPolicy {namespace}/{name}-head",
        }
        return found if want <= found else None

    wait_for(warned, timeout=60)
    # The group's own policy is made; the two taken names keep their owners' content.
    wait_for(lambda: f"{name}-workers-cpu" in _names(cp, namespace, "networkpolicy"), timeout=60)
    ingress = _get(cp, namespace, "ingress", f"{name}-head-ingress")
    assert ingress is not None and not ingress["metadata"].get("ownerReferences")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/mine"
    policy = _get(cp, namespace, "networkpolicy", f"{name}-head")
    assert policy is not None and policy["spec"]["podSelector"] == {}
    # Not deleted either when the cluster stops asking for them.
    body["spec"]["headGroupSpec"]["enableIngress"] = False
    del body["spec"]["networkPolicy"]
    apply(cp, namespace, body)
    wait_for(
        lambda: f"{name}-workers-cpu" not in _names(cp, namespace, "networkpolicy"), timeout=60
    )
    look_again(cp, operator, namespace, "raycluster", name, "RayCluster")
    assert _get(cp, namespace, "ingress", f"{name}-head-ingress") is not None
    assert _names(cp, namespace, "networkpolicy") == {f"{name}-head"}


def test_a_policy_the_api_server_refuses_is_reported_and_the_pods_still_come(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, name = control_plane, "refused"
    # A peer that names nothing: the schema keeps rules open, the API server refuses it.
    apply(
        cp, namespace, _cluster(name, networkPolicy={"worker": {"ingressRules": [{"from": [{}]}]}})
    )

    def warned() -> str | None:
        events = get_json(cp, "events", "-n", namespace)["items"]
        return next(
            (e["message"] for e in events if e["reason"] == "FailedCreateNetworkPolicy"), None
        )

    message = wait_for(warned, timeout=60)
    assert f"NetworkPolicy {namespace}/{name}-workers-cpu rejected by the API server" in message
    selector = f"ray.io/cluster={name}"
    wait_for(
        lambda: len(get_json(cp, "pods", "-n", namespace, "-l", selector)["items"]) == 2 or None,
        timeout=60,
    )
    assert _names(cp, namespace, "networkpolicy") == {f"{name}-head"}
