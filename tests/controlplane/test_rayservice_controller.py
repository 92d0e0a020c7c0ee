"""The RayService controller against a real API server, with the operator as its
own process and every RayCluster's dashboard answered by a real Ray head.

The user's walkthrough (steps 3-8) as object choreography: the first cluster
and the two stable Services, Serve statuses, an in-place serve config update,
replicas copied in place, a zero-downtime upgrade (pending cluster, switch,
old cluster deleted after the delay); then ``None``, ``Recreate``, the upgrade
deadline, a threshold-triggered replacement, and bad serve configs.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from e2e.paths import manifest
from localcluster.controlplane import ControlPlane
from raykube.builders import labels
from tests.kubehelpers import (
    OperatorProcess,
    apply,
    get_json,
    look_again,
    metric,
    wait_for,
    wait_reconciles,
)

from .rayservice_heads import HeadMapper, mapped_heads

pytestmark = pytest.mark.controlplane

WALKTHROUGH = "ray_v1alpha1_rayservice.yaml"
#: A real Ray head and Serve on this shared 2-core machine take their time.
SERVE_TIMEOUT = 420


def rayservice(name: str, apps: tuple[str, ...] = ("fruit_app",), **spec: Any) -> dict[str, Any]:
    """The walkthrough's RayService, its apps local (no working_dir download)."""
    doc: dict[str, Any] = yaml.safe_load(manifest(WALKTHROUGH).read_text())
    doc["metadata"]["name"] = name
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    config["applications"] = [a for a in config["applications"] if a["name"] in apps]
    for app in config["applications"]:
        app.pop("runtime_env", None)
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)
    doc["spec"].update(spec)
    return doc


def set_price(doc: dict[str, Any], price: int) -> dict[str, Any]:
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    for dep in config["applications"][0]["deployments"]:
        if dep["name"] == "MangoStand":
            dep["user_config"]["price"] = price
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)
    return doc


