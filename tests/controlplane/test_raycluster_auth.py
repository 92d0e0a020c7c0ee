"""Token authentication (``authOptions.mode: token``) against a real API server:
the Secret the operator generates, the pods that read it, and a token that
survives every later pass, an operator restart included."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from e2e.paths import sample
from localcluster.controlplane import ControlPlane
from tests.kubehelpers import OperatorProcess, apply, get_json, look_again, wait_for

pytestmark = pytest.mark.controlplane

TOKEN_ENV = {"name": "RAY_AUTH_MODE", "value": "token"}


def _sample() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(sample("raycluster-auth.yaml").read_text())
    return doc


def _secrets(cp: ControlPlane, ns: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get_json(cp, "secrets", "-n", ns)["items"]
    return found


def _pods(cp: ControlPlane, ns: str, cluster: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = get_json(cp, "pods", "-n", ns, "-l", f"ray.io/cluster={cluster}")[
        "items"
    ]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _ready(cp: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    status: dict[str, Any] = get_json(cp, "raycluster", name, "-n", ns).get("status") or {}
    return status if status.get("state") == "ready" else None


def _auth_env(pod: dict[str, Any]) -> list[dict[str, Any]]:
    env = pod["spec"]["containers"][0].get("env") or []
    return [e for e in env if e["name"] in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")]


def _token_ref(secret: str) -> dict[str, Any]:
    return {
        "name": "RAY_AUTH_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": "auth_token"}},
    }


def test_a_token_cluster_gets_one_owned_secret_whose_token_never_changes(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    rc = _sample()
    name = rc["metadata"]["name"]
    apply(cp, ns, rc)
    wait_for(lambda: _ready(cp, ns, name), timeout=90, what=f"RayCluster {name} ready")
    uid = get_json(cp, "raycluster", name, "-n", ns)["metadata"]["uid"]

    (secret,) = _secrets(cp, ns)
    meta = secret["metadata"]
    assert meta["name"] == name
    assert meta["labels"] == {"ray.io/cluster": name}
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RayCluster", uid, True)
    token = secret["data"]["auth_token"]
    assert len(base64.b64decode(base64.b64decode(token))) == 32

    pods = _pods(cp, ns, name)
    assert sorted(p["metadata"]["labels"]["ray.io/node-type"] for p in pods) == ["head", "worker"]
    for pod in pods:
        assert _auth_env(pod) == [TOKEN_ENV, _token_ref(name)], pod["metadata"]["name"]

    # More passes, then a restarted operator (nothing in memory) and a pass of
    # its own: the Secret is the same object with the same token.
    look_again(cp, operator, ns, "raycluster", name, "RayCluster")
    operator.stop()
    operator.start()
    look_again(cp, operator, ns, "raycluster", name, "RayCluster")
    (after,) = _secrets(cp, ns)
    assert after["metadata"]["uid"] == meta["uid"]
    assert after["data"]["auth_token"] == token


def test_a_named_secret_is_used_and_none_is_generated(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    rc = _sample()
    name = rc["metadata"]["name"]
    rc["spec"]["authOptions"]["secretName"] = "team-token"
    apply(cp, ns, rc)
    wait_for(lambda: _ready(cp, ns, name), timeout=90, what=f"RayCluster {name} ready")
    look_again(cp, operator, ns, "raycluster", name, "RayCluster")
    assert _secrets(cp, ns) == []
    for pod in _pods(cp, ns, name):
        assert _auth_env(pod) == [TOKEN_ENV, _token_ref("team-token")], pod["metadata"]["name"]
