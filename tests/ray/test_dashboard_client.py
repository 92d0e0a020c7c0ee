"""The operator's dashboard client against a real Ray head (Ray 2.60, loopback).

Also the measurements behind docs/rayservice.md: what Ray keeps serving when
a config fails to deploy (an app that fails to import, a constructor that
raises), and what a refused config looks like.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import httpx
import pytest

from localcluster import processes
from raykube.adapters.dashboard import DashboardClient, DashboardError, Head, Retry
from raykube.decisions.rayservice_view import ServeSnapshot, snapshot
from raykube_serve.localhead import LocalRayHead, free_port
from tests.rayheads import on_head, start_head, walkthrough_apps

from .conftest import head_of

pytestmark = pytest.mark.ray

DEPLOY_TIMEOUT = 300
#: A fresh head on this busy 2-core machine can take long to answer its first call.
SLOW = httpx.Timeout(60.0, connect=5.0)


def wait_until_up(url: str, within: float = 120) -> None:
    processes.wait_until(
        f"{url} to answer 200",
        lambda: httpx.get(url, timeout=10).status_code == 200,
        timeout=within,
        interval=1,
        retry_on=(httpx.HTTPError,),
    )


async def wait_for_apps(
    client: DashboardClient, head: Head, want: dict[str, str], within: float = DEPLOY_TIMEOUT
) -> ServeSnapshot:
    """Poll GET until each named app has the wanted status; the last snapshot."""
    loop = asyncio.get_running_loop()

    async def look() -> ServeSnapshot | None:
        details = await client.get_applications(head)
        snap = snapshot(details, await client.proxy_healthy(head))
        ok = all(n in snap.apps and snap.apps[n].status == s for n, s in want.items())
        return snap if ok else None

    # The one (blocking) poller runs in a thread; each look runs on this loop,
    # where the client's connections live.
    return await asyncio.to_thread(
        processes.wait_until,
        f"apps {want}",
        lambda: asyncio.run_coroutine_threadsafe(look(), loop).result(),
        timeout=within,
        interval=1,
        retry_on=(DashboardError,),
    )


def order(head: LocalRayHead, route: str, body: list[Any]) -> tuple[int, str]:
    try:
        resp = httpx.post(f"{head.serve_url}{route}", json=body, timeout=10)
    except httpx.HTTPError as exc:
        return 0, repr(exc)
    return resp.status_code, resp.text


def fruit_and_math(head: LocalRayHead, price: int = 3) -> dict[str, Any]:
    apps = walkthrough_apps("fruit_app", "math_app")
    for dep in apps[0]["deployments"]:
        if dep["name"] == "MangoStand":
            dep["user_config"]["price"] = price
    return on_head(apps, head)


async def test_fresh_head_has_no_applications_and_no_proxy(
    client: DashboardClient, ray_head: LocalRayHead
) -> None:
    head = head_of(ray_head)
    details = await client.get_applications(head)
    assert snapshot(details, False).apps == {}
    assert await client.proxy_healthy(head) is False  # the proxy exists only once Serve runs


async def test_walkthrough_apps_deploy_and_report_every_status(
    client: DashboardClient, ray_head: LocalRayHead
) -> None:
    head = head_of(ray_head)
    await client.put_applications(head, fruit_and_math(ray_head))
    snap = await wait_for_apps(client, head, {"fruit_app": "RUNNING", "math_app": "RUNNING"})
    assert snap.proxy_healthy
    fruit = snap.apps["fruit_app"].deployments
    assert {"MangoStand", "OrangeStand", "PearStand", "FruitMarket"} <= set(fruit)
    assert {d.status for d in fruit.values()} == {"HEALTHY"}
    assert order(ray_head, "/fruit/", ["MANGO", 2]) == (200, "6")
    assert order(ray_head, "/calc/", ["MUL", 3])[0] == 200


async def _replica_ids(client: DashboardClient, head: Head, app: str, dep: str) -> set[str]:
    details = await client.get_applications(head)
    replicas = details["applications"][app]["deployments"][dep]["replicas"]
    return {r["replica_id"] for r in replicas}


async def test_user_config_change_is_applied_in_place_without_restart(
    client: DashboardClient, ray_head: LocalRayHead
) -> None:
    head = head_of(ray_head)
    await client.put_applications(head, fruit_and_math(ray_head))
    await wait_for_apps(client, head, {"fruit_app": "RUNNING"})
    before = await _replica_ids(client, head, "fruit_app", "MangoStand")
    await client.put_applications(head, fruit_and_math(ray_head, price=4))
    await asyncio.to_thread(
        processes.wait_until,
        "price 4 to be applied",
        lambda: order(ray_head, "/fruit/", ["MANGO", 2]) == (200, "8"),
        timeout=60,
        interval=0.5,
    )
    assert await _replica_ids(client, head, "fruit_app", "MangoStand") == before


async def test_app_that_fails_to_import_is_deploy_failed_and_its_old_version_keeps_serving(
    client: DashboardClient, ray_head: LocalRayHead
) -> None:
    head = head_of(ray_head)
    good = fruit_and_math(ray_head)
    await client.put_applications(head, good)
    await wait_for_apps(client, head, {"fruit_app": "RUNNING", "math_app": "RUNNING"})
    bad = copy.deepcopy(good)
    bad["applications"][0]["import_path"] = "import_fails:app"
    await client.put_applications(head, bad)
    snap = await wait_for_apps(client, head, {"fruit_app": "DEPLOY_FAILED"})
    fruit = snap.apps["fruit_app"]
    assert "ModuleNotFoundError" in fruit.message and fruit.deployments == {}
    assert snap.apps["math_app"].status == "RUNNING"
    # Measured: the replicas of the last good version are left running.
    assert order(ray_head, "/fruit/", ["MANGO", 2]) == (200, "6")
    # Submitting the last good config again recovers the app.
    await client.put_applications(head, good)
    await wait_for_apps(client, head, {"fruit_app": "RUNNING"})


async def test_constructor_that_raises_is_deploy_failed_after_retries(
    client: DashboardClient, ray_head: LocalRayHead
) -> None:
    head = head_of(ray_head)
    good = fruit_and_math(ray_head)
    exploding = {"name": "exploding", "import_path": "broken_apps:ctor_fails",
                 "route_prefix": "/boom"}  # fmt: skip
    with_new_app = on_head([*good["applications"], exploding], ray_head)
    await client.put_applications(head, with_new_app)
    snap = await wait_for_apps(client, head, {"exploding": "DEPLOY_FAILED"})
    assert snap.apps["exploding"].deployments["Exploding"].status == "DEPLOY_FAILED"
    # The other applications are not touched.
    assert snap.apps["fruit_app"].status == "RUNNING"
    assert order(ray_head, "/fruit/", ["MANGO", 2])[0] == 200


async def test_update_whose_constructor_raises_takes_the_app_down(
    client: DashboardClient, ray_head: LocalRayHead
) -> None:
    """Measured: unlike an import failure, a new version whose ingress cannot be
    constructed replaces the running one, and the route answers 503."""
    head = head_of(ray_head)
    good = fruit_and_math(ray_head)
    await client.put_applications(head, good)
    await wait_for_apps(client, head, {"fruit_app": "RUNNING"})
    bad = copy.deepcopy(good)
    bad["applications"][0].update(import_path="broken_apps:fruit_ctor_fails",
                                  deployments=[{"name": "FruitMarket"}])  # fmt: skip
    await client.put_applications(head, bad)
    snap = await wait_for_apps(client, head, {"fruit_app": "DEPLOY_FAILED"})
    assert snap.apps["fruit_app"].deployments["FruitMarket"].status == "DEPLOY_FAILED"
    status, text = order(ray_head, "/fruit/", ["MANGO", 2])
    assert status == 503 and "failed to deploy" in text
    await client.put_applications(head, good)
    await wait_for_apps(client, head, {"fruit_app": "RUNNING"})
    assert order(ray_head, "/fruit/", ["MANGO", 2]) == (200, "6")


async def test_ray_refuses_a_bare_working_dir_with_400(
    client: DashboardClient, ray_head: LocalRayHead
) -> None:
    head = head_of(ray_head)
    bad = fruit_and_math(ray_head)
    bad["applications"][0]["runtime_env"] = {"working_dir": "./not-a-uri"}
    with pytest.raises(DashboardError) as info:
        await client.put_applications(head, bad)
    assert info.value.status == 400 and info.value.rejected
    details = await client.get_applications(head)
    assert details["applications"]["fruit_app"]["status"] == "RUNNING"  # untouched


async def test_agent_port_answers_404_without_retries(ray_head: LocalRayHead) -> None:
    calls = 0

    async def count(request: httpx.Request) -> None:
        nonlocal calls
        calls += 1

    agent_url = f"http://127.0.0.1:{ray_head.ports.agent_http}"
    wait_until_up(agent_url + "/api/healthz")
    client = DashboardClient(retry=Retry(attempts=3, first_delay=0.1), timeout=SLOW)
    client._http.event_hooks["request"] = [count]  # count what goes on the wire
    try:
        agent = Head(
            "ns", "rc-head-svc", dashboard_url=f"http://127.0.0.1:{ray_head.ports.agent_http}"
        )
        with pytest.raises(DashboardError) as info:
            await client.get_applications(agent)
    finally:
        await client.close()
    assert info.value.status == 404 and not info.value.rejected
    assert calls == 1


async def test_unreachable_head_fails_after_bounded_retries() -> None:
    client = DashboardClient(retry=Retry(attempts=3, first_delay=0.2))
    nowhere = Head("ns", "rc-head-svc", dashboard_url=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    try:
        with pytest.raises(DashboardError) as info:
            await client.get_applications(nowhere)
    finally:
        await client.close()
    elapsed = time.monotonic() - started
    assert info.value.status == 0 and "ConnectError" in info.value.message
    assert 0.6 <= elapsed < 5  # two back-offs (0.2 s, 0.4 s), then it gives up


async def test_service_dns_address_is_the_head_service() -> None:
    client = DashboardClient("service-dns", cluster_domain="example.local")
    head = Head("prod", "rs-abcde-head-svc", dashboard_port=8265, serve_port=9000)
    try:
        assert client.base_url(head, "dashboard") == (
            "http://rs-abcde-head-svc.prod.svc.example.local:8265"
        )
        assert (
            client.base_url(head, "serve") == "http://rs-abcde-head-svc.prod.svc.example.local:9000"
        )
    finally:
        await client.close()


class ForwardingProxy:
    """Stands in for the API server's service proxy: records, then forwards."""

    def __init__(self, target: LocalRayHead) -> None:
        self.target = target
        self.calls: list[tuple[str, str, str, int, str, dict[str, str]]] = []

    async def proxy(
        self,
        method: str,
        namespace: str,
        service: str,
        port: int,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        request_timeout: float = 10,
        limit: int = 2**20,
    ) -> tuple[int, bytes]:
        self.calls.append((method, namespace, service, port, path, dict(headers or {})))
        base = self.target.dashboard_url if port == 8265 else self.target.serve_url
        async with httpx.AsyncClient(timeout=60) as http:
            try:
                resp = await http.request(method, base + path, json=body, headers=headers)
            except httpx.ConnectError:
                return 503, b"no endpoints"  # what the API server answers then
        return resp.status_code, resp.content[: limit + 1]


