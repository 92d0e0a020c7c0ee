"""GCS fault tolerance with a Redis in the cluster: the head's GCS killed, no
request fails.

``../shared/manifests/ray-service.high-availability.yaml`` as users have it: a
RayService with ``gcsFaultToleranceOptions`` (Redis address, password from a
Secret), a head that runs no replicas (``num-cpus: "0"``), two workers with one
replica of each deployment per node; and the Redis Deployment, Service,
ConfigMap and Secret it brings. Localized like the walkthrough (images, no
working_dir, small CPU requests); Redis is Debian's ``redis-server`` built on
the local base (``tests/e2e/images/redis``). The sample's client pod and its
ConfigMap are left out: the test's load generator is the client.

One setting is added: ``excludeHeadPodFromServeSvc: true`` (KubeRay's field).
The head runs no replicas here but still runs a Serve proxy, and the serve
Service would send it requests; killing the GCS takes that proxy down with the
head container, and the requests it holds fail (measured without the setting:
3 answers cut off and 1 refused connection, at the instant of the kill).
With the head out of the serve Service, only the workers' proxies serve.

Killing ``gcs_server`` makes ``ray start --block`` stop the head container's
other Ray processes and exit; the kubelet restarts it, and the new GCS
recovers its state from Redis. The workers, their replicas and their proxies
keep serving meanwhile.

Then the RayService is deleted: its fault-tolerant RayCluster waits (its
finalizer) until the operator has deleted its pods and its Redis cleanup Job,
running Ray's own ``cleanup_redis_storage`` in the runtime image, has deleted
the cluster's keys from this Redis; the test counts them before and after.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e import sample, stack
from e2e.kube import Kubectl, app_statuses, eventually, is_ready, live, pod_ready, wait_routed
from e2e.load import BackgroundLoad, LoadReport
from e2e.paths import manifest
from localcluster import images
from localcluster.node_config import REAL_NODE_SELECTOR

from .conftest import Stack
from .rayservice import assert_no_failures, finish, pods

pytestmark = pytest.mark.e2e

HA = "ray-service.high-availability.yaml"
NAME = "rayservice-ha"
REDIS_DOCKERFILE = stack.REPO / "tests" / "e2e" / "images" / "redis" / "Dockerfile"
SAMPLE_CLIENT = {("Pod", "ray-pod"), ("ConfigMap", "query-config")}


def ha_manifests(ray_image: str, redis_image: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(manifest(HA).read_text()) if d]
    out = []
    for doc in docs:
        if (doc["kind"], doc["metadata"]["name"]) in SAMPLE_CLIENT:
            continue
        if doc["kind"] == "RayService":
            doc = sample.localize(doc, ray_image).doc
            doc["spec"]["excludeHeadPodFromServeSvc"] = True
        elif doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            pod["nodeSelector"] = dict(REAL_NODE_SELECTOR)
            for container in pod["containers"]:
                container["image"], container["imagePullPolicy"] = redis_image, "Never"
        out.append(doc)
    return out


@pytest.fixture(scope="module")
def ha(e2e_stack: Stack, e2e_namespace: str) -> Iterator[Kubectl]:
    try:
        redis = images.build(REDIS_DOCKERFILE, tag="raykube-test-redis", target="redis")
    except Exception as exc:
        pytest.fail(f"redis image build failed: {exc}", pytrace=False)
    e2e_stack.cluster.load_image(redis)
    k = e2e_stack.kubectl(e2e_namespace)
    for doc in ha_manifests(e2e_stack.images.runtime.ref, redis.ref):
        k.apply(doc)
    k.run("rollout", "status", "deployment/redis", "--timeout=300s")
    eventually(lambda: is_ready(k.get("rayservice", NAME)), 600, f"{NAME} Ready")
    yield k
    k.run("delete", "rayservice", NAME, "--wait=false", check=False)


def serve_url(k: Kubectl) -> str:
    svc = k.get("service", f"{NAME}-serve-svc")
    assert svc is not None
    return f"http://{svc['spec']['clusterIP']}:8000"


def the_cluster(k: Kubectl) -> dict[str, Any]:
    (cluster,) = live(k.items("rayclusters", f"ray.io/originated-from-cr-name={NAME}"))
    return cluster


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


@pytest.mark.timeout(1200)
def test_killing_the_head_gcs_keeps_serving(
    ha: Kubectl, e2e_stack: Stack, load_reports: list[LoadReport], figures: dict[str, str]
) -> None:
    cluster = the_cluster(ha)["metadata"]
    (head,) = pods(ha, cluster["name"], "head")
    assert env_of(head)["RAY_REDIS_ADDRESS"] == "redis:6379"
    assert env_of(head)["RAY_external_storage_namespace"]
    assert head["metadata"]["labels"]["ray.io/serve"] == "false"
    url = serve_url(ha)
    programmed = stack.routes(e2e_stack.cluster, url)
    assert wait_routed(url, "/fruit/", ["PEAR", 12], programmed=programmed) == 12
    restarts = head["status"]["containerStatuses"][0]["restartCount"]
    load = BackgroundLoad("GCS killed (GCS FT on)", url, "/fruit/", ["PEAR", 12], (12,)).start()
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        killed = stack.kill_container(e2e_stack.cluster, head, command_contains="gcs_server")
        assert killed, "no gcs_server process in the head container"
        started = time.monotonic()
        eventually(lambda: _head_back(ha, cluster["name"], restarts), 300, "the head restarted")
        back_s = time.monotonic() - started
        eventually(lambda: is_ready(ha.get("rayservice", NAME)), 300, f"{NAME} Ready again")
        time.sleep(10)
    finally:
        report = finish(load, load_reports)
    figures["GCS killed: head container back and Ready after"] = f"{back_s:.0f} s"
    assert_no_failures(report)
    assert the_cluster(ha)["metadata"]["uid"] == cluster["uid"]
    rs = ha.get("rayservice", NAME)
    assert set(app_statuses(rs).values()) == {"RUNNING"}


def _head_back(k: Kubectl, cluster: str, restarts: int) -> bool:
    heads = pods(k, cluster, "head")
    if len(heads) != 1:
        return False
    status = heads[0]["status"]["containerStatuses"][0]
    return bool(status["restartCount"] > restarts and pod_ready(heads[0]))


def redis_keys(k: Kubectl, storage_namespace: str) -> list[str]:
    """The keys of one storage namespace in the sample's Redis (redis-cli in its pod)."""
    secret = k.get("secret", "redis-password-secret")
    assert secret is not None
    password = base64.b64decode(secret["data"]["password"]).decode()
    out = k.run(
        "exec", "deploy/redis", "--", "redis-cli", "--no-auth-warning", "-a", password,
        "--scan", "--pattern", f"*{storage_namespace}*",
    )  # fmt: skip
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.timeout(600)
def test_deleting_the_cluster_deletes_its_keys_from_redis(
    ha: Kubectl, figures: dict[str, str]
) -> None:
    cluster = the_cluster(ha)
    name = cluster["metadata"]["name"]
    assert "ray.io/gcs-ft-redis-cleanup-finalizer" in cluster["metadata"]["finalizers"]
    (head,) = pods(ha, name, "head")
    storage = env_of(head)["RAY_external_storage_namespace"]
    before = redis_keys(ha, storage)
    assert before, f"no keys of storage namespace {storage} in Redis while the cluster runs"

    started = time.monotonic()
    ha.run("delete", "rayservice", NAME, "--wait=false")
    eventually(lambda: ha.get("raycluster", name) is None, 420, f"RayCluster {name} gone")
    gone_s = time.monotonic() - started

    reasons = {
        (e["type"], e["reason"])
        for e in ha.items("events")
        if e["involvedObject"].get("name") == name and e["involvedObject"]["kind"] == "RayCluster"
    }
    assert ("Normal", "CreatedRedisCleanupJob") in reasons, sorted(reasons)
    assert ("Normal", "RedisCleanupSucceeded") in reasons, sorted(reasons)
    assert redis_keys(ha, storage) == [], f"keys of {storage} left in Redis"
    figures["GCS FT cluster deleted: its Redis keys deleted, RayCluster gone after"] = (
        f"{gone_s:.0f} s ({len(before)} keys)"
    )
