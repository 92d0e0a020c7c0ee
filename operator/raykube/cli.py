"""``python -m raykube``: run the operator against any kubeconfig or in-cluster."""

from __future__ import annotations

import logging
import threading

import kopf
from prometheus_client import start_http_server

from raykube import logs, settings

log = logging.getLogger("raykube")


def run(argv: list[str] | None = None) -> int:
    cfg = settings.from_args(argv)
    logs.configure(cfg.log_format, cfg.log_level)
    # Registers the handlers with kopf's default registry.
    from raykube.handlers import registration  # noqa: F401

    start_http_server(cfg.metrics_port, addr=cfg.bind_host)
    log.info(
        "raykube starting",
        extra={"namespaces": ",".join(cfg.namespaces) or "*", "metrics_port": cfg.metrics_port},
    )
    kopf.run(
        clusterwide=not cfg.namespaces,
        namespaces=list(cfg.namespaces),
        standalone=True,
        liveness_endpoint=f"http://{cfg.bind_host}:{cfg.health_port}/healthz",
        memo=kopf.Memo(settings=cfg),
        stop_flag=_stop_flag(),
    )
    return 0


def _stop_flag() -> threading.Event | None:
    # kopf installs its own SIGTERM/SIGINT handlers when run in the main thread.
    return None
