"""The real-node tier: control plane + kwok nodes + one real node.

``local_cluster`` is a cluster of its own (not the control-plane tier's):
its kwok nodes are tainted so that ordinary pods land on the real node.
If any component cannot start, the tests fail with the component's log,
never skip.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import images, node, processes, versions
from localcluster.node import LocalCluster

REPO = Path(__file__).resolve().parents[2]
WEB_DOCKERFILE = Path(__file__).resolve().parent / "images" / "web" / "Dockerfile"
# Not "pytest-*": the control-plane tier reaps those by its own rule.
STATE_PREFIX = "node-pytest-"


def _reap_stale(root: Path) -> None:
    """Stop local clusters of earlier test runs whose pytest process is gone."""
    if root.is_dir():
        for state in root.glob(f"{STATE_PREFIX}*"):
            owner = state.name.removeprefix(STATE_PREFIX)
            if owner.isdigit() and processes.alive(int(owner)):
                continue
            node.cluster_down(state)
            shutil.rmtree(state, ignore_errors=True)
    node.reap()


@pytest.fixture(scope="session")
def web_image() -> images.Image:
    """The test HTTP server, built with buildah on the local Debian base."""
    try:
        return images.build(WEB_DOCKERFILE, tag="raykube-test-web", target="web")
    except Exception as exc:
        pytest.fail(f"image build failed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def local_cluster(web_image: images.Image) -> Iterator[LocalCluster]:
    root = versions.cache_root() / "clusters"
    _reap_stale(root)
    state = root / f"{STATE_PREFIX}{os.getpid()}"
    cluster = _start(state, web_image)
    try:
        yield cluster
    finally:
        slot = cluster.node.slot
        node.cluster_down(state)
        shutil.rmtree(state, ignore_errors=True)
        left = node.leftovers(slot)
        assert not left, f"the real node left things behind: {left}"


def _start(state: Path, web_image: images.Image) -> LocalCluster:
    """Bring the cluster up; one retry, since a start-up race in one
    component should not cost the whole tier (the first error is printed)."""
    errors: list[str] = []
    for _ in range(2):
        try:
            return node.cluster_up(state, crds=REPO / "crds", extra_images=[web_image], quiet=True)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            print(f"local cluster start failed: {errors[-1]}", file=sys.stderr)
            node.cluster_down(state)
            shutil.rmtree(state, ignore_errors=True)
    pytest.fail(
        "local cluster with a real node could not start:\n" + "\n".join(errors), pytrace=False
    )


@pytest.fixture(scope="module")
def node_namespace(local_cluster: LocalCluster) -> Iterator[str]:
    name = f"n-{uuid.uuid4().hex[:8]}"
    local_cluster.cp.kubectl("create", "namespace", name)
    local_cluster.cp.kubectl(
        "wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s"
    )
    yield name
    local_cluster.cp.kubectl("delete", "namespace", name, "--wait=false", check=False)
