"""Serve apps that fail on purpose, for the dashboard client's tests.

``ctor_fails``: its only deployment raises in its constructor, so Serve
retries the replica a few times and marks the app DEPLOY_FAILED.
``fruit_ctor_fails``: the fruit stand's deployment names, but the ingress
raises in its constructor: an update of a running fruit_app to a broken
version.
``import_fails``: importing this attribute's module raises.
``flaky``: its health check fails while a marker file exists.
``picky``: answers its user_config version; ``fail: true`` makes reconfigure raise.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve


class Exploding:
    def __init__(self) -> None:
        raise RuntimeError("constructor failed on purpose")

    async def __call__(self, request: Any) -> str:
        return "never"


_SMALL: dict[str, Any] = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.1}}
ctor_fails = serve.deployment(name="Exploding", **_SMALL)(Exploding).bind()
fruit_ctor_fails = serve.deployment(name="FruitMarket", **_SMALL)(Exploding).bind()


class Flaky:
    """Healthy until the file named in user_config exists."""

    def __init__(self) -> None:
        self.marker = ""

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.marker = str(config.get("marker", ""))

    def check_health(self) -> None:
        if self.marker and os.path.exists(self.marker):
            raise RuntimeError(f"unhealthy on purpose: {self.marker} exists")

    async def __call__(self, request: Any) -> str:
        return "ok"


flaky = serve.deployment(name="Flaky", health_check_period_s=1, health_check_timeout_s=1, **_SMALL)(
    Flaky
).bind()


class Picky:
    """Answers its user_config's ``version``; a ``fail`` in user_config makes
    ``reconfigure`` raise (an in-place update that breaks the application)."""

    def __init__(self) -> None:
        self.version = ""

    def reconfigure(self, config: dict[str, Any]) -> None:
        if config.get("fail"):
            raise ValueError(f"reconfigure refused on purpose: {config}")
        self.version = str(config.get("version", ""))

    async def __call__(self, request: Any) -> str:
        return f"v{self.version}"


picky = serve.deployment(name="Picky", **_SMALL)(Picky).bind()
