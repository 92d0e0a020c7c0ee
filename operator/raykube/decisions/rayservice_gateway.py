"""Which clusters an incremental upgrade's HTTPRoute sends to, and how much (pure).

The weights are the traffic percents this pass leaves recorded on the clusters
(the ones the status shows as ``trafficRoutedPercent``): during a step, the
step's split; once the new cluster is promoted, all of it to that one; a
pending cluster that has no traffic yet is a backend of weight 0, as in
KubeRay (the Gateway sends it nothing), and so is a new cluster that stopped
serving (its head lost) until it serves again.
"""

from __future__ import annotations

from raykube.builders.gateway import Backend, serve_port
from raykube.decisions.rayservice import Observed, Plan, pending_after, serving_after
from raykube.decisions.rayservice_incremental import candidates
from raykube.decisions.rayservice_view import ClusterView


def _backend(cluster: ClusterView, weight: int) -> Backend:
    return Backend(cluster.name, serve_port(cluster.head_ports), weight)


def route_backends(obs: Observed, plan: Plan, created: ClusterView | None = None) -> list[Backend]:
    """The HTTPRoute's backends after this pass, the active cluster first; none
    until a cluster serves (KubeRay builds no route before there is an active one)."""
    active = serving_after(obs, plan)
    if active is None:
        return []
    pending = pending_after(obs, plan, created)
    shift = plan.shift
    if pending is None:
        return [_backend(active, 100)]
    if shift is not None and shift.pending.name == pending.name:
        weight = shift.routed  # as with the endpoint split
    else:
        # No step planned this pass: the split as recorded (none yet: all on the active one).
        weight = pending.traffic or 0
    # A backend whose Service has no ready serving pod answers 503 ("no
    # available server") for its share: its share goes to the other one while
    # that one has some (Serve's RUNNING comes before the pods' readiness and
    # serve labels, by seconds on a loaded node).
    if weight > 0 and not _endpoints(obs, pending) and _endpoints(obs, active):
        weight = 0
    elif 0 < weight < 100 and not _endpoints(obs, active) and _endpoints(obs, pending):
        weight = 100
    return [_backend(active, 100 - weight), _backend(pending, weight)]


def _endpoints(obs: Observed, cluster: ClusterView) -> bool:
    """Whether the cluster's serve Service has a ready endpoint (pods observed)."""
    return bool(candidates(obs.pods.get(cluster.name, ()), {}))
