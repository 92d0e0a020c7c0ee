"""Operator settings: read once at start-up from flags and environment.

Nothing here is read at import time, and nothing deeper in the operator reads
the environment: handlers get a ``Settings`` instance.
"""

from __future__ import annotations

import argparse
import os
from argparse import BooleanOptionalAction
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Any, Literal

DashboardAccess = Literal["service-dns", "apiserver-proxy"]


def _flag(help_text: str = "", env_fallback: str = "", choices: tuple[str, ...] = ()) -> Any:
    """Field metadata: how the setting is offered as ``--flag`` / ``RAYKUBE_*``."""
    return {"help": help_text, "env_fallback": env_fallback, "choices": choices}


@dataclass(frozen=True)
class Settings:
    """Every setting once: its type, default and help here; ``parser`` derives
    the flag (``--name-with-dashes``) and its variable (``RAYKUBE_NAME``)."""

    #: The field manager of every server-side apply, and the created-by label value.
    #: Not a flag: the chart's RBAC and labels are written for this name.
    operator_name: str = field(default="raykube", metadata={"internal": True})
    #: Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = field(
        default=(),
        metadata=_flag("namespace to watch, repeatable (env RAYKUBE_NAMESPACES, comma-separated)"),
    )
    cluster_domain: str = field(default="cluster.local", metadata=_flag())
    #: The ClusterRole (rules: builders/autoscaler.AUTOSCALER_RULES) that an
    #: autoscaling RayCluster's RoleBinding grants its autoscaler; the chart
    #: installs it and grants the operator ``bind`` on it alone.
    autoscaler_cluster_role: str = field(
        default="raykube-ray-autoscaler",
        metadata=_flag("ClusterRole bound to each autoscaling RayCluster's autoscaler"),
    )
    #: How the operator reaches Ray dashboards: the head Service's DNS name
    #: (in-cluster) or the API server's service proxy (operator outside).
    dashboard_access: DashboardAccess = field(
        default="service-dns", metadata=_flag(choices=("service-dns", "apiserver-proxy"))
    )
    #: Honour the raykube.ray.io/dashboard-url and serve-url annotations of a
    #: RayCluster as the address of its head: for tests, and for debugging an
    #: operator outside the cluster through port-forwards. Off by default: an
    #: annotation must not redirect the operator in production.
    dashboard_url_annotations: bool = field(
        default=False,
        metadata=_flag("reach heads at the URLs in RayCluster annotations (tests, debugging)"),
    )
    metrics_port: int = field(default=8080, metadata=_flag())
    health_port: int = field(default=8081, metadata=_flag())
    bind_host: str = field(default="0.0.0.0", metadata=_flag())
    log_format: Literal["json", "text"] = field(
        default="json", metadata=_flag(choices=("json", "text"))
    )
    log_level: str = field(default="INFO", metadata=_flag())
    #: Seconds between safety-net reconciles of every object.
    resync_seconds: float = field(default=60.0, metadata=_flag())
    #: Concurrent reconciles across all objects.
    workers: int = field(default=8, metadata=_flag())
    #: Seconds one reconcile pass may take, everything it waits for included;
    #: past it the pass is abandoned, counted as an error and retried with
    #: back-off, so no object holds a worker for longer. A pass waits on at most
    #: three dashboard calls of 30 s each (``adapters.dashboard.CALL_DEADLINE``)
    #: and a few API requests: 120 s leaves room for all of them.
    reconcile_timeout_seconds: float = field(default=120.0, metadata=_flag())
    #: Leader election through a coordination.k8s.io Lease.
    leader_election: bool = field(default=False, metadata=_flag())
    lease_name: str = field(default="raykube-leader", metadata=_flag())
    lease_namespace: str = field(default="default", metadata=_flag(env_fallback="POD_NAMESPACE"))
    #: This process's name in the Lease; empty: ``<hostname>-<pid>``.
    lease_identity: str = field(
        default="",
        metadata=_flag(
            "this replica's name in the Lease (default: env POD_NAME, else <hostname>-<pid>)",
            env_fallback="POD_NAME",
        ),
    )
    #: Seconds a Lease not renewed stays taken; the leader renews every
    #: ``lease_renew_period`` and steps down when it could not renew for
    #: ``lease_renew_deadline``; candidates look every ``lease_retry_period``.
    lease_duration: float = field(default=15.0, metadata=_flag())
    lease_renew_period: float = field(default=5.0, metadata=_flag())
    lease_renew_deadline: float = field(default=10.0, metadata=_flag())
    lease_retry_period: float = field(default=2.0, metadata=_flag())
    #: Tests only: end the process at once at this crash point of a reconcile
    #: pass (``handlers/crashpoints.py``): ``<name>``, or ``<name>#<n>`` for its
    #: n-th reaching. Refused at start-up unless ``test_hooks`` is on too; the
    #: chart sets neither.
    test_crash_at: str = field(
        default="",
        metadata=_flag("tests only: exit at this crash point, <name>[#<n>]; needs --test-hooks"),
    )
    test_hooks: bool = field(
        default=False, metadata=_flag("tests only: allow the settings named test-*")
    )

    @property
    def field_manager(self) -> str:
        return self.operator_name


_CONVERT: dict[object, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def _env_name(f: Field[Any]) -> str:
    return f"RAYKUBE_{f.name.upper()}"


def _default(f: Field[Any]) -> Any:
    """The field's default, overridden by its variable (or a fallback variable)."""
    fallback = f.metadata.get("env_fallback")
    text = os.environ.get(_env_name(f))
    if text is None and fallback:
        text = os.environ.get(fallback)
    if f.name == "namespaces":
        return None  # repeatable: the variable is read after parsing
    if text is None:
        return f.default
    if f.type == "bool":
        return text == "true"
    return _CONVERT.get(f.type, str)(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raykube", description="Ray on Kubernetes operator")
    for f in fields(Settings):
        if f.metadata.get("internal"):
            continue
        kwargs: dict[str, Any] = {"default": _default(f)}
        if f.metadata.get("help"):
            kwargs["help"] = f.metadata["help"]
        if f.metadata.get("choices"):
            kwargs["choices"] = list(f.metadata["choices"])
        if f.name == "namespaces":
            p.add_argument("--namespace", action="append", **kwargs)
        elif f.type == "bool":
            p.add_argument(f"--{f.name.replace('_', '-')}", action=BooleanOptionalAction, **kwargs)
        else:
            convert = _CONVERT.get(f.type, str)
            p.add_argument(f"--{f.name.replace('_', '-')}", type=convert, **kwargs)
    return p


def from_args(argv: list[str] | None = None) -> Settings:
    a = vars(parser().parse_args(argv))
    spaces = a.pop("namespace") or [n for n in os.environ.get("RAYKUBE_NAMESPACES", "").split(",")]
    a["namespaces"] = tuple(n for n in spaces if n)
    a["log_level"] = str(a["log_level"]).upper()
    return Settings(**a)