async def test_apiserver_proxy_access_goes_through_the_service_proxy(
    ray_head: LocalRayHead,
) -> None:
    proxy = ForwardingProxy(ray_head)
    client = DashboardClient("apiserver-proxy", proxy=proxy, timeout=SLOW)
    head = Head("prod", "rs-abcde-head-svc", token="t0ken")
    try:
        details = await client.get_applications(head)
        healthy = await client.proxy_healthy(head)  # True only once Serve runs there
    finally:
        await client.close()
    assert "applications" in details and isinstance(healthy, bool)
    method, ns, svc, port, path, headers = proxy.calls[0]
    assert (method, ns, svc, port) == ("GET", "prod", "rs-abcde-head-svc", 8265)
    assert path == "/api/serve/applications/?api_type=declarative"
    assert headers == {"X-Ray-Authorization": "Bearer t0ken"}
    assert proxy.calls[1][3:5] == (8000, "/-/healthz")


async def test_token_auth_header() -> None:
    token = "raykube-test-token-0123456789"
    head = start_head(num_cpus=1, env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    client = DashboardClient(retry=Retry(attempts=1), timeout=SLOW)
    try:
        with pytest.raises(DashboardError) as missing:
            await client.get_applications(head_of(head))
        with pytest.raises(DashboardError) as wrong:
            await client.get_applications(head_of(head, token="wrong"))
        details = await client.get_applications(head_of(head, token=token))
    finally:
        await client.close()
        head.stop()
    assert (missing.value.status, wrong.value.status) == (401, 403)
    assert details.get("applications") == {}
