"""The walkthrough (seed 003, steps 3-9) on the local cluster, under live traffic.

KubeRay's ``ray_v1alpha1_rayservice.yaml`` is applied as ``e2e.sample``
localizes it (no working_dir, the local image, small CPU requests), to the
operator installed by Helm; Ray runs for real in pods on the real node, and
every request goes through ``rayservice-sample-serve-svc``. The tests run in
file order on one RayService, as the walkthrough does:

- steps 3-6: one RayCluster, KubeRay's Service names, apps RUNNING in
  ``kubectl describe``, the two answers (from this host and from a pod);
- step 7, scenario (a): MangoStand's price 3 -> 4 in place, under load;
- step 8.1, scenario (c): worker replicas 1 -> 2 -> 1 in place, under load;
- steps 8.4-8.7, scenario (b): a new env var in ``rayClusterConfig`` and a new
  price in ``serveConfigV2`` in one apply: pending cluster, switch, old cluster
  deleted after ``rayClusterDeletionDelaySeconds``; ``/fruit/`` answers 8 (the
  old cluster, whose config is left alone) until the switch and 10 after it
  (at least 2,000 requests);
- step 9: deleting the RayService removes its clusters and Services.

Zero downtime means zero failed requests: no transport error, no status but
200, no wrong answer.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

import httpx
import pytest

from e2e import sample
from e2e.kube import Kubectl, answers, app_statuses, eventually, is_ready, live, post
from e2e.load import LoadReport

from .conftest import Stack
from .rayservice import (
    CALC,
    FRUIT,
    NAME,
    Service,
    Timeline,
    assert_no_failures,
    assert_same_cluster,
    finish,
    localized,
    only_cluster,
    pods,
    watch_until,
    with_env,
)

pytestmark = pytest.mark.e2e

DELETION_DELAY = 30
UPGRADE_MIN_REQUESTS = 2000
NEW_ENV = {"name": "E2E_UPGRADE", "value": "blue-green"}


@pytest.fixture(scope="module")
def walk(e2e_stack: Stack, e2e_namespace: str) -> Service:
    image = e2e_stack.images.runtime.ref
    k = e2e_stack.kubectl(e2e_namespace)
    return Service(k, image, localized(image), e2e_stack.cluster)


# --- steps 3-6 ------------------------------------------------------------------------


# The first test also pays for the tier's set-up: image builds (cold in CI),
# the cluster, helm install.
@pytest.mark.timeout(1800)
def test_step_3_4_apply_builds_a_cluster_and_the_services_kuberay_names(walk: Service) -> None:
    assert walk.doc["apiVersion"] == "ray.io/v1alpha1"
    walk.apply(walk.doc)
    walk.wait_ready()
    meta = walk.remember_cluster()
    assert re.fullmatch(rf"{NAME}-[a-z0-9]{{5}}", meta["name"]), meta["name"]
    assert [(o["kind"], o["name"]) for o in meta["ownerReferences"]] == [("RayService", NAME)]
    (head,) = pods(walk.k, meta["name"], "head")
    (worker,) = pods(walk.k, meta["name"], "worker")
    assert head["metadata"]["name"].startswith(f"{meta['name']}-head-")
    assert worker["metadata"]["name"].startswith(f"{meta['name']}-small-group-worker-")
    assert_services(walk.k, meta["name"])
    listed = walk.k.run("get", "rayservice,raycluster,services")
    for name in (NAME, meta["name"], f"{NAME}-head-svc", f"{NAME}-serve-svc"):
        assert name in listed


def assert_services(k: Kubectl, cluster: str) -> None:
    serve = k.get("service", f"{NAME}-serve-svc")
    head = k.get("service", f"{NAME}-head-svc")
    own = k.get("service", f"{cluster}-head-svc")
    assert serve and head and own
    assert serve["spec"]["selector"] == {"ray.io/cluster": cluster, "ray.io/serve": "true"}
    assert [(p["name"], p["port"]) for p in serve["spec"]["ports"]] == [("serve", 8000)]
    assert head["spec"]["selector"]["ray.io/cluster"] == cluster
    ports = {p["port"] for p in head["spec"]["ports"]}
    assert {6379, 8265, 10001, 8000} <= ports


def test_step_5_describe_shows_the_applications_running(walk: Service) -> None:
    rs = walk.k.get("rayservice", NAME)
    assert app_statuses(rs) == {"fruit_app": "RUNNING", "math_app": "RUNNING"}
    config = sample.serve_config(walk.doc)
    apps = rs["status"]["activeServiceStatus"]["applicationStatuses"] if rs else {}
    for app in config["applications"]:
        deployments = apps[app["name"]]["serveDeploymentStatuses"]
        assert set(deployments) == {d["name"] for d in app["deployments"]}
        assert {d["status"] for d in deployments.values()} == {"HEALTHY"}
    described = walk.k.run("describe", "rayservices", NAME)
    for text in ("Active Service Status", "fruit_app", "math_app", "MangoStand", "RUNNING"):
        assert text in described, f"{text!r} not in kubectl describe:\n{described}"


def test_step_6_requests_through_the_serve_service(walk: Service) -> None:
    fruit, calc = post(walk.url, *FRUIT), post(walk.url, *CALC)
    assert (fruit.status_code, fruit.text) == (200, "6")
    assert (calc.status_code, calc.text) == (200, '"15 pizzas please!"')
    # Step 6.1's curl pod: by the Service's DNS name, from inside the cluster.
    assert from_a_pod(walk, *FRUIT) == "6"
    assert from_a_pod(walk, *CALC) == '"15 pizzas please!"'


def from_a_pod(walk: Service, path: str, body: Any) -> str:
    code = (
        "import sys, urllib.request as u\n"
        f"r = u.Request('http://{NAME}-serve-svc:8000{path}', data=sys.argv[1].encode(),"
        " headers={'Content-Type': 'application/json'})\n"
        "print(u.urlopen(r, timeout=10).read().decode())\n"
    )
    pod = f"curl-{int(time.time() * 1000) % 100000}"
    # Not `run -i --rm`: attaching races a container that is done in a second,
    # and a lost attach prints nothing. Wait for the pod to finish, then read it.
    walk.k.run(
        "run", pod, f"--image={walk.runtime_image}", "--image-pull-policy=Never",
        "--restart=Never", "--command", "--", "python3", "-c", code, json.dumps(body),
    )  # fmt: skip
    try:
        walk.k.run(
            "wait", f"pod/{pod}", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=120s"
        )
        return walk.k.run("logs", pod).strip()
    finally:
        walk.k.run("delete", "pod", pod, "--wait=false", check=False)


# --- step 7: serve config in place (scenario a) ---------------------------------------


def test_step_7_price_change_applies_in_place_under_load(
    walk: Service, load_reports: list[LoadReport]
) -> None:
    pod_uids = {p["metadata"]["uid"] for p in live(walk.k.items("pods", "ray.io/is-ray-node=yes"))}
    config = sample.serve_config(walk.doc)
    sample.deployment(config, "fruit_app", "MangoStand")["user_config"]["price"] = 4
    load = walk.load("(a) in-place serve config update", accept=(6, 8))
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        walk.apply(sample.with_serve_config(walk.doc, config))
        eventually(lambda: "8" in load.seen, 120, "the load to see the new price")
        time.sleep(5)
    finally:
        report = finish(load, load_reports)
    assert_no_failures(report)
    # Once the new price answers, the old one does not come back (1 s of slack
    # for requests that were already inside the replica).
    assert load.seen["6"][1] <= load.seen["8"][0] + 1.0, load.seen
    assert_same_cluster(walk)
    after = {p["metadata"]["uid"] for p in live(walk.k.items("pods", "ray.io/is-ray-node=yes"))}
    assert after == pod_uids, "the price change restarted pods"
    assert answers(walk.url, *FRUIT, 8)


# --- step 8.1: worker group size in place (scenario c) ---------------------------------


def with_replicas(doc: dict[str, Any], replicas: int) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = replicas
    return out


def ray_alive_nodes(k: Kubectl) -> int:
    """Nodes Ray itself counts as ALIVE, from the dashboard behind <rs>-head-svc."""
    svc = k.get("service", f"{NAME}-head-svc")
    assert svc is not None
    url = f"http://{svc['spec']['clusterIP']}:8265/api/v0/nodes?limit=100"
    try:
        nodes = httpx.get(url, timeout=10).json()["data"]["result"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return 0
    return sum(n.get("state") == "ALIVE" for n in nodes)


def workers_are(walk: Service, count: int) -> bool:
    cluster = walk.cluster["name"]
    spec = only_cluster(walk)["spec"]["workerGroupSpecs"][0]
    return spec["replicas"] == count and len(pods(walk.k, cluster, "worker")) == count


def test_step_8_1_worker_replicas_change_applies_in_place_under_load(
    walk: Service, load_reports: list[LoadReport]
) -> None:
    load = walk.load("(c) worker scale-up 1->2 and down 2->1", accept=(8,))
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        walk.apply(with_replicas(walk.doc, 2))
        eventually(lambda: workers_are(walk, 2), 120, "two worker pods")
        eventually(lambda: ray_alive_nodes(walk.k) == 3, 180, "the new worker to join Ray")
        assert_same_cluster(walk)
        walk.apply(with_replicas(walk.doc, 1))
        eventually(lambda: workers_are(walk, 1), 120, "one worker pod again")
        time.sleep(5)
    finally:
        report = finish(load, load_reports)
    assert_no_failures(report)
    assert_same_cluster(walk)


# --- steps 8.4-8.7: zero-downtime upgrade (scenario b) ----------------------------------


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """A cluster change and a serve change in one apply: MangoStand's price
    4 -> 5 (the answer 8 -> 10) with a new env var."""
    out = with_env(doc, NEW_ENV["name"], NEW_ENV["value"])
    out["spec"]["rayClusterDeletionDelaySeconds"] = DELETION_DELAY
    config = sample.serve_config(out)
    sample.deployment(config, "fruit_app", "MangoStand")["user_config"]["price"] = 5
    return sample.with_serve_config(out, config)


def own_serve_url(k: Kubectl, cluster: str) -> str:
    """The serve port of one cluster's head, by the address its RayCluster
    reports for its (headless) head Service (not the stable one)."""
    rc = k.get("raycluster", cluster)
    assert rc is not None, cluster
    address = ((rc.get("status") or {}).get("head") or {}).get("serviceIP")
    assert address, f"{cluster}: no head address in its status"
    return f"http://{address}:8000"


@pytest.mark.timeout(900)
def test_step_8_4_cluster_config_change_upgrades_with_zero_downtime(
    walk: Service, load_reports: list[LoadReport], figures: dict[str, str]
) -> None:
    load = walk.load("(b) blue-green upgrade", accept=(8, 10))
    old_answers: list[str] = []
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        timeline = Timeline(old=walk.cluster["name"])
        old_url = own_serve_url(walk.k, timeline.old)
        walk.apply(upgrade(walk.doc))
        timeline.started = time.monotonic()

        def old_cluster_keeps_its_config(t: Timeline) -> bool:
            # KubeRay's TestUpdateServeConfigAndRayClusterSpec: while the new
            # cluster comes up, the old one still runs the old config.
            if t.pending and t.switched_at is None:
                old_answers.append(post(old_url, *FRUIT).text)
            return t.done and load.sent >= UPGRADE_MIN_REQUESTS

        watch_until(walk, timeline, old_cluster_keeps_its_config)
    finally:
        report = finish(load, load_reports)
        print("answers per 5 s (8: the old cluster, 10: the new one):")
        print(load.split_text({"8": "old 8", "10": "new 10"}))
    assert_no_failures(report, at_least=UPGRADE_MIN_REQUESTS)
    assert old_answers and set(old_answers) == {"8"}, old_answers
    # The new price comes only from the new cluster, so only after the switch;
    # once it answers, the old price does not come back (1 s of slack for
    # requests already inside a replica).
    assert load.seen["8"][1] <= load.seen["10"][0] + 1.0, load.seen
    new = only_cluster(walk)["metadata"]
    assert timeline.pending == new["name"] != timeline.old
    assert timeline.pending_at is not None and timeline.switched_at is not None
    assert timeline.old_gone_at is not None
    figures["(b) blue-green upgrade"] = timeline.text()
    assert timeline.pending_at <= timeline.switched_at
    # 2 s of slack for the 1 s polling on either side.
    assert timeline.old_gone_at - timeline.switched_at >= DELETION_DELAY - 2, timeline
    assert_services(walk.k, new["name"])
    for pod in live(walk.k.items("pods", f"ray.io/cluster={new['name']}")):
        assert NEW_ENV in pod["spec"]["containers"][0].get("env", []), pod["metadata"]["name"]
    rs = walk.get()
    assert rs["status"]["activeServiceStatus"]["rayClusterName"] == new["name"]
    assert not (rs["status"].get("pendingServiceStatus") or {}).get("rayClusterName")
    assert is_ready(rs) and answers(walk.url, *FRUIT, 10)
    walk.cluster = {"name": new["name"], "uid": new["uid"]}


# --- step 9 ---------------------------------------------------------------------------


def test_step_9_deleting_the_rayservice_removes_what_it_owns(walk: Service) -> None:
    walk.k.run("delete", "rayservice", NAME, "--wait=false")

    def gone() -> bool:
        left = walk.k.items("rayclusters") + walk.k.items("pods", "ray.io/is-ray-node=yes")
        services = [s for s in walk.k.items("services") if s["metadata"]["name"].startswith(NAME)]
        return not (left or services)

    eventually(gone, 180, "the RayService's clusters, pods and Services to be deleted")
