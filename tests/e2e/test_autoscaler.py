"""Ray's own autoscaler, driven by Serve's, on the real node, under load.

A RayService (the walkthrough's cluster, localized) with
``enableInTreeAutoscaling: true``: the head carries Ray's ``ray
kuberay-autoscaler`` sidecar, from the runtime image, which scales the
RayCluster by patching its ``workerGroupSpecs[].replicas`` and
``scaleStrategy.workersToDelete``. The Serve application is the runtime's
``SlowDeployment`` (each request waits ``delay_s``), with explicit, short
autoscaling settings; each replica reserves half a CPU and the head offers
none (``num-cpus: "0"``), so one worker (1 CPU) holds two replicas.

Under 8 closed-loop clients Serve wants 4 replicas, which do not fit: Ray's
autoscaler adds a worker pod. When the load stops, Serve goes back to one
replica and the autoscaler deletes the idle worker (named in
``workersToDelete``; the operator never picks one itself while autoscaling is
on). No request may fail meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import yaml

from e2e import sample, stack
from e2e.kube import Kubectl, eventually, is_ready, live, pod_ready, wait_routed
from e2e.load import BackgroundLoad, LoadReport

from .conftest import Stack
from .rayservice import assert_no_failures, finish

pytestmark = pytest.mark.e2e

NAME = "rayservice-autoscale"
ROUTE = "/slow"
IDLE_TIMEOUT_S = 20
SERVE_CONFIG: dict[str, Any] = {
    "applications": [
        {
            "name": "slow_app",
            "import_path": "raykube_serve.loadshed:app",
            "route_prefix": ROUTE,
            "deployments": [
                {
                    "name": "SlowDeployment",
                    "max_ongoing_requests": 4,
                    "max_queued_requests": -1,
                    "user_config": {"delay_s": 0.5},
                    "ray_actor_options": {"num_cpus": 0.5},
                    "autoscaling_config": {
                        "min_replicas": 1,
                        "max_replicas": 4,
                        "target_ongoing_requests": 2,
                        "upscale_delay_s": 2,
                        "downscale_delay_s": 10,
                    },
                }
            ],
        }
    ]
}


def autoscaling_service(image: str) -> dict[str, Any]:
    doc = sample.localize(sample.load_sample(), image).doc
    doc["metadata"]["name"] = NAME
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(SERVE_CONFIG, sort_keys=False)
    cluster = doc["spec"]["rayClusterConfig"]
    cluster["enableInTreeAutoscaling"] = True
    cluster["autoscalerOptions"] = {"idleTimeoutSeconds": IDLE_TIMEOUT_S}
    cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] = "0"
    group = cluster["workerGroupSpecs"][0]
    group.update({"replicas": 1, "minReplicas": 1, "maxReplicas": 3})
    return doc


def the_cluster(k: Kubectl) -> dict[str, Any]:
    (cluster,) = live(k.items("rayclusters", f"ray.io/originated-from-cr-name={NAME}"))
    return cluster


def workers(k: Kubectl, cluster: str) -> list[dict[str, Any]]:
    return live(k.items("pods", f"ray.io/cluster={cluster},ray.io/node-type=worker"))


def running_replicas(k: Kubectl) -> int:
    """SlowDeployment's RUNNING replicas, from the dashboard behind <rs>-head-svc."""
    svc = k.get("service", f"{NAME}-head-svc")
    assert svc is not None
    url = f"http://{svc['spec']['clusterIP']}:8265/api/serve/applications/"
    try:
        apps = httpx.get(url, timeout=10).json()["applications"]
        replicas = apps["slow_app"]["deployments"]["SlowDeployment"]["replicas"]
    except (httpx.HTTPError, KeyError, ValueError):
        return 0
    return sum(r.get("state") == "RUNNING" for r in replicas)


