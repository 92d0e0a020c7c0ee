"""Builders of RayServices, clusters and observations for the RayService tables."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from raykube.decisions.pods import PodView
from raykube.decisions.rayservice import Observed, roles_of
from raykube.decisions.rayservice_config import parse_serve_config
from raykube.decisions.rayservice_upgrade import cluster_config_hash
from raykube.decisions.rayservice_view import (
    AppView,
    ClusterView,
    DeploymentView,
    ServeSnapshot,
)
from raykube.models.rayservice import RayService, parse_rayservice

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

SERVE = """
applications:
  - name: fruit_app
    import_path: fruit.deployment_graph
    route_prefix: /fruit
    deployments:
      - {name: MangoStand, user_config: {price: 3}}
  - name: math_app
    import_path: conditional_dag.serve_dag
    route_prefix: /calc
"""

BASE: dict[str, Any] = {
    "apiVersion": "ray.io/v1",
    "kind": "RayService",
    "metadata": {"name": "rs", "namespace": "ns", "uid": "rs-uid", "generation": 1},
    "spec": {
        "serveConfigV2": SERVE,
        "rayClusterConfig": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-head", "image": "ray:1"}]}},
            },
            "workerGroupSpecs": [
                {
                    "groupName": "small",
                    "replicas": 1,
                    "minReplicas": 1,
                    "maxReplicas": 5,
                    "rayStartParams": {},
                    "template": {
                        "spec": {"containers": [{"name": "ray-worker", "image": "ray:1"}]}
                    },
                }
            ],
        },
    },
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def service(status: dict[str, Any] | None = None, image: str = "ray:1", **spec: Any) -> RayService:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec)
    cfg = doc["spec"]["rayClusterConfig"]
    cfg["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = image
    if status is not None:
        doc["status"] = status
    return parse_rayservice(doc)


def with_status(rs: RayService, active: str = "", pending: str = "") -> RayService:
    doc = rs.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["status"] = {
        "activeServiceStatus": {"rayClusterName": active} if active else {},
        "pendingServiceStatus": {"rayClusterName": pending} if pending else {},
    }
    return parse_rayservice(doc)


def goal_hash(rs: RayService) -> str:
    return cluster_config_hash(rs.spec.ray_cluster_config)


def cluster(name: str, rs: RayService | None = None, **kw: Any) -> ClusterView:
    base: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "created": T0,
        "config_hash": goal_hash(rs or service()),
        "serve_hash": parse_serve_config(SERVE).hash,
        "serve_healthy_hash": parse_serve_config(SERVE).hash,
    }
    base.update(kw)
    return ClusterView(**base)


def head(
    cluster_name: str, ready: bool = True, serve: bool = True, phase: str = "Running"
) -> PodView:
    return PodView(
        name=f"{cluster_name}-head-x",
        uid="u",
        namespace="ns",
        cluster=cluster_name,
        node_type="head",
        group="headgroup",
        phase=phase,
        ready=ready,
        terminating=False,
        created="2026-01-01T00:00:00Z",
        serve_label=serve,
    )


def apps(*states: str, proxy: bool = True) -> ServeSnapshot:
    names = ("fruit_app", "math_app")
    views = {
        n: AppView(
            s,
            "boom\nValueError: bad" if s == "DEPLOY_FAILED" else "",
            {"D": DeploymentView("HEALTHY" if s == "RUNNING" else "UNHEALTHY")},
        )
        for n, s in zip(names, states, strict=False)
    }
    return ServeSnapshot(reachable=True, apps=views, proxy_healthy=proxy)


RUNNING = apps("RUNNING", "RUNNING")
DOWN = ServeSnapshot(reachable=False, error="connection refused")


def observe(
    rs: RayService,
    clusters: list[ClusterView],
    *,
    now: datetime = T0,
    serve: dict[str, ServeSnapshot] | None = None,
    heads: dict[str, PodView] | None = None,
    traffic: str = "",
    **kw: Any,
) -> Observed:
    goal = parse_serve_config(rs.spec.serve_config_v2)
    gh = goal_hash(rs)
    roles = roles_of(rs, clusters, traffic, gh)
    if heads is None:
        heads = {c.name: head(c.name) for c in clusters}
    if serve is None:
        serve = {c.name: RUNNING for c in clusters}
    return Observed(
        service=rs, goal=goal, goal_hash=gh, roles=roles, now=now, serve=serve, heads=heads, **kw
    )
