"""A Gateway API implementation for the local cluster: Traefik as a host process.

``start`` installs the Gateway API CRDs (standard channel, from the module
``build_gateway`` took them from), creates the GatewayClass ``traefik`` and
starts the built Traefik with its ``kubernetesGateway`` provider reading the
cluster through the admin kubeconfig. Its one entry point listens on
``<host>:80``, the port of the listener KubeRay (and raykube) give a
RayService's Gateway; Traefik serves a Gateway listener on the entry point
whose address ends in the listener's port. Traefik sends requests to the
backend Services' endpoints (pod IPs), which the host reaches through the real
node's routes (``docs/local-cluster.md``).

The process is recorded under the cluster's ``pids/`` like the control plane,
so ``stop`` (or taking the cluster down) stops it by PID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from localcluster import build, processes
from localcluster.controlplane import ControlPlane

#: The GatewayClass this module creates, and the controller Traefik answers for.
GATEWAY_CLASS = "traefik"
CONTROLLER_NAME = "traefik.io/gateway-controller"
#: KubeRay's Gateway listener port (``DefaultGatewayListenerPort``).
LISTENER_PORT = 80
PROCESS = "traefik"


@dataclass(frozen=True)
class Traefik:
    pid: int
    host: str
    port: int = LISTENER_PORT

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def install_crds(cp: ControlPlane) -> None:
    """Apply the Gateway API CRDs and wait until the API server serves them."""
    crds = build.gateway_crds()
    files = sorted(crds.glob("*.yaml"))
    if not build.traefik_binary().exists() or not files:
        raise processes.ComponentFailed(
            f"Traefik or the Gateway API CRDs are not built in {crds.parent}: "
            "run `python -m localcluster build --gateway` (./dev install does)"
        )
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    names = [_crd_name(f) for f in files]
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


def _crd_name(path: Path) -> str:
    """The CRD a file holds: ``<group>_<plural>.yaml`` -> ``crd/<plural>.<group>``."""
    group, _, plural = path.name.removesuffix(".yaml").partition("_")
    return f"crd/{plural}.{group}"


def _gateway_class() -> str:
    return json.dumps(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": CONTROLLER_NAME},
        }
    )


def _class_accepted(cp: ControlPlane) -> bool:
    proc = cp.kubectl("get", "gatewayclass", GATEWAY_CLASS, "-o", "json", check=False)
    if proc.returncode != 0:
        return False
    conditions = json.loads(proc.stdout).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conditions)


def start(cp: ControlPlane, host: str = "127.0.0.1", timeout: float = 90) -> Traefik:
    """CRDs, the GatewayClass and a running Traefik that has accepted it."""
    install_crds(cp)
    cp.kubectl("apply", "--server-side", "-f", "-", input=_gateway_class())
    stop(cp)
    argv = [
        str(build.traefik_binary()),
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
        # Requests Traefik answered 5xx, with the backend it chose (the log says
        # which pod failed and when).
        "--accessLog=true",
        "--accessLog.filters.statusCodes=500-599",
        # Endpoint changes (a pod leaving) reach the routing table at once,
        # not after the default 2 s of batching.
        "--providers.providersThrottleDuration=0s",
        f"--entryPoints.web.address={host}:{LISTENER_PORT}",
        "--providers.kubernetesGateway=true",
        # The Gateway's status says where it is reached.
        f"--providers.kubernetesGateway.statusAddress.ip={host}",
    ]
    pid = processes.start(PROCESS, argv, cp.state, env=cp.env())
    try:
        # ``what`` names the log that a failure shows (logs/traefik.log).
        processes.wait_until(
            PROCESS, lambda: _class_accepted(cp), state=cp.state, pid=pid, timeout=timeout
        )
    except processes.ComponentFailed:
        stop(cp)
        raise
    return Traefik(pid, host)


def stop(cp: ControlPlane) -> None:
    """Stop the Traefik recorded for this cluster, by PID (nothing if none)."""
    path = cp.state / "pids" / PROCESS
    if path.exists():
        processes.stop_pid(int(path.read_text().strip()))
        path.unlink(missing_ok=True)