@pytest.fixture(scope="module")
def autoscaled(e2e_stack: Stack, e2e_namespace: str) -> Kubectl:
    k = e2e_stack.kubectl(e2e_namespace)
    k.apply(autoscaling_service(e2e_stack.images.runtime.ref))
    eventually(lambda: is_ready(k.get("rayservice", NAME)), 600, f"{NAME} Ready")
    return k


@pytest.mark.timeout(1200)
def test_ray_autoscaler_adds_and_removes_workers_with_serve_load(
    autoscaled: Kubectl, e2e_stack: Stack, load_reports: list[LoadReport], figures: dict[str, str]
) -> None:
    k = autoscaled
    cluster = the_cluster(k)
    name = cluster["metadata"]["name"]
    head = live(k.items("pods", f"ray.io/cluster={name},ray.io/node-type=head"))[0]
    containers = [c["name"] for c in head["spec"]["containers"]]
    assert containers[1:] == ["autoscaler"], containers
    svc = k.get("service", f"{NAME}-serve-svc")
    assert svc is not None
    url = f"http://{svc['spec']['clusterIP']}:8000"
    wait_routed(url, ROUTE, {}, programmed=stack.routes(e2e_stack.cluster, url))
    load = BackgroundLoad("Ray autoscaler: workers added, then removed", url, ROUTE, {},
                          accept=("Hello!",), concurrency=8).start()  # fmt: skip
    started = time.monotonic()
    try:
        eventually(lambda: len(workers(k, name)) >= 2, 400, "the autoscaler to add a worker")
        up_s = time.monotonic() - started
        eventually(lambda: running_replicas(k) >= 3, 300, "Serve to run more replicas")
        eventually(lambda: all(pod_ready(w) for w in workers(k, name)), 300, "new workers Ready")
    finally:
        report = finish(load, load_reports)
    patched = the_cluster(k)["spec"]["workerGroupSpecs"][0]
    assert patched["replicas"] >= 2, patched
    # One client keeps going while Serve and the autoscaler scale back down.
    calm = BackgroundLoad("Ray autoscaler: scale-down under light load", url, ROUTE, {},
                          accept=("Hello!",), concurrency=1).start()  # fmt: skip
    stopped = time.monotonic()
    before = {w["metadata"]["name"] for w in workers(k, name)}
    named: set[str] = set()
    try:
        eventually(lambda: running_replicas(k) == 1, 300, "Serve back to one replica")

        def one_worker_left() -> bool:
            named.update(workers_to_delete(k) + deleted_as_named(k))
            return len(workers(k, name)) == 1

        eventually(one_worker_left, 400, "the autoscaler to remove a worker")
        down_s = time.monotonic() - stopped
        time.sleep(5)
    finally:
        calm_report = finish(calm, load_reports)
    removed = before - {w["metadata"]["name"] for w in workers(k, name)}
    # The autoscaler may name a pod and clear the list between two looks; the
    # operator's event says which list each deletion came from.
    named.update(deleted_as_named(k))
    # The operator deleted exactly the pods Ray's autoscaler named.
    assert removed and removed <= named, (removed, named)
    figures["Ray autoscaler"] = (
        f"second worker {up_s:.0f} s after load began; back to one worker {down_s:.0f} s "
        f"after it stopped (idleTimeoutSeconds {IDLE_TIMEOUT_S})"
    )
    assert_no_failures(report)
    assert_no_failures(calm_report)
    assert the_cluster(k)["metadata"]["uid"] == cluster["metadata"]["uid"]
    assert the_cluster(k)["spec"]["workerGroupSpecs"][0]["replicas"] == 1


def deleted_as_named(k: Kubectl) -> list[str]:
    """Pods the operator deleted because workersToDelete named them (its events)."""
    found = []
    for event in k.items("events"):
        message = event.get("message") or ""
        if event.get("reason") == "DeletedWorkerPod" and message.endswith("(WorkersToDelete)"):
            found.append(message.split("/", 1)[1].split(" ", 1)[0])
    return found


def workers_to_delete(k: Kubectl) -> list[str]:
    group = the_cluster(k)["spec"]["workerGroupSpecs"][0]
    return list((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
