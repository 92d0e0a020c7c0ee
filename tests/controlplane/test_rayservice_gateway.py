"""A RayService asking for a Gateway (``gatewayClassName``) on an API server
that does not serve the Gateway API: a Warning says so and the operator
carries on. The Gateway path itself (objects, weights, real traffic through
Traefik) is shown by ``tests/unit/test_rayservice_gateway.py`` and
``tests/e2e/test_incremental_gateway.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from localcluster import gateway as local_gateway
from localcluster.controlplane import ControlPlane
from tests.kubehelpers import OperatorProcess, apply, wait_for

from .test_rayservice_controller import events, rayservice, status

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
