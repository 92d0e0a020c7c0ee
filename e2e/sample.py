"""The walkthrough's RayService, made runnable on the local cluster (pure).

``samples/rayservice-walkthrough.yaml`` is the project's own RayService of the
walkthrough (``SAMPLE``): the demo and the README use it, so a clone of the
repository is enough. Its image names the project's Ray image, which the demo
builds here. (KubeRay's own copy of the walkthrough fetches its apps from a
GitHub zip, names ``rayproject/ray:2.6.3`` and asks for 2 whole CPUs for the
head: none of which this machine offers.)

``localize`` makes exactly the changes listed below, and says each one that
changed something, so the demo can print them. Everything else (names, ports,
thresholds, deployments, user_config, the worker's preStop hook) is left as
written.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.paths import WALKTHROUGH
from localcluster.node_config import REAL_NODE_SELECTOR

SAMPLE = WALKTHROUGH
RAY_VERSION = "2.60.0"
#: Small requests so that two clusters (blue-green) and the operator fit on the
#: node's 2 CPUs; the limits give Ray its logical CPUs (``--num-cpus``).
HEAD_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "1Gi"},
    "limits": {"cpu": "1", "memory": "2Gi"},
}
WORKER_RESOURCES = {
    "requests": {"cpu": "200m", "memory": "1Gi"},
    "limits": {"cpu": "1", "memory": "2Gi"},
}


@dataclass
class Localized:
    """The manifest to apply, and what was changed, in words."""

    doc: dict[str, Any]
    changes: list[str] = field(default_factory=list)


def load_sample(path: Path | None = None) -> dict[str, Any]:
    """The project's walkthrough sample (or ``path``) as written."""
    path = path or SAMPLE
    if not path.is_file():
        raise FileNotFoundError(f"sample manifest missing: {path}")
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def serve_config(doc: dict[str, Any]) -> dict[str, Any]:
    """``spec.serveConfigV2`` parsed."""
    config: dict[str, Any] = yaml.safe_load(doc["spec"]["serveConfigV2"])
    return config


def with_serve_config(doc: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["spec"]["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)
    return out


def deployment(config: dict[str, Any], app: str, name: str) -> dict[str, Any]:
    for application in config["applications"]:
        if application["name"] == app:
            for dep in application["deployments"]:
                if dep["name"] == name:
                    found: dict[str, Any] = dep
                    return found
    raise KeyError(f"{app}/{name} is not in serveConfigV2")


def containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, container) for the head and every worker group."""
    cluster = doc["spec"]["rayClusterConfig"]
    for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]:
        yield "head", c
    for group in cluster.get("workerGroupSpecs") or []:
        for c in group["template"]["spec"]["containers"]:
            yield group["groupName"], c


def localize(doc: dict[str, Any], image: str) -> Localized:
    """The sample, runnable on the local cluster with the locally built ``image``."""
    out = Localized(copy.deepcopy(doc))
    _drop_working_dirs(out)
    _use_local_image(out, image)
    _fit_the_node(out)
    return out


def _drop_working_dirs(out: Localized) -> None:
    config = serve_config(out.doc)
    dropped = []
    for app in config.get("applications") or []:
        env = app.get("runtime_env") or {}
        if env.pop("working_dir", None) is not None:
            dropped.append(app["name"])
            if not env:
                app.pop("runtime_env", None)
    if dropped:
        out.doc = with_serve_config(out.doc, config)
        out.changes.append(
            f"serveConfigV2: runtime_env.working_dir removed from {', '.join(dropped)} "
            "(the apps are baked into the image; the GitHub zip cannot be downloaded here)"
        )


def _use_local_image(out: Localized, image: str) -> None:
    cluster = out.doc["spec"]["rayClusterConfig"]
    if cluster.get("rayVersion") != RAY_VERSION:
        out.changes.append(
            f"rayVersion: {cluster.get('rayVersion')!r} -> {RAY_VERSION!r} (the image's Ray)"
        )
        cluster["rayVersion"] = RAY_VERSION
    before = sorted({c.get("image", "") for _, c in containers(out.doc)})
    for _, c in containers(out.doc):
        c["image"] = image
        c["imagePullPolicy"] = "Never"
    out.changes.append(
        f"image: {', '.join(before)} -> {image} (built here, imported into the node; "
        "imagePullPolicy Never)"
    )


def _fit_the_node(out: Localized) -> None:
    cluster = out.doc["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster.get("workerGroupSpecs") or []
    ]
    for template in templates:
        template["spec"]["nodeSelector"] = dict(REAL_NODE_SELECTOR)
    resized = False
    for group, c in containers(out.doc):
        wanted = HEAD_RESOURCES if group == "head" else WORKER_RESOURCES
        resized |= c.get("resources") != wanted
        c["resources"] = copy.deepcopy(wanted)
    if resized:
        out.changes.append(
            "resources: head requests 250m CPU / 1Gi (limit 1 CPU / 2Gi), workers 200m / 1Gi "
            "(limit 1 / 2Gi), so two clusters fit the node's 2 CPUs during an upgrade"
        )
    out.changes.append(f"pods pinned to the real node ({_selector_text()})")


def _selector_text() -> str:
    return ",".join(f"{k}={v}" for k, v in REAL_NODE_SELECTOR.items())
