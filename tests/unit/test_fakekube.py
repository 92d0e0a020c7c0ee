"""The in-memory API server and Ray dashboards behave like the real ones where
the handlers depend on it."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from raykube.adapters.dashboard import DashboardClient, DashboardError, Head
from raykube.adapters.kube import PODS, RAYCLUSTERS, ApiError, Kube
from tests.unit.fakedashboard import FakeServe
from tests.unit.fakekube import FakeIndex, FakeKube, json_patch

NS = "ns"


def cluster(name: str = "rc", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "x"}},
        "spec": {"rayVersion": "2.60.0", **spec},
        "status": {"state": "ignored on create"},
    }


def pod(name: str, owner: dict[str, Any] | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": []}}


async def conflict(call: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        await call
    return info.value


def test_same_methods_and_signatures_as_kube() -> None:
    def methods(cls: type) -> dict[str, str]:
        return {
            name: str(inspect.signature(fn))
            for name, fn in vars(cls).items()
            if inspect.iscoroutinefunction(fn) and not name.startswith("_")
        }

    real, fake = methods(Kube), methods(FakeKube)
    assert {name: fake.get(name) for name in real} == real


async def test_create_sets_the_system_fields_and_drops_status(kube: FakeKube) -> None:
    made = await kube.create(RAYCLUSTERS, NS, cluster())
    meta = made["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert meta["resourceVersion"] == str(kube.revision)
    assert "status" not in made
    assert await kube.get(RAYCLUSTERS, NS, "rc") == made
    assert await kube.get(RAYCLUSTERS, NS, "nope") is None
    err = await conflict(kube.create(RAYCLUSTERS, NS, cluster()))
    assert err.status == 409 and err.reason == "AlreadyExists"
    assert kube.requests == {"create": 2, "get": 2}


async def test_every_write_bumps_the_global_resource_version(kube: FakeKube) -> None:
    a = await kube.create(RAYCLUSTERS, NS, cluster("a"))
    b = await kube.create(RAYCLUSTERS, NS, cluster("b"))
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    patched = await kube.patch(RAYCLUSTERS, NS, "a", {"metadata": {"labels": {"x": "1"}}})
    assert int(patched["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])


async def test_a_stale_resource_version_is_a_conflict(kube: FakeKube) -> None:
    first = await kube.create(RAYCLUSTERS, NS, cluster())
    stale = first["metadata"]["resourceVersion"]
    await kube.patch(RAYCLUSTERS, NS, "rc", {"spec": {"rayVersion": "2.61.0"}})
    body = {**first, "spec": {"rayVersion": "2.62.0"}}
    assert (await conflict(kube.update(RAYCLUSTERS, NS, "rc", body))).conflict
    guarded = {"metadata": {"resourceVersion": stale}, "status": {"state": "ready"}}
    err = await conflict(kube.patch(RAYCLUSTERS, NS, "rc", guarded, subresource="status"))
    assert err.conflict and "modified" in err.message
    assert (await conflict(kube.apply({**cluster(), "metadata": first["metadata"]}))).conflict
    # With the current version (or none) the write goes through.
    now = kube.stored(RAYCLUSTERS, NS, "rc")
    assert now is not None
    guarded["metadata"]["resourceVersion"] = now["metadata"]["resourceVersion"]
    done = await kube.patch(RAYCLUSTERS, NS, "rc", guarded, subresource="status")
    assert done["status"] == {"state": "ready"}
    await kube.update(RAYCLUSTERS, NS, "rc", {**cluster(), "spec": {"rayVersion": "3"}})


async def test_generation_follows_spec_only(kube: FakeKube) -> None:
    await kube.create(RAYCLUSTERS, NS, cluster())
    meta_only = await kube.patch(RAYCLUSTERS, NS, "rc", {"metadata": {"annotations": {"a": "b"}}})
    assert meta_only["metadata"]["generation"] == 1
    status = await kube.patch(
        RAYCLUSTERS, NS, "rc", {"status": {"state": "ready"}}, subresource="status"
    )
    assert status["metadata"]["generation"] == 1
    spec = await kube.patch(RAYCLUSTERS, NS, "rc", {"spec": {"suspend": True}})
    assert spec["metadata"]["generation"] == 2
    applied = await kube.apply(cluster(suspend=False))
    assert applied["metadata"]["generation"] == 3


async def test_status_only_through_the_status_subresource(kube: FakeKube) -> None:
    await kube.create(RAYCLUSTERS, NS, cluster())
    await kube.patch(RAYCLUSTERS, NS, "rc", {"status": {"state": "ready"}}, subresource="status")
    main = await kube.patch(RAYCLUSTERS, NS, "rc", {"status": {"state": "x"}, "spec": {"a": 1}})
    assert main["status"] == {"state": "ready"} and main["spec"]["a"] == 1
    sub = await kube.patch(
        RAYCLUSTERS, NS, "rc", {"status": {"state": "y"}, "spec": {"a": 2}}, subresource="status"
    )
    assert sub["status"] == {"state": "y"} and sub["spec"]["a"] == 1
    applied = await kube.apply(cluster())
    assert applied["status"] == {"state": "y"}


async def test_a_write_that_changes_nothing_keeps_the_version(kube: FakeKube) -> None:
    made = await kube.apply(cluster())
    again = await kube.apply(cluster())
    assert again["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    assert kube.requests["apply"] == 2


async def test_apply_merges_what_it_sets(kube: FakeKube) -> None:
    await kube.apply(cluster(workerGroupSpecs=[{"groupName": "a"}], extra={"keep": 1}))
    merged = await kube.apply(cluster(workerGroupSpecs=[{"groupName": "b"}], extra={"add": 2}))
    assert merged["spec"]["workerGroupSpecs"] == [{"groupName": "b"}]
    assert merged["spec"]["extra"] == {"keep": 1, "add": 2}
    dry = await kube.apply(cluster(rayVersion="9"), dry_run=True)
    assert dry["spec"]["rayVersion"] == "9"
    stored = kube.stored(RAYCLUSTERS, NS, "rc")
    assert stored is not None and stored["spec"]["rayVersion"] == "2.60.0"
    assert kube.writes() == 2 and kube.requests["apply-dry-run"] == 1


async def test_merge_patch_null_deletes(kube: FakeKube) -> None:
    await kube.create(RAYCLUSTERS, NS, cluster())
    out = await kube.patch(RAYCLUSTERS, NS, "rc", {"metadata": {"labels": {"app": None}}})
    assert out["metadata"]["labels"] == {}
    err = await conflict(kube.patch(RAYCLUSTERS, NS, "gone", {"spec": {}}))
    assert err.not_found


async def test_json_patch_and_a_failed_test_changes_nothing(kube: FakeKube) -> None:
    await kube.create(RAYCLUSTERS, NS, cluster(workerGroupSpecs=[{"replicas": 1}]))
    ops = [
        {"op": "test", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 3},
        {"op": "add", "path": "/spec/workerGroupSpecs/-", "value": {"replicas": 0}},
        {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}},
        {"op": "remove", "path": "/metadata/labels/app"},
    ]
    out = await kube.patch(RAYCLUSTERS, NS, "rc", ops, patch_type="json")
    assert out["spec"]["workerGroupSpecs"] == [{"replicas": 3}, {"replicas": 0}]
    assert out["metadata"]["annotations"] == {"a/b": "c"} and out["metadata"]["labels"] == {}
    before = kube.stored(RAYCLUSTERS, NS, "rc")
    stale = [
        {"op": "replace", "path": "/spec/suspend", "value": True},
        {"op": "test", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1},
    ]
    err = await conflict(kube.patch(RAYCLUSTERS, NS, "rc", stale, patch_type="json"))
    assert err.status == 422
    assert kube.stored(RAYCLUSTERS, NS, "rc") == before


def test_json_patch_pointers() -> None:
    doc = {"a": {"b~c/d": [1, 2]}}
    out = json_patch(doc, [{"op": "add", "path": "/a/b~0c~1d/1", "value": 9}])
    assert out == {"a": {"b~c/d": [1, 9, 2]}} and doc == {"a": {"b~c/d": [1, 2]}}
    for bad in (
        {"op": "remove", "path": "/a/missing"},
        {"op": "replace", "path": "/a/b~0c~1d/5", "value": 0},
        {"op": "test", "path": "/nope", "value": None},
        {"op": "move", "from": "/a", "path": "/b"},
    ):
        with pytest.raises(ApiError) as info:
            json_patch(doc, [bad])
        assert info.value.status == 422


async def test_delete_with_uid_precondition_and_finalizers(kube: FakeKube) -> None:
    made = await kube.create(RAYCLUSTERS, NS, cluster())
    assert not await kube.delete(RAYCLUSTERS, NS, "rc", uid="someone-else")
    assert kube.stored(RAYCLUSTERS, NS, "rc") is not None
    await kube.patch(RAYCLUSTERS, NS, "rc", {"metadata": {"finalizers": ["keep"]}})
    assert await kube.delete(RAYCLUSTERS, NS, "rc", uid=made["metadata"]["uid"])
    held = kube.stored(RAYCLUSTERS, NS, "rc")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    await kube.patch(RAYCLUSTERS, NS, "rc", {"metadata": {"finalizers": None}})
    assert kube.stored(RAYCLUSTERS, NS, "rc") is None
    assert not await kube.delete(RAYCLUSTERS, NS, "rc")


async def test_delete_cascades_to_dependents(kube: FakeKube) -> None:
    rc = await kube.create(RAYCLUSTERS, NS, cluster())
    other = await kube.create(RAYCLUSTERS, NS, cluster("other"))
    head = await kube.create(PODS, NS, pod("head", rc))
    await kube.create(PODS, NS, pod("worker", rc))
    await kube.create(PODS, NS, pod("grandchild", head))
    shared = pod("shared", rc)
    shared["metadata"]["ownerReferences"].append(
        {
            **shared["metadata"]["ownerReferences"][0],
            "name": "other",
            "uid": other["metadata"]["uid"],
        }
    )
    await kube.create(PODS, NS, shared)
    await kube.create(PODS, NS, pod("unrelated"))
    assert await kube.delete(RAYCLUSTERS, NS, "rc")
    assert [p["metadata"]["name"] for p in kube.all(PODS, NS)] == ["shared", "unrelated"]


async def test_list_with_selectors_and_request_counts(kube: FakeKube) -> None:
    await kube.create(PODS, NS, pod("a", role="head", cluster="rc"))
    await kube.create(PODS, NS, pod("b", role="worker", cluster="rc"))
    await kube.create(PODS, "elsewhere", pod("c", role="worker"))

    async def names(ns: str | None, selector: str) -> list[str]:
        return sorted(p["metadata"]["name"] for p in await kube.list(PODS, ns, selector))

    assert await names(NS, "") == ["a", "b"]
    assert await names(None, "role=worker") == ["b", "c"]
    assert await names(None, "role!=worker") == ["a"]
    assert await names(None, "cluster,role==head") == ["a"]
    assert await names(None, "!cluster") == ["c"]
    kube.reset_counts()
    await kube.get(PODS, NS, "a")
    assert kube.requests == {"get": 1} and kube.writes() == 0
    assert [(r.verb, r.name) for r in kube.log] == [("get", "a")]


async def test_events_are_recorded(kube: FakeKube) -> None:
    rc = await kube.create(RAYCLUSTERS, NS, cluster())
    await kube.event(rc, "Warning", "Bad", "x" * 2000, "raykube")
    (event,) = kube.events
    assert (event.kind, event.name, event.type, event.reason) == (
        "RayCluster",
        "rc",
        "Warning",
        "Bad",
    )
    assert len(event.message) == 1024


async def test_test_helpers_change_the_world_without_counting(kube: FakeKube) -> None:
    kube.put({**pod("p"), "status": {"phase": "Running"}})
    ready = kube.set_pod_ready(NS, "p")
    assert ready["status"]["conditions"][0]["status"] == "True"
    assert kube.requests == {}


async def test_index_views_are_live_and_can_lag(kube: FakeKube) -> None:
    def by_cluster(namespace: str, labels: dict[str, str], name: str, **_: Any) -> Any:
        return {(namespace, labels["cluster"]): name}

    index = FakeIndex(kube, PODS, by_cluster, {"cluster": None})
    assert ("ns", "rc") not in index and len(index) == 0
    await kube.create(PODS, NS, pod("a", cluster="rc"))
    await kube.create(PODS, NS, pod("b", cluster="rc"))
    await kube.create(PODS, NS, pod("loose"))
    assert ("ns", "rc") in index and list(index[("ns", "rc")]) == ["a", "b"]
    index.freeze()
    await kube.delete(PODS, NS, "a")
    assert list(index[("ns", "rc")]) == ["a", "b"]
    index.thaw()
    assert list(index[("ns", "rc")]) == ["b"]
    assert dict(index) == {("ns", "rc"): ["b"]}


async def test_dashboard_fake_serves_put_get_and_health(
    serve: FakeServe, dashboard: DashboardClient
) -> None:
    head = Head(namespace=NS, service="rc-head-svc")
    state = serve.head(NS, "rc-head-svc")
    assert (await dashboard.get_applications(head)) == {"applications": {}}
    config = {
        "applications": [
            {"name": "fruit", "route_prefix": "/fruit", "deployments": [{"name": "Mango"}]}
        ]
    }
    await dashboard.put_applications(head, config)
    apps = (await dashboard.get_applications(head))["applications"]
    assert apps["fruit"]["status"] == "RUNNING"
    assert apps["fruit"]["deployments"]["Mango"]["status"] == "HEALTHY"
    assert state.submitted == [config]
    assert await dashboard.proxy_healthy(head)
    state.proxy_healthy = False
    assert not await dashboard.proxy_healthy(head)
    state.set_status("DEPLOY_FAILED", "boom")
    apps = (await dashboard.get_applications(head))["applications"]
    assert apps["fruit"]["message"] == "boom"
    state.reachable = False
    with pytest.raises(DashboardError) as info:
        await dashboard.get_applications(head)
    assert info.value.status == 0
    assert state.requests["GET /api/serve/applications/"] == 6  # 3 answered + 3 refused tries
    with pytest.raises(DashboardError) as info:
        await dashboard.put_applications(Head(NS, "other-head-svc"), {"no": "apps"})
    assert info.value.rejected