def status(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get_json(cp, "rayservice", name, "-n", ns).get("status") or {}
    return found


def conds(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st.get("conditions") or []}


def condition(
    cp: ControlPlane, ns: str, name: str, type_: str, want: tuple[str, str]
) -> Callable[[], dict[str, Any] | None]:
    """A ``wait_for`` check: the status once condition ``type_`` is ``want`` (status, reason)."""

    def check() -> dict[str, Any] | None:
        st = status(cp, ns, name)
        return st if conds(st).get(type_) == want else None

    return check


def cond_message(st: dict[str, Any], type_: str) -> str:
    return str(next(c["message"] for c in st["conditions"] if c["type"] == type_))


def clusters(cp: ControlPlane, ns: str, rs: str) -> list[dict[str, Any]]:
    selector = f"{labels.ORIGINATED_FROM_CR}={rs}"
    items: list[dict[str, Any]] = get_json(cp, "rayclusters", "-n", ns, "-l", selector)["items"]
    return [c for c in items if not c["metadata"].get("deletionTimestamp")]


def cluster_names(cp: ControlPlane, ns: str, rs: str) -> list[str]:
    return sorted(c["metadata"]["name"] for c in clusters(cp, ns, rs))


def events(cp: ControlPlane, ns: str) -> list[tuple[str, str, str]]:
    items = json.loads(cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    ordered = sorted(items, key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
    return [(e["type"], e["reason"], e.get("message", "")) for e in ordered]


def reasons(cp: ControlPlane, ns: str) -> list[str]:
    return [r for _, r, _ in events(cp, ns)]


def serving(cp: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    """The status once Ready and every app of the active cluster RUNNING."""
    st = status(cp, ns, name)
    apps = (st.get("activeServiceStatus") or {}).get("applicationStatuses") or {}
    ok = conds(st).get("Ready") == ("True", "NonZeroServeEndpoints")
    return st if ok and apps and all(a["status"] == "RUNNING" for a in apps.values()) else None


def selector(cp: ControlPlane, ns: str, svc: str) -> dict[str, str]:
    found: dict[str, str] = get_json(cp, "service", svc, "-n", ns)["spec"]["selector"]
    return found


def order(mapper: HeadMapper, cluster: str, fruit: str = "MANGO", amount: int = 2) -> str:
    """What the fruit stand answers, through the Serve proxy of ``cluster``'s head."""
    url = mapper.head(cluster).serve_url + "/fruit/"
    try:
        return httpx.post(url, json=[fruit, amount], timeout=10).text
    except httpx.HTTPError as exc:
        return repr(exc)


def last_good(cp: ControlPlane, ns: str, name: str) -> str:
    """The last good serve config, from the Secret the RayService owns."""
    secret = get_json(cp, "secret", labels.last_good_serve_config_name(name), "-n", ns)
    return base64.b64decode(secret["data"][labels.LAST_GOOD_SERVE_CONFIG_KEY]).decode()


def annotation(cp: ControlPlane, ns: str, cluster: str, key: str) -> str | None:
    rc = get_json(cp, "raycluster", cluster, "-n", ns)
    found: str | None = (rc["metadata"].get("annotations") or {}).get(key)
    return found


def _start_and_serve(
    cp: ControlPlane, ns: str, doc: dict[str, Any], mapper: HeadMapper
) -> tuple[str, dict[str, Any]]:
    apply(cp, ns, doc)
    name = doc["metadata"]["name"]
    st = wait_for(lambda: serving(cp, ns, name), timeout=SERVE_TIMEOUT, interval=2)
    assert not mapper.errors, mapper.errors
    return st["activeServiceStatus"]["rayClusterName"], st


def _restart_resubmits_nothing(
    cp: ControlPlane, ns: str, operator: OperatorProcess, name: str, cluster: str
) -> None:
    submitted = annotation(cp, ns, cluster, labels.SERVE_CONFIG_SUBMITTED_AT)
    before = reasons(cp, ns).count("SubmittedServeConfig")
    operator.stop()
    operator.start()
    # Passes of the restarted operator (its counter starts from 0).
    look_again(cp, operator, ns, "rayservice", name, "RayService", passes=3)
    assert annotation(cp, ns, cluster, labels.SERVE_CONFIG_SUBMITTED_AT) == submitted
    assert reasons(cp, ns).count("SubmittedServeConfig") == before


def _metrics_after_first_serve(op: OperatorProcess) -> None:
    """Each RayService metric moved by the first cluster serving (scraped, not just defined)."""
    assert metric(op, "raykube_serve_config_submissions_total", result="accepted") >= 1
    assert metric(op, "raykube_serve_config_submit_duration_seconds_count") >= 1
    assert metric(op, "raykube_rayservices", condition="Ready", status="True") >= 1
    apps = "GET /api/serve/applications/"
    assert metric(op, "raykube_dashboard_request_duration_seconds_count", endpoint=apps) >= 1


def _steady_sends_nothing(cp: ControlPlane, op: OperatorProcess, ns: str, name: str) -> None:
    """A serving RayService, left alone, is still looked at (each pass polls its
    head's dashboard, backing off 5, 10, 20 s) but sends nothing to the API
    server: reads come from the watch caches, and nothing is written."""
    look_again(cp, op, ns, "rayservice", name, "RayService")  # settle: the back-off restarts
    before = metric(op, "raykube_kube_requests_total")
    started = time.monotonic()
    wait_reconciles(op, "RayService", 3, timeout=120)
    sent = metric(op, "raykube_kube_requests_total") - before
    elapsed = time.monotonic() - started
    print(f"steady RayService: {sent:g} API requests in {elapsed:.1f} s over 3 passes")
    assert sent == 0, f"{sent:g} API requests while nothing changed"


def test_walkthrough_in_place_update_and_zero_downtime_upgrade(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rayservice-sample"
    doc = rayservice(name, apps=("fruit_app", "math_app"), rayClusterDeletionDelaySeconds=10)
    with mapped_heads(cp, ns, name) as heads:
        # Steps 3-5: one RayCluster, then the Services once every app runs.
        first, st = _start_and_serve(cp, ns, doc, heads)
        assert re.fullmatch(rf"{name}-[a-z0-9]{{5}}", first)
        assert cluster_names(cp, ns, name) == [first]
        fruit = st["activeServiceStatus"]["applicationStatuses"]["fruit_app"]
        assert fruit["serveDeploymentStatuses"]["MangoStand"]["status"] == "HEALTHY"
        assert conds(st)["UpgradeInProgress"] == ("False", "NoPendingCluster")
        assert conds(st)["ServeConfigApplied"] == ("True", "ApplicationsRunning")
        assert st["numServeEndpoints"] >= 1 and st["serviceStatus"] == "Running"
        assert selector(cp, ns, f"{name}-head-svc") == {
            "ray.io/cluster": first,
            "ray.io/node-type": "head",
        }
        assert selector(cp, ns, f"{name}-serve-svc") == {
            "ray.io/cluster": first,
            "ray.io/serve": "true",
        }
        head_pod = get_json(
            cp, "pods", "-n", ns, "-l", f"ray.io/cluster={first},ray.io/node-type=head"
        )
        assert head_pod["items"][0]["metadata"]["labels"]["ray.io/serve"] == "true"
        # Step 6: a request to the fruit stand.
        assert order(heads, first) == "6"
        _metrics_after_first_serve(operator)
        # Step 7: serve config change: reconfigured in place on the same cluster.
        apply(cp, ns, set_price(doc, 4))
        wait_for(lambda: order(heads, first) == "8", timeout=120, interval=1)
        assert cluster_names(cp, ns, name) == [first]
        assert reasons(cp, ns).count("SubmittedServeConfig") == 2
        _restart_resubmits_nothing(cp, ns, operator, name, first)
        # Step 8.1: replicas change: no new cluster; raykube copies it in place.
        doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = 2
        apply(cp, ns, doc)
        wait_for(
            lambda: (
                get_json(cp, "raycluster", first, "-n", ns)["spec"]["workerGroupSpecs"][0][
                    "replicas"
                ]
                == 2
            ),
            timeout=60,
        )
        assert cluster_names(cp, ns, name) == [first]
        # Step 8.4: rayVersion change: a pending cluster, the switch, the old one deleted.
        doc["spec"]["rayClusterConfig"]["rayVersion"] = "2.100.0"
        apply(cp, ns, doc)
        pending = wait_for(
            lambda: status(cp, ns, name).get("pendingServiceStatus", {}).get("rayClusterName"),
            timeout=60,
        )
        assert conds(status(cp, ns, name))["UpgradeInProgress"] == (
            "True",
            "BothActivePendingClustersExist",
        )
        assert selector(cp, ns, f"{name}-serve-svc")["ray.io/cluster"] == first
        wait_for(
            lambda: status(cp, ns, name)["activeServiceStatus"].get("rayClusterName") == pending,
            timeout=SERVE_TIMEOUT,
            interval=2,
        )
        assert selector(cp, ns, f"{name}-serve-svc")["ray.io/cluster"] == pending
        assert selector(cp, ns, f"{name}-head-svc")["ray.io/cluster"] == pending
        assert annotation(cp, ns, first, labels.DELETE_AFTER)
        new_spec = get_json(cp, "raycluster", pending, "-n", ns)["spec"]
        assert new_spec["workerGroupSpecs"][0]["replicas"] == 2
        assert new_spec["rayVersion"] == "2.100.0"
        wait_for(lambda: cluster_names(cp, ns, name) == [pending], timeout=60)
        assert order(heads, pending) == "8"  # the new cluster got the current config
        st = wait_for(lambda: serving(cp, ns, name), timeout=60)
        assert conds(st)["UpgradeInProgress"] == ("False", "NoPendingCluster")
        assert metric(operator, "raykube_upgrades_total", outcome="completed") >= 1
        assert metric(operator, "raykube_upgrade_duration_seconds_count") >= 1
        _steady_sends_nothing(cp, operator, ns, name)
    got = reasons(cp, ns)
    for reason in ("CreatedRayCluster", "SwitchedTraffic", "ScheduledRayClusterDeletion",
                   "DeletedRayCluster", "UpdatedRayCluster"):  # fmt: skip
        assert reason in got, (reason, got)


def test_none_strategy_keeps_the_cluster_and_says_so(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-none"
    doc = rayservice(name, upgradeStrategy={"type": "None"})
    with mapped_heads(cp, ns, name) as heads:
        first, _ = _start_and_serve(cp, ns, doc, heads)
        doc["spec"]["rayClusterConfig"]["rayVersion"] = "2.100.0"
        apply(cp, ns, doc)
        st = wait_for(
            condition(cp, ns, name, "UpgradeInProgress", ("False", "UpgradeDisabled")),
            timeout=60,
        )
        assert "upgradeStrategy.type is None" in cond_message(st, "UpgradeInProgress")
        look_again(cp, operator, ns, "rayservice", name, "RayService")
        assert cluster_names(cp, ns, name) == [first]
        assert not status(cp, ns, name).get("pendingServiceStatus", {}).get("rayClusterName")
        assert order(heads, first) == "6"


def test_recreate_replaces_the_cluster_with_announced_downtime(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-recreate"
    doc = rayservice(name, upgradeStrategy={"type": "Recreate"})
    with mapped_heads(cp, ns, name) as heads:
        first, _ = _start_and_serve(cp, ns, doc, heads)
        doc["spec"]["rayClusterConfig"]["rayVersion"] = "2.100.0"
        apply(cp, ns, doc)
        seen: list[list[str]] = []

        def replaced() -> str | None:
            names = cluster_names(cp, ns, name)
            seen.append(names)
            return names[0] if names and names != [first] else None

        second = wait_for(replaced, timeout=120, interval=0.5)
        assert all(len(names) <= 1 for names in seen), seen  # never two clusters at once
        deleted = [e for e in events(cp, ns) if e[1] == "DeletedRayCluster"]
        assert deleted and deleted[0][0] == "Warning" and "Recreate" in deleted[0][2]
        st = wait_for(lambda: serving(cp, ns, name), timeout=SERVE_TIMEOUT, interval=2)
        assert st["activeServiceStatus"]["rayClusterName"] == second
        assert selector(cp, ns, f"{name}-serve-svc")["ray.io/cluster"] == second
        assert order(heads, second) == "6"


def services_of(cp: ControlPlane, ns: str, rs: str) -> list[str]:
    names = [f"{rs}-head-svc", f"{rs}-serve-svc"]
    found = get_json(cp, "services", "-n", ns)["items"]
    return sorted(s["metadata"]["name"] for s in found if s["metadata"]["name"] in names)


def test_suspend_deletes_clusters_and_services_and_resume_serves_again(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-suspend"
    doc = rayservice(name)
    with mapped_heads(cp, ns, name) as heads:
        first, _ = _start_and_serve(cp, ns, doc, heads)
        assert services_of(cp, ns, name) == [f"{name}-head-svc", f"{name}-serve-svc"]
        doc["spec"]["suspend"] = True
        apply(cp, ns, doc)

        def suspended() -> dict[str, Any] | None:
            st = status(cp, ns, name)
            done = not cluster_names(cp, ns, name) and not services_of(cp, ns, name)
            return st if done and conds(st).get("Ready") == ("False", "Suspended") else None

        st = wait_for(suspended, timeout=60)
        assert "spec.suspend is true" in cond_message(st, "Ready")
        assert not st.get("activeServiceStatus", {}).get("rayClusterName")
        deleted = [m for _, r, m in events(cp, ns) if r == "DeletedRayCluster"]
        assert any(first in m and "spec.suspend" in m for m in deleted), deleted
        assert "DeletedService" in reasons(cp, ns)
        look_again(cp, operator, ns, "rayservice", name, "RayService")  # nothing comes back
        assert not cluster_names(cp, ns, name) and not services_of(cp, ns, name)

        doc["spec"]["suspend"] = False
        apply(cp, ns, doc)
        second, st = _start_and_serve(cp, ns, doc, heads)
        assert second != first and cluster_names(cp, ns, name) == [second]
        assert selector(cp, ns, f"{name}-serve-svc")["ray.io/cluster"] == second
        assert order(heads, second) == "6"
        generation = get_json(cp, "rayservice", name, "-n", ns)["metadata"]["generation"]
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert ready["observedGeneration"] == generation


def test_upgrade_not_ready_by_its_deadline_stops_keeps_traffic_and_retires_the_cluster(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-deadline"
    doc = rayservice(
        name,
        upgradeStrategy={"type": "NewCluster", "timeoutSeconds": 20},
        rayClusterDeletionDelaySeconds=5,
    )
    with mapped_heads(cp, ns, name) as heads:
        first, _ = _start_and_serve(cp, ns, doc, heads)
        heads.paused.set()  # the new cluster's head never answers
        doc["spec"]["rayClusterConfig"]["rayVersion"] = "2.100.0"
        apply(cp, ns, doc)
        pending = wait_for(
            lambda: (status(cp, ns, name).get("pendingServiceStatus") or {}).get("rayClusterName"),
            timeout=60,
            interval=0.5,
        )
        st = wait_for(
            condition(cp, ns, name, "UpgradeInProgress", ("False", "UpgradeTimedOut")),
            timeout=120,
            interval=1,
        )
        assert f"traffic stays on {first}" in cond_message(st, "UpgradeInProgress")
        assert selector(cp, ns, f"{name}-serve-svc")["ray.io/cluster"] == first
        assert ("Warning", "UpgradeTimedOut") in [(k, r) for k, r, _ in events(cp, ns)]
        # It would hold a second cluster's resources: deleted after the delay,
        # and no other is built for the same spec.
        wait_for(lambda: cluster_names(cp, ns, name) == [first], timeout=90, interval=1)
        deleted = [m for _, r, m in events(cp, ns) if r == "DeletedRayCluster"]
        assert any(pending in m for m in deleted), deleted
        look_again(cp, operator, ns, "rayservice", name, "RayService")
        assert cluster_names(cp, ns, name) == [first]
        st = status(cp, ns, name)
        assert conds(st)["UpgradeInProgress"] == ("False", "UpgradeTimedOut")
        assert "until the spec changes" in cond_message(st, "UpgradeInProgress")
        assert conds(st)["Ready"] == ("True", "NonZeroServeEndpoints")
        assert order(heads, first) == "6"


def test_a_cluster_created_suspended_follows_when_the_queue_admits_it(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    """As Kueue does: rayClusterConfig.suspend true at creation, false on admission."""
    cp, ns, name = control_plane, namespace, "rs-queued"
    doc = rayservice(name)
    doc["spec"]["rayClusterConfig"]["suspend"] = True
    with mapped_heads(cp, ns, name) as heads:
        apply(cp, ns, doc)
        (cluster,) = wait_for(lambda: clusters(cp, ns, name), timeout=30)
        first = cluster["metadata"]["name"]
        assert cluster["spec"]["suspend"] is True
        wait_for(lambda: get_json(cp, "raycluster", first, "-n", ns).get("status", {}).get(
            "state") == "suspended", timeout=30)  # fmt: skip
        pods = get_json(cp, "pods", "-n", ns, "-l", f"ray.io/cluster={first}")["items"]
        assert not pods
        doc["spec"]["rayClusterConfig"]["suspend"] = False
        apply(cp, ns, doc)
        second, _ = _start_and_serve(cp, ns, doc, heads)
        assert second == first  # admitted in place, not rebuilt
        assert get_json(cp, "raycluster", first, "-n", ns)["spec"]["suspend"] is False
        updated = [m for _, r, m in events(cp, ns) if r == "UpdatedRayCluster"]
        assert any("suspend=false" in m for m in updated), updated
        assert order(heads, first) == "6"


def test_first_cluster_not_serving_within_the_initializing_timeout_is_given_up(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-init-timeout"
    doc = rayservice(name, rayClusterDeletionDelaySeconds=5)
    doc["metadata"]["annotations"] = {"ray.io/initializing-timeout": "15s"}
    apply(cp, ns, doc)  # no Ray head behind it: the cluster never serves
    first = wait_for(lambda: cluster_names(cp, ns, name), timeout=30)[0]
    st = wait_for(
        condition(cp, ns, name, "Ready", ("False", "InitializingTimeout")),
        timeout=90,
        interval=1,
    )
    assert "ray.io/initializing-timeout='15s'" in cond_message(st, "Ready")
    assert not st.get("pendingServiceStatus", {}).get("rayClusterName")
    seen = events(cp, ns)
    assert ("Warning", "InitializingTimeout") in [(k, r) for k, r, _ in seen]
    scheduled = [m for _, r, m in seen if r == "ScheduledRayClusterDeletion"]
    assert any(first in m and "initializing-timeout" in m for m in scheduled), scheduled
    wait_for(lambda: not cluster_names(cp, ns, name), timeout=60)
    # Given up: nothing is built again for the same spec.
    look_again(cp, operator, ns, "rayservice", name, "RayService")
    assert not cluster_names(cp, ns, name)
    assert conds(status(cp, ns, name))["Ready"] == ("False", "InitializingTimeout")
    doc["spec"]["rayClusterConfig"]["rayVersion"] = "2.100.0"
    apply(cp, ns, doc)
    second = wait_for(lambda: cluster_names(cp, ns, name), timeout=30)[0]
    assert second != first
    wait_for(lambda: conds(status(cp, ns, name)).get("Ready") == ("False", "Initializing"), 30)


def test_unreachable_dashboard_past_its_threshold_replaces_the_cluster(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-heal"
    doc = rayservice(name, deploymentUnhealthySecondThreshold=5, rayClusterDeletionDelaySeconds=5)
    with mapped_heads(cp, ns, name) as heads:
        first, _ = _start_and_serve(cp, ns, doc, heads)
        heads.detach(first, retire=True)  # its Ray head is gone for good
        st = wait_for(
            condition(cp, ns, name, "ServingClusterHealthy", ("False", "DashboardUnreachable")),
            timeout=120,
            interval=1,
        )
        assert "deploymentUnhealthySecondThreshold (5s)" in cond_message(
            st, "ServingClusterHealthy"
        )
        created = [m for _, r, m in events(cp, ns) if r == "CreatedRayCluster"]
        assert any("unhealthy" in m for m in created), created
        # Traffic moves only once the replacement serves; then the old one goes.
        st = wait_for(
            lambda: (
                (s := serving(cp, ns, name))
                and s["activeServiceStatus"]["rayClusterName"] != first
                and s
            ),
            timeout=SERVE_TIMEOUT,
            interval=2,
        )
        second = st["activeServiceStatus"]["rayClusterName"]
        assert selector(cp, ns, f"{name}-serve-svc")["ray.io/cluster"] == second
        wait_for(lambda: cluster_names(cp, ns, name) == [second], timeout=60)
        assert order(heads, second) == "6"
        replacements = get_json(cp, "rayservice", name, "-n", ns)["metadata"]["annotations"]
        assert json.loads(replacements[labels.REPLACEMENTS])["attempts"] == 1


def test_bad_configs_never_reach_or_break_the_running_applications(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-bad"
    doc = rayservice(name)
    # What is reported and kept without the operator's own rollback
    # (test_rayservice_rollback.py has that).
    doc["metadata"]["annotations"] = {labels.AUTO_ROLLBACK: "false"}
    good_text = doc["spec"]["serveConfigV2"]
    with mapped_heads(cp, ns, name) as heads:
        first, _ = _start_and_serve(cp, ns, doc, heads)
        assert last_good(cp, ns, name) == good_text
        submitted = annotation(cp, ns, first, labels.SERVE_CONFIG_HASH)
        # A config that breaks Serve's schema is refused before it is sent.
        doc["spec"]["serveConfigV2"] = good_text.replace(
            "route_prefix: /fruit", "route_prefix: fruit"
        )
        apply(cp, ns, doc)
        st = wait_for(
            condition(cp, ns, name, "ServeConfigApplied", ("False", "InvalidServeConfig")),
            timeout=60,
        )
        assert "applications[0].route_prefix" in cond_message(st, "ServeConfigApplied")
        assert "InvalidServeConfig" in reasons(cp, ns)
        assert annotation(cp, ns, first, labels.SERVE_CONFIG_HASH) == submitted
        assert order(heads, first) == "6"
        # A valid config that fails to deploy: reported, nothing deleted, old version serves.
        doc["spec"]["serveConfigV2"] = good_text.replace(
            "fruit.deployment_graph", "import_fails:app"
        )
        apply(cp, ns, doc)
        st = wait_for(
            condition(cp, ns, name, "ServeConfigApplied", ("False", "ServeDeployFailed")),
            timeout=SERVE_TIMEOUT,
            interval=2,
        )
        assert "ModuleNotFoundError" in cond_message(st, "ServeConfigApplied")
        assert cluster_names(cp, ns, name) == [first]
        assert order(heads, first) == "6"
        assert last_good(cp, ns, name) == good_text
        # Back to the last good config.
        doc["spec"]["serveConfigV2"] = last_good(cp, ns, name)
        apply(cp, ns, doc)
        wait_for(lambda: serving(cp, ns, name), timeout=SERVE_TIMEOUT, interval=2)
        # A head that lost its applications (restarted without GCS FT) gets them back.
        # (Not DELETE, which shuts Serve down and would restart it on port 8000.)
        empty: dict[str, list[Any]] = {"applications": []}
        httpx.put(heads.head(first).dashboard_url + "/api/serve/applications/", json=empty,
                  timeout=60)  # fmt: skip
        wait_for(
            lambda: any("HeadLostApplications" in m for _, _, m in events(cp, ns)),
            timeout=120,
            interval=1,
        )
        wait_for(lambda: order(heads, first) == "6", timeout=SERVE_TIMEOUT, interval=2)


def test_unhealthy_application_past_its_threshold_replaces_the_cluster(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    cp, ns, name = control_plane, namespace, "rs-sick"
    marker = tmp_path / "unhealthy"
    doc = rayservice(name, serviceUnhealthySecondThreshold=10, rayClusterDeletionDelaySeconds=5)
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    config["applications"].append(
        {
            "name": "flaky",
            "import_path": "broken_apps:flaky",
            "route_prefix": "/flaky",
            "deployments": [{"name": "Flaky", "user_config": {"marker": str(marker)}}],
        }
    )
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)
    with mapped_heads(cp, ns, name) as heads:
        first, _ = _start_and_serve(cp, ns, doc, heads)
        marker.touch()  # Flaky's health check fails from now on, on every replica
        st = wait_for(
            condition(
                cp, ns, name, "ServingClusterHealthy", ("False", "ServeApplicationUnhealthy")
            ),
            timeout=180,
            interval=1,
        )
        assert "serviceUnhealthySecondThreshold (10s)" in cond_message(st, "ServingClusterHealthy")
        apps = st["activeServiceStatus"]["applicationStatuses"]
        assert apps["flaky"]["status"] == "UNHEALTHY" and apps["fruit_app"]["status"] == "RUNNING"
        wait_for(lambda: status(cp, ns, name)["pendingServiceStatus"].get("rayClusterName"), 60)
        marker.unlink()  # whatever broke is fixed: the replacement can serve
        st = wait_for(
            lambda: (
                (s := serving(cp, ns, name))
                and s["activeServiceStatus"]["rayClusterName"] != first
                and s
            ),
            timeout=SERVE_TIMEOUT,
            interval=2,
        )
        second = st["activeServiceStatus"]["rayClusterName"]
        wait_for(lambda: cluster_names(cp, ns, name) == [second], timeout=60)
        assert order(heads, second) == "6"
    created = [m for _, r, m in events(cp, ns) if r == "CreatedRayCluster"]
    assert any("ServeApplicationUnhealthy" in m or "application" in m for m in created), created
