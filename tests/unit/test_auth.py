"""Ray token authentication (``authOptions``): the pods' environment, the
Secret the operator generates once, and the token its dashboard calls carry."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from raykube.adapters.kube import RAYCLUSTERS, SECRETS, ApiError
from raykube.builders import auth, labels
from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.decisions.rayservice_view import cluster_view
from raykube.handlers.auth_secret import FAILED
from raykube.models.clusterspec import UNSUPPORTED_FIELD_RULES, AuthOptions
from raykube.models.raycluster import RayCluster, parse_raycluster
from tests.unit.harness import NS, Harness, load

RAYCLUSTER = "ray-cluster.sample.yaml"
RAYSERVICE = "ray-service.sample.yaml"
TOKEN_ENV = {"name": "RAY_AUTH_MODE", "value": "token"}


def _container(name: str, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": name, "image": "rayproject/ray:2.60.0", "env": env or []}


def _cluster(
    auth_options: dict[str, Any] | None,
    name: str = "rc",
    head_env: list[dict[str, Any]] | None = None,
    autoscaler_env: list[dict[str, Any]] | None = None,
) -> RayCluster:
    spec: dict[str, Any] = {
        "rayVersion": "2.60.0",
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"env": autoscaler_env or []},
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {"spec": {"containers": [_container("ray-head", head_env)]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": "cpu",
                "replicas": 1,
                "rayStartParams": {},
                "template": {"spec": {"containers": [_container("ray-worker")]}},
            }
        ],
    }
    if auth_options is not None:
        spec["authOptions"] = auth_options
    return parse_raycluster(
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": name, "namespace": NS, "uid": "uid-1"},
            "spec": spec,
        }
    )


def _containers(cluster: RayCluster) -> dict[str, dict[str, Any]]:
    """Every container of the head (Ray and autoscaler) and of a worker, by role."""
    ctx = BuildContext()
    head = build_head_pod(cluster, ctx, suffix="aaaaa")["spec"]["containers"]
    group = cluster.spec.worker_group_specs[0]
    worker = build_worker_pod(cluster, group, ctx, suffix="bbbbb")["spec"]["containers"]
    assert [c["name"] for c in head] == ["ray-head", "autoscaler"]
    return {"head": head[0], "autoscaler": head[1], "worker": worker[0]}


def _auth_entries(container: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in container["env"] if e["name"] in (auth.AUTH_MODE_ENV, auth.AUTH_TOKEN_ENV)]


def _token_ref(secret: str) -> dict[str, Any]:
    return {
        "name": "RAY_AUTH_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": "auth_token"}},
    }


# --- the pods ------------------------------------------------------------------------


def test_every_ray_container_and_the_autoscaler_read_the_generated_token() -> None:
    for role, container in _containers(_cluster({"mode": "token"})).items():
        assert _auth_entries(container) == [TOKEN_ENV, _token_ref("rc")], role


def test_a_named_secret_is_referenced_instead() -> None:
    cluster = _cluster({"mode": "token", "secretName": "my-token"})
    for role, container in _containers(cluster).items():
        assert _auth_entries(container) == [TOKEN_ENV, _token_ref("my-token")], role


def test_authoptions_without_a_mode_is_token_mode() -> None:
    for role, container in _containers(_cluster({})).items():
        assert _auth_entries(container) == [TOKEN_ENV, _token_ref("rc")], role


@pytest.mark.parametrize("options", [None, {"mode": "disabled"}])
def test_without_token_mode_no_container_gets_auth_variables(
    options: dict[str, Any] | None,
) -> None:
    for role, container in _containers(_cluster(options)).items():
        assert _auth_entries(container) == [], role


def test_variables_the_user_set_win() -> None:
    own_token = {"name": "RAY_AUTH_TOKEN", "value": "chosen-by-me"}
    own_mode = {"name": "RAY_AUTH_MODE", "value": "disabled"}
    cluster = _cluster({"mode": "token"}, head_env=[own_token], autoscaler_env=[own_mode])
    found = _containers(cluster)
    assert _auth_entries(found["head"]) == [own_token, TOKEN_ENV]
    assert _auth_entries(found["autoscaler"]) == [own_mode, _token_ref("rc")]
    assert _auth_entries(found["worker"]) == [TOKEN_ENV, _token_ref("rc")]


@pytest.mark.parametrize(
    ("cluster", "secret"),
    [
        ("rc", "rc"),
        ("a" * 50, "a" * 50),
        ("abc" + "d" * 50, "d" * 50),  # 53 characters: KubeRay keeps the last 50
        ("abc-" + "d" * 49, "r" + "d" * 49),  # a cut that starts with "-"
        ("abc1" + "d" * 49, "r" + "d" * 49),  # or with a digit
    ],
)
def test_the_generated_secret_is_named_as_kuberay_names_it(cluster: str, secret: str) -> None:
    assert labels.auth_secret_name(cluster) == secret


def test_the_generated_secret_is_owned_labelled_and_holds_the_token() -> None:
    cluster = _cluster({"mode": "token"})
    found = auth.token_secret_of(cluster)
    assert found == auth.TokenSecret("rc", generated=True)
    body = auth.build_auth_secret(cluster, found, "tok")
    meta = body["metadata"]
    assert (meta["name"], meta["namespace"], meta["labels"]) == ("rc", NS, {labels.CLUSTER: "rc"})
    (ref,) = meta["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("RayCluster", "uid-1", True)
    assert base64.b64decode(body["data"]["auth_token"]) == b"tok"


def test_tokens_are_32_random_bytes() -> None:
    first, second = auth.new_token(), auth.new_token()
    assert len(base64.b64decode(first)) == 32
    assert first != second


def test_k8s_token_auth_is_refused_and_token_mode_is_not() -> None:
    rules = {r["fieldPath"]: r for r in UNSUPPORTED_FIELD_RULES}
    assert ".authOptions" not in rules
    refusal = rules[".authOptions.enableK8sTokenAuth"]
    assert "authOptions.enableK8sTokenAuth is not supported by raykube" in refusal["message"]
    # KubeRay's spelling of the field is the one the schema knows.
    assert AuthOptions.model_validate({"enableK8sTokenAuth": True}).enable_k8s_token_auth


def test_a_rayservice_cluster_view_knows_its_token_secret() -> None:
    spec: dict[str, Any] = {"authOptions": {"mode": "token"}}
    body = {"metadata": {"name": "rs-abcde"}, "spec": spec}
    view = cluster_view(body)
    assert (view.token_secret, view.token_generated) == ("rs-abcde", True)
    spec["authOptions"] = {"mode": "token", "secretName": "theirs"}
    assert cluster_view(body).token_secret == "theirs"
    assert not cluster_view(body).token_generated
    spec["authOptions"] = {"mode": "disabled"}
    assert cluster_view(body).token_secret == ""


# --- the RayCluster controller ---------------------------------------------------------


def _token_cluster(manifests: Path, h: Harness) -> str:
    doc = load(manifests, RAYCLUSTER, "RayCluster")
    doc["spec"]["authOptions"] = {"mode": "token"}
    h.kube.put(doc)
    name: str = doc["metadata"]["name"]
    return name


def _secret_requests(h: Harness) -> list[str]:
    return [r.verb for r in h.kube.log if r.kind == "Secret"]


async def test_the_secret_is_created_once_and_never_regenerated(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name = _token_cluster(manifests, h)
    await h.cluster_pass(name)
    (secret,) = h.kube.all(SECRETS, NS)
    assert secret["metadata"]["name"] == labels.auth_secret_name(name)
    assert secret["metadata"]["ownerReferences"][0]["uid"] == h.cluster(name)["metadata"]["uid"]
    token = secret["data"]["auth_token"]
    assert h.pods(name)  # pods were created once the Secret was there
    h.kube.reset_counts()
    await h.cluster_pass(name)
    assert _secret_requests(h) == []  # looked at once per process
    # A fresh process (empty records) finds it and leaves it alone.
    h.clusters.forget((NS, name))
    await h.cluster_pass(name)
    assert _secret_requests(h) == ["get"]
    (again,) = h.kube.all(SECRETS, NS)
    assert again["data"]["auth_token"] == token


async def test_a_foreign_secret_of_that_name_blocks_the_pods(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name = _token_cluster(manifests, h)
    foreign = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}}
    h.kube.put(copy.deepcopy(foreign))
    await h.cluster_pass(name)
    assert h.pods(name) == []
    conds = {c["type"]: c for c in h.cluster(name)["status"]["conditions"]}
    assert conds["ReplicaFailure"]["reason"] == FAILED
    assert "data" not in h.kube.stored(SECRETS, NS, name)  # type: ignore[operator]


async def test_without_the_right_to_create_secrets_the_cluster_says_why(
    harness: Harness, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    create = h.kube.create_object

    async def forbidden(obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        if obj["kind"] == "Secret":
            raise ApiError(
                403, "Forbidden", 'secrets is forbidden: cannot create resource "secrets"'
            )
        return await create(obj, dry_run=dry_run)

    monkeypatch.setattr(h.kube, "create_object", forbidden)
    name = _token_cluster(manifests, h)
    await h.cluster_pass(name)
    assert h.pods(name) == []
    conds = {c["type"]: c for c in h.cluster(name)["status"]["conditions"]}
    assert conds["ReplicaFailure"]["reason"] == FAILED
    assert "features.rayServiceAuthSecrets" in conds["ReplicaFailure"]["message"]


# --- the RayService controller -------------------------------------------------------------


async def _token_rayservice_up(h: Harness, manifests: Path) -> tuple[str, str]:
    """A token-mode RayService whose first cluster is built and Ready: (its name, the cluster's)."""
    doc = load(manifests, RAYSERVICE, "RayService")
    name: str = doc["metadata"]["name"]
    doc["spec"]["rayClusterConfig"]["authOptions"] = {"mode": "token"}
    h.kube.put(doc)
    await h.service_pass(name)
    (cluster,) = [c["metadata"]["name"] for c in h.kube.all(RAYCLUSTERS, NS)]
    await h.cluster_pass(cluster)
    h.all_pods_ready(cluster)
    return name, cluster


async def test_a_rayservice_sends_its_clusters_generated_token(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name, cluster = await _token_rayservice_up(h, manifests)
    secret = h.kube.stored(SECRETS, NS, labels.auth_secret_name(cluster))
    assert secret is not None  # no opt-in label: the operator made it
    token = base64.b64decode(secret["data"]["auth_token"]).decode()
    h.kube.reset_counts()
    await h.service_pass(name)
    await h.service_pass(name)
    sent = h.head(cluster).tokens
    assert sent and set(sent) == {f"Bearer {token}"}
    assert h.head(cluster).submitted  # the PUT carried it too
    # Read once, kept while the head answers.
    assert [r.verb for r in h.kube.log if r.kind == "Secret" and r.name == cluster] == ["get"]


async def test_a_token_the_operator_may_not_read_is_reported(
    harness: Harness, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    name, cluster = await _token_rayservice_up(h, manifests)
    get = h.kube.get

    async def forbidden(res: Any, namespace: str | None, obj_name: str) -> Any:
        if res is SECRETS and obj_name == cluster:
            raise ApiError(403, "Forbidden", 'secrets is forbidden: cannot get resource "secrets"')
        return await get(res, namespace, obj_name)

    monkeypatch.setattr(h.kube, "get", forbidden)
    await h.service_pass(name)
    await h.events_posted()
    (message,) = [e.message for e in h.kube.events if e.reason == "AuthSecretNotReadable"]
    assert f"Secret {NS}/{cluster}" in message
    assert set(h.head(cluster).tokens) == {""}


@pytest.mark.parametrize(
    ("ray_version", "problem"),
    [
        (None, "needs rayVersion"),
        ("2.51.9", "needs Ray 2.52.0 or later"),
        ("latest", "like 2.52.0"),
    ],
)
def test_token_mode_on_a_ray_without_it_is_refused(ray_version: str | None, problem: str) -> None:
    """Rays before 2.52 ignore RAY_AUTH_MODE: the cluster would run open (KubeRay's rule)."""
    spec = _cluster({"mode": "token"}).model_dump(mode="json", by_alias=True, exclude_none=True)
    obj: dict[str, Any] = {"apiVersion": "ray.io/v1", "kind": "RayCluster"}
    obj |= {"metadata": {"name": "rc", "namespace": NS}, "spec": spec["spec"]}
    if ray_version is None:
        del obj["spec"]["rayVersion"]
    else:
        obj["spec"]["rayVersion"] = ray_version
    with pytest.raises(ValidationError, match=problem):
        parse_raycluster(obj)
    obj["spec"]["authOptions"] = {"mode": "disabled"}
    parse_raycluster(obj)
