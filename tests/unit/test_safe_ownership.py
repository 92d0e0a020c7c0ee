"""Objects the operator did not create are never taken over, changed or deleted:
a name that is taken ends as a Warning on the object that wanted it, and
membership in a cluster or service is by controller UID, never by label."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest

from raykube.adapters.kube import (
    PODS,
    RAYCLUSTERS,
    RAYSERVICES,
    ROLE_BINDINGS,
    SERVICE_ACCOUNTS,
    SERVICES,
    ApiError,
)
from raykube.builders import labels
from raykube.handlers.children import NOT_OWNED
from tests.unit.harness import NS, Harness, load

RAYCLUSTER = "ray-cluster.sample.yaml"
AUTOSCALER = "ray-cluster.autoscaler.yaml"
RAYSERVICE = "ray-service.sample.yaml"


def foreign_service(name: str, selector: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, **meta},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80}]},
    }


async def cluster_up(h: Harness, rayservice: str) -> str:
    """The RayService's first cluster built, its pods created and Ready; its name."""
    await h.service_pass(rayservice)
    (cluster,) = h.kube.all(RAYCLUSTERS, NS)
    name: str = cluster["metadata"]["name"]
    await h.cluster_pass(name)
    h.all_pods_ready(name)
    return name


async def warnings(h: Harness, reason: str) -> list[str]:
    await h.events_posted()
    return [e.message for e in h.kube.events if e.reason == reason]


async def test_a_cluster_named_default_leaves_the_default_service_account_alone(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, AUTOSCALER, "RayCluster")
    doc["metadata"]["name"] = "default"
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": NS},
    }
    h.kube.put(account)
    before = h.kube.stored(SERVICE_ACCOUNTS, NS, "default")
    h.kube.put(doc)
    await h.cluster_pass("default")
    assert h.kube.stored(SERVICE_ACCOUNTS, NS, "default") == before
    own = h.kube.stored(SERVICE_ACCOUNTS, NS, "default-ray-autoscaler")
    assert own is not None
    uid = h.cluster("default")["metadata"]["uid"]
    assert own["metadata"]["ownerReferences"][0]["uid"] == uid
    (head,) = h.pods("default", "head")
    assert head["spec"]["serviceAccountName"] == "default-ray-autoscaler"


async def test_someone_elses_service_account_of_our_name_is_not_adopted(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, AUTOSCALER, "RayCluster")
    name = doc["metadata"]["name"]
    account = labels.autoscaler_account_name(name)
    taken: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": account, "namespace": NS},
    }
    h.kube.put(taken)
    before = h.kube.stored(SERVICE_ACCOUNTS, NS, account)
    h.kube.put(doc)
    await h.cluster_pass(name)
    assert h.kube.stored(SERVICE_ACCOUNTS, NS, account) == before
    (message,) = await warnings(h, NOT_OWNED)
    assert f"ServiceAccount {NS}/{account} exists" in message


async def test_a_taken_head_service_name_blocks_the_pods_and_says_why(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, RAYCLUSTER, "RayCluster")
    name = doc["metadata"]["name"]
    svc_name = labels.head_service_name(name)
    h.kube.put(foreign_service(svc_name, {"app": "theirs"}))
    before = h.kube.stored(SERVICES, NS, svc_name)
    h.kube.put(doc)
    await h.cluster_pass(name)
    assert h.kube.stored(SERVICES, NS, svc_name) == before
    assert h.pods(name) == []
    conds = {c["type"]: c for c in h.cluster(name)["status"]["conditions"]}
    failure = conds["ReplicaFailure"]
    assert (failure["status"], failure["reason"]) == ("True", "FailedCreateHeadService")
    assert f"Service {NS}/{svc_name} exists" in failure["message"]
    (message,) = await warnings(h, NOT_OWNED)
    assert f"Service {NS}/{svc_name} exists and is not controlled by RayCluster {name}" in message
    # A second pass posts no second Warning for the same blocker.
    await h.cluster_pass(name)
    assert len(await warnings(h, NOT_OWNED)) == 1


async def test_a_pod_labelled_into_a_cluster_is_neither_counted_nor_deleted(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, RAYCLUSTER, "RayCluster")
    name = doc["metadata"]["name"]
    h.kube.put(doc)
    await h.cluster_pass(name)
    h.all_pods_ready(name)
    (worker,) = [p for p in h.pods(name, "worker")]
    intruder = copy.deepcopy(worker)
    intruder["metadata"] = {
        "name": "intruder",
        "namespace": NS,
        "labels": dict(worker["metadata"]["labels"]),
    }
    h.kube.put(intruder)
    h.kube.set_pod_ready(NS, "intruder")
    h.kube.reset_counts()
    await h.cluster_pass(name)
    # The group still has its one worker of its own: nothing is deleted as surplus.
    assert [r for r in h.kube.log if r.verb == "delete"] == []
    assert h.kube.stored(PODS, NS, "intruder") is not None
    assert h.cluster(name)["status"]["availableWorkerReplicas"] == 1


