"""The operator as users install it: its image built here, `helm install` of
the chart onto the real node in a namespace that enforces the restricted Pod
Security profile, a RayCluster from the shared manifests reconciled, metrics
scraped through the chart's Service, `helm upgrade` to two replicas with
leader election, and `helm uninstall` leaving CRDs and users' objects.

The tests run in file order on one release (module fixtures)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.paths import manifest
from localcluster import images, kwok, processes, versions
from localcluster.node import LocalCluster

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "raykube"
RELEASE = "raykube"
DEPLOYMENT = "raykube"  # the chart's full name when the release is called "raykube"


@dataclass
class Release:
    cluster: LocalCluster
    namespace: str
    image: images.Image
    install_output: str

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.cp.kubectl(*args, check=check, input=input)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def helm(self, *args: str) -> str:
        return helm(self.cluster, *args, "-n", self.namespace)


def helm(cluster: LocalCluster, *args: str) -> str:
    proc = subprocess.run(
        [str(versions.bin_dir() / "helm"), *args],
        capture_output=True,
        text=True,
        env=cluster.cp.env(),
        timeout=400,
    )
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def eventually(check: Any, timeout: float = 120, what: str = "") -> Any:
    return processes.wait_until(what or "a condition", check, timeout=timeout, interval=1)


@pytest.fixture(scope="module")
def operator_image(local_cluster: LocalCluster) -> images.Image:
    """The Dockerfile's `operator` target, built with buildah and given to the node."""
    try:
        image = images.build(
            REPO / "Dockerfile", tag="raykube-operator", target="operator", context=REPO
        )
    except Exception as exc:
        pytest.fail(f"operator image build failed: {exc}", pytrace=False)
    images.import_image(local_cluster.node.paths.containerd_socket, image)
    return image


@pytest.fixture(scope="module")
def release(local_cluster: LocalCluster, operator_image: images.Image) -> Iterator[Release]:
    ns = f"raykube-{uuid.uuid4().hex[:6]}"
    cp = local_cluster.cp
    cp.kubectl("create", "namespace", ns)
    # Any pod the chart makes must pass the restricted profile to be admitted.
    cp.kubectl(
        "label", "namespace", ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    repository, tag = operator_image.ref.rsplit(":", 1)
    started = time.monotonic()
    out = helm(
        local_cluster, "install", RELEASE, str(CHART), "-n", ns, "--wait", "--timeout=300s",
        f"--set=image.repository={repository}", f"--set=image.tag={tag}",
        "--set=image.pullPolicy=Never",
    )  # fmt: skip
    print(f"\nhelm install --wait: {time.monotonic() - started:.1f}s")
    try:
        yield Release(local_cluster, ns, operator_image, out)
    finally:
        subprocess.run(
            [str(versions.bin_dir() / "helm"), "uninstall", RELEASE, "-n", ns, "--wait"],
            env=cp.env(),
            capture_output=True,
            timeout=120,
        )
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def users(release: Release) -> Iterator[str]:
    """A user's namespace holding the shared sample RayCluster."""
    ns = f"users-{uuid.uuid4().hex[:6]}"
    release.kubectl("create", "namespace", ns)
    release.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(_sample_cluster()))
    yield ns
    release.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _sample_cluster() -> dict[str, Any]:
    """The shared sample, its pods sent to kwok nodes: the node has no Ray image
    (and no registry to pull one from), and the operator is what is tested."""
    doc: dict[str, Any] = yaml.safe_load(manifest("ray-cluster.sample.yaml").read_text())
    spec = doc["spec"]
    for template in [spec["headGroupSpec"]["template"]] + [
        g["template"] for g in spec["workerGroupSpecs"]
    ]:
        template["spec"]["nodeSelector"] = {kwok.NODE_KIND_LABEL: "kwok-cpu"}
        template["spec"]["tolerations"] = [{"operator": "Exists", "effect": "NoSchedule"}]
    return doc


