"""Ray 2.60 with token authentication (``RAY_AUTH_MODE=token``, as the pods of a
token-mode RayCluster run it): its dashboard refuses a request without the
token, and the operator's dashboard client, given the token, is let through
(``X-Ray-Authorization: Bearer``, the header Ray reads behind proxies)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from raykube.adapters.dashboard import APPS_PATH, DashboardClient, DashboardError
from raykube.builders import auth
from raykube_serve.localhead import LocalRayHead
from tests.rayheads import start_head

from .conftest import head_of

pytestmark = pytest.mark.ray

#: A token made the way the operator makes one for its generated Secret.
TOKEN = auth.new_token()


@pytest.fixture(scope="module")
def token_head() -> Iterator[LocalRayHead]:
    head = start_head(num_cpus=1, env={auth.AUTH_MODE_ENV: "token", auth.AUTH_TOKEN_ENV: TOKEN})
    try:
        yield head
    finally:
        head.stop()


def test_the_dashboard_refuses_requests_without_the_right_token(token_head: LocalRayHead) -> None:
    url = f"{token_head.dashboard_url}{APPS_PATH}"
    assert httpx.get(url, timeout=30).status_code == 401
    wrong = {"X-Ray-Authorization": f"Bearer {auth.new_token()}"}
    assert httpx.get(url, headers=wrong, timeout=30).status_code == 403


async def test_the_operators_client_without_the_token_is_refused(
    token_head: LocalRayHead, client: DashboardClient
) -> None:
    with pytest.raises(DashboardError) as refused:
        await client.get_applications(head_of(token_head))
    assert refused.value.status == 401


async def test_the_operators_client_with_the_token_reads_and_writes_serve(
    token_head: LocalRayHead, client: DashboardClient
) -> None:
    head = head_of(token_head, token=TOKEN)
    await client.put_applications(head, {"applications": []})
    details = await client.get_applications(head)
    assert details.get("applications") == {}
