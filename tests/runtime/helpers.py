"""Small helpers shared by the runtime tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# PUTs a whole serve config and waits until its apps are RUNNING.
Deploy = Callable[[dict[str, Any]], dict[str, Any]]


def find_app(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in config["applications"] if a["name"] == name)
    return found


def find_deployment(config: dict[str, Any], app: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        d for d in find_app(config, app)["deployments"] if d["name"] == name
    )
    return found
