"""Operator settings: read once at start-up from flags and environment.

Nothing here is read at import time, and nothing deeper in the operator reads
the environment: handlers get a ``Settings`` instance.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Literal

DashboardAccess = Literal["service-dns", "apiserver-proxy"]


@dataclass(frozen=True)
class Settings:
    #: The field manager of every server-side apply, and the created-by label value.
    operator_name: str = "raykube"
    #: Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    #: How the operator reaches Ray dashboards: the head Service's DNS name
    #: (in-cluster) or the API server's service proxy (operator outside).
    dashboard_access: DashboardAccess = "service-dns"
    #: Honour the raykube.ray.io/dashboard-url and serve-url annotations of a
    #: RayCluster as the address of its head: for tests, and for debugging an
    #: operator outside the cluster through port-forwards. Off by default: an
    #: annotation must not redirect the operator in production.
    dashboard_url_annotations: bool = False
    metrics_port: int = 8080
    health_port: int = 8081
    bind_host: str = "0.0.0.0"
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    #: Seconds between safety-net reconciles of every object.
    resync_seconds: float = 60.0
    #: Concurrent reconciles across all objects.
    workers: int = 8
    #: Leader election through a coordination.k8s.io Lease.
    leader_election: bool = False
    lease_name: str = "raykube-leader"
    lease_namespace: str = field(default_factory=lambda: "default")
    #: This process's name in the Lease; empty: ``<hostname>-<pid>``.
    lease_identity: str = ""
    #: Seconds a Lease not renewed stays taken; the leader renews every
    #: ``lease_renew_period`` and steps down when it could not renew for
    #: ``lease_renew_deadline``; candidates look every ``lease_retry_period``.
    lease_duration: float = 15.0
    lease_renew_period: float = 5.0
    lease_renew_deadline: float = 10.0
    lease_retry_period: float = 2.0

    @property
    def field_manager(self) -> str:
        return self.operator_name


def _env(name: str, default: str) -> str:
    return os.environ.get(f"RAYKUBE_{name}", default)


def parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(prog="raykube", description="Ray on Kubernetes operator")
    p.add_argument(
        "--namespace",
        action="append",
        default=None,
        help="namespace to watch, repeatable (env RAYKUBE_NAMESPACES, comma-separated)",
    )
    p.add_argument("--cluster-domain", default=_env("CLUSTER_DOMAIN", d.cluster_domain))
    p.add_argument(
        "--dashboard-access",
        choices=["service-dns", "apiserver-proxy"],
        default=_env("DASHBOARD_ACCESS", d.dashboard_access),
    )
    p.add_argument(
        "--dashboard-url-annotations",
        action=argparse.BooleanOptionalAction,
        default=_env("DASHBOARD_URL_ANNOTATIONS", "false") == "true",
        help="reach heads at the URLs in RayCluster annotations (tests, debugging)",
    )
    p.add_argument(
        "--metrics-port", type=int, default=int(_env("METRICS_PORT", str(d.metrics_port)))
    )
    p.add_argument("--health-port", type=int, default=int(_env("HEALTH_PORT", str(d.health_port))))
    p.add_argument("--bind-host", default=_env("BIND_HOST", d.bind_host))
    p.add_argument(
        "--log-format", choices=["json", "text"], default=_env("LOG_FORMAT", d.log_format)
    )
    p.add_argument("--log-level", default=_env("LOG_LEVEL", d.log_level))
    p.add_argument(
        "--resync-seconds", type=float, default=float(_env("RESYNC_SECONDS", str(d.resync_seconds)))
    )
    p.add_argument("--workers", type=int, default=int(_env("WORKERS", str(d.workers))))
    p.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=_env("LEADER_ELECTION", "false") == "true",
    )
    p.add_argument(
        "--lease-namespace",
        default=_env("LEASE_NAMESPACE", os.environ.get("POD_NAMESPACE", "default")),
    )
    p.add_argument("--lease-name", default=_env("LEASE_NAME", d.lease_name))
    p.add_argument(
        "--lease-identity",
        default=_env("LEASE_IDENTITY", os.environ.get("POD_NAME", d.lease_identity)),
        help="this replica's name in the Lease (default: env POD_NAME, else <hostname>-<pid>)",
    )
    for name, value in (
        ("duration", d.lease_duration),
        ("renew-period", d.lease_renew_period),
        ("renew-deadline", d.lease_renew_deadline),
        ("retry-period", d.lease_retry_period),
    ):
        env = f"LEASE_{name.replace('-', '_').upper()}"
        p.add_argument(f"--lease-{name}", type=float, default=float(_env(env, str(value))))
    return p


def from_args(argv: list[str] | None = None) -> Settings:
    a = parser().parse_args(argv)
    namespaces = a.namespace or [n for n in _env("NAMESPACES", "").split(",") if n]
    return Settings(
        namespaces=tuple(namespaces),
        cluster_domain=a.cluster_domain,
        dashboard_access=a.dashboard_access,
        dashboard_url_annotations=a.dashboard_url_annotations,
        metrics_port=a.metrics_port,
        health_port=a.health_port,
        bind_host=a.bind_host,
        log_format=a.log_format,
        log_level=a.log_level.upper(),
        resync_seconds=a.resync_seconds,
        workers=a.workers,
        leader_election=a.leader_election,
        lease_namespace=a.lease_namespace,
        lease_name=a.lease_name,
        lease_identity=a.lease_identity,
        lease_duration=a.lease_duration,
        lease_renew_period=a.lease_renew_period,
        lease_renew_deadline=a.lease_renew_deadline,
        lease_retry_period=a.lease_retry_period,
    )
