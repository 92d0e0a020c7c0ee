"""RayClusters: mutated sample manifests through the models, then everything the
models accept through the builders and the pure decisions."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from raykube.builders.autoscaler import autoscaler_rbac
from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.builders.services import build_head_service
from raykube.decisions import cluster_status, pods
from raykube.decisions.scaling import intent_of, plan_pods
from raykube.models import parse_raycluster
from raykube.models.raycluster import RayCluster
from tests.fuzz.budget import bounded
from tests.fuzz.strategies import JSON, docs_of, mutated, shaped, values

CTX = BuildContext(created_by="fuzz", cluster_domain="cluster.local")
NOW = "2026-01-01T00:00:00Z"


def parsed(doc: JSON) -> RayCluster | None:
    """The model of ``doc``, or None when the models refuse it (the documented way)."""
    try:
        return bounded("parse_raycluster", lambda: parse_raycluster(doc))
    except ValidationError:
        return None


def as_created(pod: dict[str, Any], status: JSON) -> dict[str, Any]:
    """A built pod as the API server would return it, with a fuzzed status."""
    created = copy.deepcopy(pod)
    created["metadata"].setdefault("uid", "uid-" + created["metadata"]["name"])
    created["status"] = status if isinstance(status, dict) else {"phase": "Running"}
    return created


def build_and_decide(cluster: RayCluster, status: JSON) -> dict[str, Any]:
    built = [build_head_pod(cluster, CTX)]
    built += [build_worker_pod(cluster, g, CTX) for g in cluster.spec.worker_group_specs]
    service = build_head_service(cluster, CTX)
    if cluster.spec.enable_in_tree_autoscaling:
        autoscaler_rbac(cluster, "fuzz", CTX.autoscaler_cluster_role)
    views = [pods.view(as_created(p, status)) for p in built]
    intent = intent_of(cluster)
    plan_pods(intent, views)
    observed = cluster_status.Observed(views, service)
    return cluster_status.compute_status(cluster, intent, observed, NOW)


@given(doc=mutated("RayCluster"))
def test_the_models_accept_or_refuse_with_a_validation_error(doc: JSON) -> None:
    parsed(doc)


@given(doc=mutated("RayCluster"), status=values)
def test_whatever_the_models_accept_builds_and_decides(doc: JSON, status: JSON) -> None:
    cluster = parsed(doc)
    if cluster is not None:
        bounded("build+decide(RayCluster)", lambda: build_and_decide(cluster, status))


@given(doc=shaped("RayCluster"), status=values)
def test_kubernetes_shaped_templates_with_any_values_build_and_decide(
    doc: JSON, status: JSON
) -> None:
    cluster = parsed(doc)
    if cluster is not None:
        bounded("build+decide(shaped RayCluster)", lambda: build_and_decide(cluster, status))


@given(
    replicas=st.integers(min_value=0, max_value=2**31 - 1),
    hosts=st.integers(min_value=1, max_value=2**31 - 1),
    groups=st.integers(min_value=1, max_value=8),
)
def test_huge_replica_counts_cost_bounded_decisions(replicas: int, hosts: int, groups: int) -> None:
    doc = copy.deepcopy(next(d for d in docs_of("RayCluster") if d["spec"].get("workerGroupSpecs")))
    template = doc["spec"]["workerGroupSpecs"][0]
    doc["spec"]["workerGroupSpecs"] = [
        {**template, "groupName": f"g{i}", "replicas": replicas, "numOfHosts": hosts}
        for i in range(groups)
    ]
    for group in doc["spec"]["workerGroupSpecs"]:
        group.pop("maxReplicas", None)
        group["minReplicas"] = 0
    cluster = parse_raycluster(doc)
    status = bounded("build+decide(huge replicas)", lambda: build_and_decide(cluster, {}))
    assert status["desiredWorkerReplicas"] <= 2**31 - 1
