"""autoscalerOptions.version: v2 against a real Ray head: the env the operator
puts on the head's Ray container makes Ray 2.60's GCS report autoscaler v2,
which is what Ray's ``kuberay-autoscaler`` sidecar asks before choosing its
monitor (``ray.autoscaler._private.kuberay.run_autoscaler``)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from e2e.paths import sample
from raykube.builders.pods import BuildContext, build_head_pod
from raykube.models.raycluster import parse_raycluster
from tests.rayheads import start_head

pytestmark = pytest.mark.ray

#: The sidecar's own question, asked of the head's GCS from a separate process.
ASK = """
import sys
from ray._raylet import GcsClient
from ray.autoscaler.v2.utils import is_autoscaler_v2
print(is_autoscaler_v2(fetch_from_server=True, gcs_client=GcsClient(address=sys.argv[1])))
"""


def _v2_head_env() -> dict[str, str]:
    docs = [d for d in yaml.safe_load_all(sample("raycluster-autoscaling-v2.yaml").read_text())]
    doc: dict[str, Any] = next(d for d in docs if d and d["kind"] == "RayCluster")
    doc["metadata"].update(namespace="ns", uid="uid")
    head = build_head_pod(parse_raycluster(doc), BuildContext())
    env = head["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in env if e["name"].startswith("RAY_enable_autoscaler")}


def test_the_v2_head_env_makes_rays_gcs_run_autoscaler_v2() -> None:
    env = _v2_head_env()
    assert env == {"RAY_enable_autoscaler_v2": "true"}
    head = start_head(num_cpus=1, env=env)
    try:
        address = f"127.0.0.1:{head.ports.gcs}"
        answer = subprocess.run(
            [sys.executable, "-c", ASK, address], capture_output=True, text=True, timeout=60
        )
    finally:
        head.stop()
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip().splitlines()[-1] == "True", answer.stdout
