"""``NewClusterWithIncrementalUpgrade`` through a Gateway, on a real API server
with the Gateway API CRDs (the standard channel ``localcluster build
--gateway`` took from ``sigs.k8s.io/gateway-api``), the operator as its own
process and every RayCluster's head a real Ray head (``HeadMapper``).

No Gateway controller runs here (the e2e tier runs Traefik): this tier shows
the objects the operator writes and that the HTTPRoute's weights follow the
status' ``trafficRoutedPercent`` as the upgrade steps. The first test runs
before this module installs the CRDs: a RayService asking for a Gateway is
told, in a Warning, that the API server does not serve them, and the
operator carries on.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from localcluster import gateway as local_gateway
from localcluster.controlplane import ControlPlane
from raykube.builders import labels
from tests.kubehelpers import OperatorProcess, apply, get_json, wait_for

from .rayservice_heads import mapped_heads
from .test_rayservice_controller import SERVE_TIMEOUT, events, rayservice, serving, status

pytestmark = pytest.mark.controlplane

STEP, SURGE, INTERVAL = 25, 50, 2


def with_gateway(name: str) -> dict[str, Any]:
    doc = rayservice(name, rayClusterDeletionDelaySeconds=5)
    doc["spec"]["upgradeStrategy"] = {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "maxSurgePercent": SURGE,
            "stepSizePercent": STEP,
            "intervalSeconds": INTERVAL,
            "gatewayClassName": local_gateway.GATEWAY_CLASS,
        },
    }
    doc["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = True
    return doc


def route_weights(cp: ControlPlane, ns: str, name: str) -> dict[str, int]:
    """Backend Service -> weight of the RayService's HTTPRoute ({} while absent)."""
    found = cp.kubectl("get", "httproute", f"{name}-httproute", "-n", ns, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    route = get_json(cp, "httproute", f"{name}-httproute", "-n", ns)
    [rule] = route["spec"]["rules"]
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


def crds_served(cp: ControlPlane) -> bool:
    found = cp.kubectl("get", "crd", "httproutes.gateway.networking.k8s.io", check=False)
    return found.returncode == 0


def test_without_the_gateway_api_a_warning_says_so(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-no-gw-api"
    assert not crds_served(cp), "this test runs before the module installs the CRDs"
    apply(cp, ns, with_gateway(name))

    def warned() -> str | None:
        return next(
            (
                m
                for kind, r, m in events(cp, ns)
                if r == "GatewayAPIUnavailable" and kind == "Warning"
            ),
            None,
        )

    message = wait_for(warned, timeout=60)
    print(f"Warning GatewayAPIUnavailable: {message}")
    assert "gateway.networking.k8s.io/v1" in message and "CRDs" in message
    # The pass went on: the RayService has its first cluster.
    wait_for(lambda: (status(cp, ns, name).get("pendingServiceStatus") or {}).get("rayClusterName"))
    assert operator.proc is not None and operator.proc.poll() is None


def test_incremental_upgrade_weights_follow_the_traffic_split(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-gw"
    local_gateway.install_crds(cp)
    doc = with_gateway(name)
    with mapped_heads(cp, ns, name) as heads:
        apply(cp, ns, doc)
        st = wait_for(lambda: serving(cp, ns, name), timeout=SERVE_TIMEOUT, interval=2)
        first = st["activeServiceStatus"]["rayClusterName"]
        # The Gateway, KubeRay's shape, and the route: everything to the one cluster.
        gw = get_json(cp, "gateway", f"{name}-gateway", "-n", ns)
        assert gw["spec"]["gatewayClassName"] == local_gateway.GATEWAY_CLASS
        assert [(lst["name"], lst["protocol"], lst["port"]) for lst in gw["spec"]["listeners"]] == [
            ("http", "HTTP", 80)
        ]
        assert gw["metadata"]["ownerReferences"][0]["kind"] == "RayService"
        wait_for(lambda: route_weights(cp, ns, name) == {f"{first}-serve-svc": 100}, timeout=60)
        svc = get_json(cp, "service", f"{first}-serve-svc", "-n", ns)
        assert svc["spec"]["selector"] == {labels.CLUSTER: first, labels.SERVE: "true"}
        assert [(o["kind"], o["name"]) for o in svc["metadata"]["ownerReferences"]] == [
            ("RayCluster", first)
        ]

        samples: list[tuple[dict[str, int], int | None, str | None]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                st = status(cp, ns, name)
                pending = st.get("pendingServiceStatus") or {}
                samples.append(
                    (
                        route_weights(cp, ns, name),
                        pending.get("trafficRoutedPercent"),
                        pending.get("rayClusterName"),
                    )
                )
                stop.wait(0.3)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            doc["spec"]["rayClusterConfig"]["rayVersion"] = "2.100.0"
            apply(cp, ns, doc)
            second = wait_for(
                lambda: (status(cp, ns, name).get("pendingServiceStatus") or {}).get(
                    "rayClusterName"
                ),
                timeout=60,
            )
            wait_for(
                lambda: (
                    (status(cp, ns, name).get("activeServiceStatus") or {}).get("rayClusterName")
                    == second
                ),
                timeout=SERVE_TIMEOUT,
                interval=1,
            )
            wait_for(lambda: route_weights(cp, ns, name) == {f"{second}-serve-svc": 100})
        except AssertionError:
            # What the upgrade was waiting for, in the failure's output.
            st = status(cp, ns, name)
            print(f"status: {st.get('conditions')}")
            print(f"active: {st.get('activeServiceStatus', {}).get('trafficRoutedPercent')}")
            print(f"pending: {st.get('pendingServiceStatus')}")
            print(f"route samples: {moves_of(samples)}")
            raise
        finally:
            stop.set()
            sampler.join(timeout=30)
        serve_svc = get_json(cp, "service", f"{name}-serve-svc", "-n", ns)
    assert not heads.errors, heads.errors
    new, old = f"{second}-serve-svc", f"{first}-serve-svc"
    split = [w for w, _, _ in samples if len(w) == 2]
    pending_weights = moves([w[new] for w in split])
    recorded = moves([t for _, t, c in samples if c == second and t is not None])
    print(f"HTTPRoute weight of the new cluster: {pending_weights}")
    print(f"pendingServiceStatus.trafficRoutedPercent: {recorded}")
    assert all(w[new] + w[old] == 100 for w in split), split
    assert pending_weights == sorted(pending_weights), pending_weights
    assert set(pending_weights) >= {25, 50, 75}, pending_weights
    # Every split the status reported was the route's (and the other way round).
    assert set(recorded) - {100} <= set(pending_weights) | {0}, (recorded, pending_weights)
    assert set(pending_weights) <= set(recorded) | {0, 100}, (recorded, pending_weights)
    # The serve Service never selected by the split label: the route split the traffic.
    assert labels.SERVE_TRAFFIC not in serve_svc["spec"]["selector"]
    shifted = [m for _, r, m in events(cp, ns) if r == "TrafficShifted"]
    print(f"TrafficShifted: {shifted}")
    assert shifted


def moves_of(samples: list[tuple[dict[str, int], int | None, str | None]]) -> list[Any]:
    out: list[Any] = []
    for sample in samples:
        if not out or out[-1] != sample:
            out.append(sample)
    return out


def moves(values: list[int]) -> list[int]:
    out: list[int] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out
