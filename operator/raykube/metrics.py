"""Prometheus metrics, named by Prometheus conventions (``raykube_`` prefix,
base units, ``_total`` counters). Defined once here; recorded by handlers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("raykube_reconcile_total", "Reconciles run", ["kind"])
RECONCILE_ERRORS = Counter(
    "raykube_reconcile_errors_total", "Reconciles that failed", ["kind", "reason"]
)
RECONCILE_SECONDS = Histogram(
    "raykube_reconcile_duration_seconds",
    "Time spent in one reconcile",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PODS_CREATED = Counter("raykube_pods_created_total", "Ray pods created", ["node_type"])
PODS_DELETED = Counter("raykube_pods_deleted_total", "Ray pods deleted", ["node_type", "reason"])
RAYCLUSTERS_BY_STATE = Gauge("raykube_rayclusters", "RayClusters by state", ["state"])
SERVE_SUBMISSIONS = Counter(
    "raykube_serve_config_submissions_total", "serveConfigV2 submissions", ["result"]
)
SERVE_ROLLBACKS = Counter(
    "raykube_serve_config_rollbacks_total",
    "In-place serve config updates rolled back to the last good config",
)
SERVE_SUBMIT_SECONDS = Histogram(
    "raykube_serve_config_submit_duration_seconds", "Serve config PUT latency"
)
UPGRADES = Counter("raykube_upgrades_total", "Cluster upgrades by outcome", ["outcome"])
UPGRADE_SECONDS = Histogram(
    "raykube_upgrade_duration_seconds",
    "Time from pending cluster creation to traffic switch",
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
RAYSERVICES_BY_CONDITION = Gauge(
    "raykube_rayservices", "RayServices by condition", ["condition", "status"]
)
DASHBOARD_SECONDS = Histogram(
    "raykube_dashboard_request_duration_seconds",
    "Ray dashboard request latency",
    ["endpoint", "code"],
)
KUBE_REQUESTS = Counter(
    "raykube_kube_requests_total", "Requests the operator sent to the API server", ["verb", "code"]
)
LEADER_ELECTION_LEADING = Gauge(
    "raykube_leader_election_leading", "1 while this process holds the leader Lease, else 0"
)
LEADER_ELECTION_ACQUIRED = Counter(
    "raykube_leader_election_acquired_total", "Times this process became the leader"
)
