"""A group's Ray ``resources`` and ``labels`` reach ``ray start`` and the pods;
a RayCluster handed to MultiKueue is left alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.builders.ray_start import group_params
from raykube.decisions.cluster_status import desired_resources
from raykube.decisions.scaling import intent_of
from raykube.models.raycluster import parse_raycluster
from tests.unit.harness import Harness, load

SAMPLE = "ray-cluster.sample.yaml"


def cluster_doc(manifests: Path) -> dict[str, Any]:
    doc = load(manifests, SAMPLE, "RayCluster")
    doc["metadata"]["uid"] = "u-1"
    return doc


def test_resources_win_over_start_params_and_custom_ones_are_json() -> None:
    params = group_params(
        {"num-cpus": "4", "block": "true"},
        {"CPU": "0", "GPU": "1", "memory": "1Gi", "TPU": "4", "half": "500m"},
        {"zone": "a", "accelerator": "tpu"},
    )
    assert params["num-cpus"] == "0" and params["num-gpus"] == "1"
    assert params["memory"] == str(2**30)
    assert json.loads(params["resources"]) == {"TPU": 4, "half": 0.5}
    assert params["labels"] == "accelerator=tpu,zone=a"
    assert group_params({"num-cpus": "4"}, None, None) == {"num-cpus": "4"}


def test_a_group_s_resources_and_labels_reach_its_pods(manifests: Path) -> None:
    doc = cluster_doc(manifests)
    doc["spec"]["headGroupSpec"]["resources"] = {"CPU": "0"}
    group = doc["spec"]["workerGroupSpecs"][0]
    group["resources"] = {"TPU": "4"}
    group["labels"] = {"zone": "b", "ray.io/cluster": "not-this"}
    cluster = parse_raycluster(doc)
    head = build_head_pod(cluster, BuildContext(), suffix="h")
    assert "--num-cpus=0" in head["spec"]["containers"][0]["args"][0]
    worker = build_worker_pod(cluster, cluster.spec.worker_group_specs[0], BuildContext(), "w")
    args = worker["spec"]["containers"][0]["args"][0]
    assert """--resources='{"TPU":4}'""" in args and "--labels=" in args
    labels = worker["metadata"]["labels"]
    assert labels["zone"] == "b"
    assert labels["ray.io/cluster"] == cluster.metadata.name  # ours win


def test_resources_must_be_quantities(manifests: Path) -> None:
    doc = cluster_doc(manifests)
    doc["spec"]["workerGroupSpecs"][0]["resources"] = {"TPU": "lots"}
    with pytest.raises(ValidationError, match="TPU"):
        parse_raycluster(doc)


async def test_a_raycluster_managed_by_multikueue_is_left_alone(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, SAMPLE, "RayCluster")
    doc["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    h.kube.put(doc)
    h.kube.reset_counts()
    await h.cluster_pass(doc["metadata"]["name"])
    assert h.kube.requests == {}


def test_accelerators_become_ray_resources_and_tpus_are_counted(manifests: Path) -> None:
    doc = cluster_doc(manifests)
    group = doc["spec"]["workerGroupSpecs"][0]
    group["replicas"] = group["minReplicas"] = 2
    limits = group["template"]["spec"]["containers"][0].setdefault("resources", {})
    limits.setdefault("limits", {})["google.com/tpu"] = "4"
    cluster = parse_raycluster(doc)
    worker = build_worker_pod(cluster, cluster.spec.worker_group_specs[0], BuildContext(), "w")
    assert """--resources='{"TPU":4}'""" in worker["spec"]["containers"][0]["args"][0]
    status = desired_resources(cluster, intent_of(cluster))
    assert status["desiredTPU"] == "8"
