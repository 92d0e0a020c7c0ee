"""Every object the builders make for the shared manifests, compared with
reviewed expected objects (``tests/unit/golden/``).

After an intended change, regenerate with ``RAYKUBE_UPDATE_GOLDEN=1`` and
review the diff like any other code change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.paths import manifest_files
from raykube.builders.autoscaler import autoscaler_rbac
from raykube.builders.pods import BuildContext, build_head_pod, build_worker_pod
from raykube.builders.services import build_head_service
from raykube.models.raycluster import RayCluster, parse_raycluster

GOLDEN = Path(__file__).resolve().parent / "golden"


def _clusters() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in manifest_files("ray-cluster.*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "RayCluster":
                found.append((path.stem, doc))
    return found


def _built(doc: dict[str, Any]) -> dict[str, Any]:
    doc = {
        **doc,
        "metadata": {**doc["metadata"], "namespace": "ns", "uid": "uid-1", "generation": 1},
    }
    cluster: RayCluster = parse_raycluster(doc)
    ctx = BuildContext()
    out: dict[str, Any] = {
        "headPod": build_head_pod(cluster, ctx, suffix="aaaaa"),
        "headService": build_head_service(cluster, ctx),
        "workerPods": {
            g.group_name: build_worker_pod(cluster, g, ctx, suffix="bbbbb")
            for g in cluster.spec.worker_group_specs
        },
    }
    if cluster.spec.enable_in_tree_autoscaling:
        out["autoscalerRBAC"] = autoscaler_rbac(cluster, "raykube", ctx.autoscaler_cluster_role)
    return out


CASES = _clusters()


def test_every_shared_raycluster_is_covered() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize(("stem", "doc"), CASES, ids=[c[0] for c in CASES])
def test_built_objects_match_golden(stem: str, doc: dict[str, Any]) -> None:
    built = json.loads(json.dumps(_built(doc)))
    path = GOLDEN / f"{stem}.json"
    if os.environ.get("RAYKUBE_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(built, indent=2, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert built == expected
