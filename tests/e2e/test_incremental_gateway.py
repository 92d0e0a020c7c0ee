"""``NewClusterWithIncrementalUpgrade`` through a Gateway, under continuous load.

The walkthrough's RayService (localized, Ray's autoscaler on) with
``gatewayClassName: traefik``: the operator writes the Gateway, the HTTPRoute
and each cluster's serve Service; Traefik (built from source, a host process,
``localcluster.gateway``) routes by the route's weights. Version A answers 6,
B answers 8 (MangoStand's price), so every answer says which cluster served
it. Load (closed loop, a new connection per request) goes through the
Gateway from before the upgrade until the old cluster is gone; every answer
is checked, none may fail, and the answers of each cluster are counted per
5 s: B's share rises with the HTTPRoute's weight.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from e2e import sample
from e2e.kube import Kubectl, answers, clusters_of, condition, eventually, is_ready
from e2e.load import BackgroundLoad, LoadReport
from localcluster import gateway, processes

from .conftest import Stack
from .rayservice import FRUIT, assert_no_failures, finish, with_env

pytestmark = pytest.mark.e2e

NAME = "rs-gateway"
PRICES = {"A": 3, "B": 4}
#: Enough closed-loop clients for >= 50 requests/s on a quiet machine.
LOAD_CLIENTS = 16
TIMEOUT = 600.0


def versioned(base: dict[str, Any], version: str) -> dict[str, Any]:
    out = with_env(base, "E2E_VERSION", version)
    config = sample.serve_config(out)
    sample.deployment(config, "fruit_app", "MangoStand")["user_config"]["price"] = PRICES[version]
    return sample.with_serve_config(out, config)


def service(image: str) -> dict[str, Any]:
    doc = sample.localize(sample.load_sample(), image).doc
    doc["metadata"]["name"] = NAME
    spec = doc["spec"]
    spec["upgradeStrategy"] = {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "maxSurgePercent": 50,
            "stepSizePercent": 25,
            "intervalSeconds": 5,
            "gatewayClassName": gateway.GATEWAY_CLASS,
        },
    }
    spec["rayClusterDeletionDelaySeconds"] = 5
    cluster = spec["rayClusterConfig"]
    cluster["enableInTreeAutoscaling"] = True
    cluster["workerGroupSpecs"][0].update({"replicas": 1, "minReplicas": 1, "maxReplicas": 2})
    return copy.deepcopy(doc)


def routed_weights(k: Kubectl) -> dict[str, int]:
    route = k.get("httproute", f"{NAME}-httproute") or {}
    rules = (route.get("spec") or {}).get("rules") or [{}]
    return {ref["name"]: ref.get("weight", 1) for ref in rules[0].get("backendRefs") or []}


def test_incremental_upgrade_through_traefik_under_load(
    e2e_stack: Stack,
    e2e_namespace: str,
    traefik: gateway.Traefik,
    load_reports: list[LoadReport],
) -> None:
    k = Kubectl(e2e_stack.cluster.cp, e2e_namespace)
    base = service(e2e_stack.images.runtime.ref)
    k.apply(versioned(base, "A"))
    eventually(lambda: is_ready(k.get("rayservice", NAME)), TIMEOUT, f"{NAME} Ready")
    first = clusters_of(k, NAME)[0]["metadata"]["name"]
    eventually(
        lambda: (
            condition(k.get("gateway", f"{NAME}-gateway"), "Programmed").get("status") == "True"
        ),
        120,
        "the RayService's Gateway programmed by Traefik",
    )
    eventually(
        lambda: answers(traefik.url, *FRUIT, 2 * PRICES["A"]),
        120,
        "version A answering through the Gateway",
    )
    names = {str(2 * p): v for v, p in PRICES.items()}
    accept = tuple(2 * p for p in PRICES.values())
    load = BackgroundLoad(
        "incremental upgrade through a Gateway (Traefik)",
        traefik.url,
        *FRUIT,
        accept=accept,
        concurrency=LOAD_CLIENTS,
    ).start()
    weights: list[tuple[float, dict[str, int]]] = []
    started = time.monotonic()

    def promoted() -> bool:
        now = routed_weights(k)
        if not weights or weights[-1][1] != now:
            weights.append((time.monotonic() - started, now))
        st = (k.get("rayservice", NAME) or {}).get("status") or {}
        active = (st.get("activeServiceStatus") or {}).get("rayClusterName", "")
        return active not in ("", first) and [
            c["metadata"]["name"] for c in clusters_of(k, NAME)
        ] == [active]

    try:
        k.apply(versioned(base, "B"))
        eventually(promoted, TIMEOUT, "B promoted and A deleted", every=1.0)
    finally:
        report = finish(load, load_reports)
    print(f"answers per 5 s through the Gateway (A = {first}):")
    print(load.split_text(names))
    print("HTTPRoute weights (seconds after the load started):")
    for at, w in weights:
        print(f"  +{at:5.1f}s  " + "  ".join(f"{svc} {n}" for svc, n in w.items()))
    if report.failures:
        print(
            "Traefik's 5xx answers:\n" + processes.log_tail(e2e_stack.cluster.cp.state, "traefik")
        )
    assert_no_failures(report, at_least=100)
    # Both versions answered, and B's share rose with the weights.
    assert set(load.seen) == {"6", "8"}, load.seen
    shares = [c.get("8", 0) / max(1, sum(c.values())) for _, c in load.split()]
    assert shares[0] < 0.5 and shares[-1] == 1.0, shares
    assert any(0.0 < s < 1.0 for s in shares), shares
