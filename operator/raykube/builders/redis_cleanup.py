"""The Job that deletes a fault-tolerant RayCluster's keys from Redis (pure).

With GCS fault tolerance the head keeps the cluster's metadata in Redis under
the cluster's storage namespace; nothing in Ray removes it when the cluster
goes. When such a RayCluster is deleted (it carries a finalizer until then),
the operator runs this Job once its pods are gone: the head's own pod, so the
Job has the head's image, Redis address, credentials (env, Secrets) and
scheduling, reduced to the Ray container running one call of Ray's
``cleanup_redis_storage``. Names, labels, limits and deadline are KubeRay's.
"""

from __future__ import annotations

from typing import Any

from raykube.builders import labels, owners
from raykube.builders.pods import BuildContext, build_head_pod
from raykube.models.raycluster import RayCluster

#: The Job gives up after this long (KubeRay's): Redis that cannot be reached
#: in five minutes is left to the user (the finalizer is removed anyway).
ACTIVE_DEADLINE_SECONDS = 300
#: The cleanup needs one CPU share and little memory, never the head's GPUs.
RESOURCES = {
    "limits": {"cpu": "200m", "memory": "256Mi"},
    "requests": {"cpu": "200m", "memory": "256Mi"},
}
#: Ray's Redis client retries the connection for a minute (120 times 500 ms).
CONNECT_ENV = {
    "RAY_redis_db_connect_retries": "120",
    "RAY_redis_db_connect_wait_milliseconds": "500",
}
GUIDE = "https://docs.ray.io/en/master/cluster/kubernetes/user-guides/kuberay-gcs-ft.html"

#: Run by the Ray image's python. The first address of RAY_REDIS_ADDRESS
#: (``host:port``, ``redis://`` or ``rediss://`` with optional credentials);
#: REDIS_USERNAME and REDIS_PASSWORD, when the head has them, win over the URL's.
#: Exits 1 when Ray reports that the keys were not deleted.
_PYTHON = """
import os, sys
from urllib.parse import urlsplit
from ray._private.gcs_utils import cleanup_redis_storage
first = os.environ.get('RAY_REDIS_ADDRESS', '').split(',')[0].strip()
url = urlsplit(first if '://' in first else 'redis://' + first)
ok = cleanup_redis_storage(
    host=url.hostname or '',
    port=url.port or 6379,
    username=os.environ.get('REDIS_USERNAME', url.username or ''),
    password=os.environ.get('REDIS_PASSWORD', url.password or ''),
    use_ssl=url.scheme == 'rediss',
    storage_namespace=os.environ['RAY_external_storage_namespace'],
)
print('deleted the keys of storage namespace', os.environ['RAY_external_storage_namespace'])
sys.exit(0 if ok else 1)
"""
SCRIPT = (
    f'echo "If this Job fails, delete the storage namespace from Redis by hand ({GUIDE})"'
    f' && python -c "{_PYTHON.strip()}"'
)


def build_redis_cleanup_job(cluster: RayCluster, ctx: BuildContext) -> dict[str, Any]:
    """The ``<cluster>-redis-cleanup`` Job, controlled by the RayCluster."""
    pod = build_head_pod(cluster, ctx, suffix="redis-cleanup")
    meta, spec = pod["metadata"], pod["spec"]
    meta["labels"][labels.NODE_TYPE] = labels.REDIS_CLEANUP_NODE
    ray = spec["containers"][0]
    spec["containers"] = [ray]  # no autoscaler sidecar
    ray["command"], ray["args"] = ["/bin/bash", "-c", "--"], [SCRIPT]
    # No raylet or GCS runs here for a probe to ask.
    ray.pop("livenessProbe", None)
    ray.pop("readinessProbe", None)
    present = {e.get("name") for e in ray["env"]}
    ray["env"] += [{"name": k, "value": v} for k, v in CONNECT_ENV.items() if k not in present]
    ray["resources"] = RESOURCES
    spec["restartPolicy"] = "Never"  # a Job's pods may not restart Always
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": labels.redis_cleanup_job_name(cluster.metadata.name),
            "namespace": cluster.metadata.namespace,
            "labels": dict(meta["labels"]),
            "annotations": dict(meta["annotations"]),
            "ownerReferences": [owners.of_raycluster(cluster)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
                "spec": spec,
            },
        },
    }