def _pods(release: Release, ns: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = release.get("pods", "-n", ns, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _operator_pods(release: Release) -> list[dict[str, Any]]:
    return _pods(release, release.namespace, "app.kubernetes.io/name=raykube")


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _ready_operators(release: Release, count: int) -> list[dict[str, Any]] | None:
    pods = _operator_pods(release)
    return pods if len(pods) == count and all(_ready(p) for p in pods) else None


def _exec_python(release: Release, pod: str, code: str) -> str:
    return release.kubectl(
        "exec", "-n", release.namespace, pod, "--", "python", "-c", code
    ).stdout.strip()


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("raykube_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_install_brings_up_a_hardened_operator_pod(release: Release) -> None:
    assert f"kubectl -n {release.namespace} rollout status deployment/{DEPLOYMENT}" in (
        release.install_output
    )
    (pod,) = _operator_pods(release)
    name = pod["metadata"]["name"]
    assert _ready(pod) and pod["spec"]["nodeName"] == release.cluster.node.name
    container = pod["status"]["containerStatuses"][0]
    assert container["restartCount"] == 0 and container["image"].endswith(release.image.ref)
    probe = (
        "import os, shutil, importlib.util as u\n"
        "try:\n    open('/probe', 'w'); writable = True\n"
        "except OSError:\n    writable = False\n"
        "print(os.getuid(), writable, u.find_spec('ray') is None,"
        " [c for c in ('gcc', 'cc', 'make') if shutil.which(c)])\n"
    )
    assert _exec_python(release, name, probe) == "65532 False True []"
    logs = release.kubectl("logs", "-n", release.namespace, name).stdout.splitlines()
    records = [json.loads(line) for line in logs if line.strip()]
    assert any(r["msg"] == "raykube starting" for r in records)


def test_operator_reconciles_the_sample_raycluster(release: Release, users: str) -> None:
    name = _sample_cluster()["metadata"]["name"]

    def ready() -> Any:
        status = release.get("raycluster", name, "-n", users).get("status") or {}
        return status if status.get("state") == "ready" else None

    status = eventually(ready, 120, "the RayCluster to be ready")
    assert status["readyWorkerReplicas"] == 1
    heads = _pods(release, users, f"ray.io/cluster={name},ray.io/node-type=head")
    workers = _pods(release, users, f"ray.io/cluster={name},ray.io/node-type=worker")
    assert len(heads) == 1 and len(workers) == 1
    assert heads[0]["metadata"]["ownerReferences"][0]["name"] == name
    release.get("service", f"{name}-head-svc", "-n", users)


def test_metrics_are_scraped_through_the_chart_service(release: Release, users: str) -> None:
    svc = release.get("service", f"{DEPLOYMENT}-metrics", "-n", release.namespace)
    url = f"http://{svc['spec']['clusterIP']}:8080/metrics"
    values = eventually(lambda: _metrics(url), 60, "metrics through the Service")
    assert values['raykube_reconcile_total{kind="RayCluster"}'] >= 1
    assert values['raykube_rayclusters{state="ready"}'] >= 1
    assert any(k.startswith("raykube_kube_requests_total{") for k in values)


def test_upgrade_to_two_replicas_elects_one_leader(release: Release, users: str) -> None:
    release.helm("upgrade", RELEASE, str(CHART), "--reuse-values", "--set=replicaCount=2",
                 "--wait", "--timeout=300s")  # fmt: skip
    deployment = release.get("deployment", DEPLOYMENT, "-n", release.namespace)
    # Leaving an unelected release: this one rollout must not overlap old and new.
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pods = eventually(lambda: _ready_operators(release, 2), 120, "two ready operator pods")
    names = {p["metadata"]["name"] for p in pods}
    lease = eventually(
        lambda: release.get("lease", "raykube-leader", "-n", release.namespace), 60, "the Lease"
    )
    leader = lease["spec"]["holderIdentity"]
    assert leader in names
    leading = {
        p["metadata"]["name"]: _metrics(f"http://{p['status']['podIP']}:8080/metrics")[
            "raykube_leader_election_leading"
        ]
        for p in pods
    }
    assert leading == {n: (1.0 if n == leader else 0.0) for n in names}
    # The new leader reconciles: one more worker.
    name = _sample_cluster()["metadata"]["name"]
    release.kubectl(
        "patch", "raycluster", name, "-n", users, "--type=json",
        "-p", '[{"op":"replace","path":"/spec/workerGroupSpecs/0/replicas","value":2}]',
    )  # fmt: skip
    eventually(
        lambda: len(_pods(release, users, f"ray.io/cluster={name},ray.io/node-type=worker")) == 2,
        90, "a second worker",
    )  # fmt: skip
    # With election in place, later rollouts may overlap.
    release.helm("upgrade", RELEASE, str(CHART), "--reuse-values", "--wait", "--timeout=300s")
    deployment = release.get("deployment", DEPLOYMENT, "-n", release.namespace)
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_uninstall_keeps_crds_and_users_objects(release: Release, users: str) -> None:
    release.helm("uninstall", RELEASE, "--wait", "--timeout=120s")
    ns = release.namespace
    left = release.kubectl(
        "get", "deployment,serviceaccount,role,rolebinding,service", "-n", ns,
        "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name",
    ).stdout.split()  # fmt: skip
    assert left == []
    cluster_scoped = release.kubectl(
        "get", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={RELEASE}",
        "-o", "name",
    ).stdout.split()  # fmt: skip
    assert cluster_scoped == []
    crds = release.get("crd")["items"]
    assert {"rayclusters.ray.io", "rayservices.ray.io"} <= {c["metadata"]["name"] for c in crds}
    name = _sample_cluster()["metadata"]["name"]
    release.get("raycluster", name, "-n", users)
    assert len(_pods(release, users, f"ray.io/cluster={name}")) == 3
