"""``python -m raykube``: run the operator against any kubeconfig or in-cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from raykube import leader, logs, settings

# Imported for its side effect: it registers the handlers with kopf's default registry.
from raykube.handlers import crashpoints, registration  # noqa: F401

log = logging.getLogger("raykube")


def run(argv: list[str] | None = None) -> int:
    cfg = settings.from_args(argv)
    problem = crashpoints.refusal(cfg)
    if problem:
        print(f"raykube: {problem}", file=sys.stderr)
        return 2
    logs.configure(cfg.log_format, cfg.log_level)
    start_http_server(cfg.metrics_port, addr=cfg.bind_host)
    log.info(
        "raykube starting",
        extra={
            "namespaces": ",".join(cfg.namespaces) or "*",
            "metrics_port": cfg.metrics_port,
            "leader_election": cfg.leader_election,
        },
    )
    if cfg.leader_election:
        return asyncio.run(leader.run_elected(cfg, lambda stop: _operator(cfg, stop)))
    asyncio.run(_operator(cfg, None))
    return 0


async def _operator(cfg: settings.Settings, stop_flag: asyncio.Event | None) -> None:
    """kopf until a signal (it installs SIGTERM/SIGINT handlers) or ``stop_flag``."""
    # kopf.run swallows the CancelledError of a stopped operator; so do we.
    with contextlib.suppress(asyncio.CancelledError):
        await kopf.operator(
            clusterwide=not cfg.namespaces,
            namespaces=list(cfg.namespaces),
            standalone=True,
            # Given, so kopf does not look the uid up in /etc/passwd (an
            # arbitrary runAsUser has no entry there).
            identity=cast(Any, leader.identity_of(cfg)),  # kopf's private Identity type
            liveness_endpoint=f"http://{cfg.bind_host}:{cfg.health_port}/healthz",
            memo=kopf.Memo(settings=cfg, **{leader.STOP_FLAG: stop_flag}),
            settings=_kopf_settings(),
            stop_flag=stop_flag,
        )


def _kopf_settings() -> kopf.OperatorSettings:
    cfg = kopf.OperatorSettings()
    # The CRDs are installed before the operator (the chart's crds/), and
    # watching CRDs and namespaces at run time would need cluster-scoped
    # rights that a `watchNamespaces` install must not have.
    cfg.scanning.disabled = True
    return cfg
