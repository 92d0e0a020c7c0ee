"""The canary app (seed 000, section 5) on a real Ray 2.60 head: exact weighted
splits, pinned versions, and weights changed in place by ``user_config``."""

from __future__ import annotations

import copy
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import ray  # noqa: F401  (a missing Ray must fail this tier, not skip it)

from raykube_serve import dashboard
from raykube_serve.canary import PIN_HEADER, RoundRobin, parse_weights
from raykube_serve.localhead import LocalRayHead

from .helpers import Deploy, find_deployment

pytestmark = pytest.mark.ray


def served_by(serve_url: str, n: int, headers: dict[str, str] | None = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for i in range(n):
            resp = client.post(f"{serve_url}/canary/", json={"text": f"good {i}"}, headers=headers)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["model_version"] == {"v1": "1.0", "v2": "2.0"}[body["served_by"]]
            counts[body["served_by"]] += 1
    return counts


def splitter_replicas(head: LocalRayHead) -> list[tuple[Any, ...]]:
    details = dashboard.get_applications(head.dashboard_url)
    replicas = dashboard.replicas(details, "canary", "TrafficSplitter")
    return sorted((r["replica_id"], r["pid"], r["start_time_s"]) for r in replicas)


def test_round_robin_is_exact_and_interleaved() -> None:
    rr = RoundRobin({"v1": 3, "v2": 1})
    picks = [rr.pick() for _ in range(8)]
    assert Counter(picks) == {"v1": 6, "v2": 2}
    assert picks[:4].count("v2") == 1  # spread out, not bunched at the end


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        ({"v3": 1}, "unknown version"),
        ({"v1": -1}, "an integer"),
        ({"v1": 0.5}, "an integer"),
        ({"v1": 0, "v2": 0}, "at least one"),
        ("90/10", "a mapping"),
    ],
)
def test_bad_weights_are_named(weights: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_weights({"weights": weights})


def test_the_split_follows_the_weights_exactly(serve_url: str) -> None:
    assert served_by(serve_url, 100) == {"v1": 90, "v2": 10}


def test_a_pinned_request_goes_to_that_version(serve_url: str) -> None:
    assert served_by(serve_url, 5, {PIN_HEADER: "v2"}) == {"v2": 5}
    resp = httpx.post(f"{serve_url}/canary/", json={"text": "x"}, headers={PIN_HEADER: "v9"})
    assert resp.status_code == 400


def test_weights_change_in_place_without_a_restart(
    ray_head: LocalRayHead, base_config: dict[str, Any], deploy: Deploy, serve_url: str
) -> None:
    before = splitter_replicas(ray_head)
    changed = copy.deepcopy(base_config)
    find_deployment(changed, "canary", "TrafficSplitter")["user_config"]["weights"] = {
        "v1": 50,
        "v2": 50,
    }
    deploy(changed)
    # The PUT returns before reconfigure() has run on the replica.
    deadline = time.monotonic() + 30
    while served_by(serve_url, 2) != {"v1": 1, "v2": 1} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served_by(serve_url, 100) == {"v1": 50, "v2": 50}
    assert splitter_replicas(ray_head) == before  # reconfigure(), not a new replica
    deploy(base_config)