async def test_a_serve_service_name_of_someone_elses_service_is_not_taken_over(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, RAYSERVICE, "RayService")
    name = doc["metadata"]["name"]
    doc["spec"]["serveService"] = {"metadata": {"name": "payments"}}
    # Labelled as a RayService's Service too: labels are anyone's to set.
    theirs = foreign_service(
        "payments",
        {"app": "payments"},
        labels={**labels.rayservice_labels(name)},
    )
    h.kube.put(theirs)
    before = h.kube.stored(SERVICES, NS, "payments")
    h.kube.put(doc)
    cname = await cluster_up(h, name)
    await h.cluster_pass(cname)
    for _ in range(4):
        await h.service_pass(name)
    assert h.kube.stored(SERVICES, NS, "payments") == before
    assert any("Service " + NS + "/payments exists" in m for m in await warnings(h, NOT_OWNED))
    # Suspended: our head Service goes, theirs stays.
    h.kube.mutate(RAYSERVICES, NS, name, lambda rs: rs["spec"].update(suspend=True))
    for _ in range(3):
        await h.service_pass(name)
    assert h.kube.stored(SERVICES, NS, "payments") == before
    assert h.kube.stored(SERVICES, NS, labels.rayservice_head_service_name(name)) is None


async def test_a_cluster_labelled_into_a_rayservice_is_not_deleted(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, RAYSERVICE, "RayService")
    name = doc["metadata"]["name"]
    h.kube.put(doc)
    await h.service_pass(name)
    stranger = load(manifests, RAYCLUSTER, "RayCluster")
    stranger["metadata"]["name"] = f"{name}-imposter"
    stranger["metadata"]["labels"] = labels.rayservice_labels(name)
    h.kube.put(stranger)
    h.kube.reset_counts()
    for _ in range(3):
        await h.service_pass(name)
    assert [r for r in h.kube.log if r.verb == "delete"] == []
    assert h.kube.stored(RAYCLUSTERS, NS, f"{name}-imposter") is not None


def token_secret(name: str, opted_in: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if opted_in:
        meta["labels"] = {labels.AUTH_SECRET_OPT_IN: "true"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "data": {"auth_token": base64.b64encode(b"s3cret").decode()},
    }


async def tokens_sent(h: Harness, manifests: Path, secret: dict[str, Any]) -> list[str]:
    """The token headers the sample's head receives with ``secret`` named in authOptions."""
    h.kube.put(secret)
    doc = load(manifests, RAYSERVICE, "RayService")
    name = doc["metadata"]["name"]
    doc["spec"]["rayClusterConfig"]["authOptions"] = {
        "mode": "token",
        "secretName": secret["metadata"]["name"],
    }
    h.kube.put(doc)
    cname = await cluster_up(h, name)
    await h.service_pass(name)
    return h.head(cname).tokens


async def test_a_secret_not_opted_in_is_never_sent_to_a_head(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    sent = await tokens_sent(h, manifests, token_secret("someone-elses", opted_in=False))
    assert sent and set(sent) == {""}
    (message,) = await warnings(h, "AuthSecretNotOptedIn")
    assert f"Secret {NS}/someone-elses is not labelled {labels.AUTH_SECRET_OPT_IN}=true" in message


async def test_an_opted_in_secret_is_sent_as_the_token(harness: Harness, manifests: Path) -> None:
    sent = await tokens_sent(harness, manifests, token_secret("ours", opted_in=True))
    assert sent and set(sent) == {"Bearer s3cret"}


async def test_a_head_service_the_api_server_refuses_ends_as_a_condition(
    harness: Harness, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A headService override the API server refuses (a bad clusterIP) is reported,
    not retried for ever without a word."""
    h = harness
    create = h.kube.create_object

    async def refusing(obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        if obj["kind"] == "Service":
            raise ApiError(422, "Invalid", 'Service "x" is invalid: spec.clusterIP: Invalid value')
        return await create(obj, dry_run=dry_run)

    monkeypatch.setattr(h.kube, "create_object", refusing)
    doc = load(manifests, RAYCLUSTER, "RayCluster")
    name = doc["metadata"]["name"]
    h.kube.put(doc)
    await h.cluster_pass(name)
    assert h.pods(name) == []
    conds = {c["type"]: c for c in h.cluster(name)["status"]["conditions"]}
    failure = conds["ReplicaFailure"]
    assert (failure["status"], failure["reason"]) == ("True", "FailedCreateHeadService")
    assert "spec.clusterIP" in failure["message"]
    assert any("spec.clusterIP" in m for m in await warnings(h, "FailedCreateHeadService"))


async def test_our_role_binding_to_another_cluster_role_is_replaced(
    harness: Harness, manifests: Path
) -> None:
    """roleRef cannot be changed in place: a binding of ours made under another
    --autoscaler-cluster-role is deleted and created anew, not retried forever."""
    h = harness
    doc = load(manifests, AUTOSCALER, "RayCluster")
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    uid = h.cluster(name)["metadata"]["uid"]
    binding_name = f"{name}-ray-autoscaler"
    h.kube.put(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": binding_name,
                "namespace": NS,
                "ownerReferences": [
                    {
                        "apiVersion": "ray.io/v1",
                        "kind": "RayCluster",
                        "name": name,
                        "uid": uid,
                        "controller": True,
                    }
                ],
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "an-earlier-role",
            },
            "subjects": [{"kind": "ServiceAccount", "name": binding_name, "namespace": NS}],
        }
    )
    old = h.kube.stored(ROLE_BINDINGS, NS, binding_name)
    assert old is not None
    await h.cluster_pass(name)
    new = h.kube.stored(ROLE_BINDINGS, NS, binding_name)
    assert new is not None
    assert new["roleRef"]["name"] == h.rt.settings.autoscaler_cluster_role
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
