"""Backend rocksdb against a real Ray: the head env the operator builds makes the
GCS keep its state in a directory, and a new head given the same directory
(what a recreated head pod with the same PVC is) finds that state again."""

from __future__ import annotations

from pathlib import Path

from ray._raylet import GcsClient  # type: ignore[attr-defined]  # compiled, no stub

from raykube.builders import gcs_storage
from raykube.models.clusterspec import GCS_STORAGE_MOUNT, GCS_STORAGE_PATH_ENV
from raykube.models.raycluster import parse_raycluster
from tests.rayheads import start_head

NAMESPACE = b"raykube-test"


def _head_env(store: Path) -> dict[str, str]:
    """The env the builder gives a rocksdb head, its mount path moved to ``store``
    (the PVC's place on this machine)."""
    cluster = parse_raycluster(
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": "rc", "namespace": "ns", "uid": "u"},
            "spec": {
                "gcsFaultToleranceOptions": {"backend": "rocksdb"},
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "h", "image": "ray"}]}},
                },
            },
        }
    )
    env = {name: entry["value"] for name, entry in gcs_storage.head_env(cluster).items()}
    assert env[GCS_STORAGE_PATH_ENV] == GCS_STORAGE_MOUNT
    env[GCS_STORAGE_PATH_ENV] = str(store)
    return env


def _client(gcs_port: int) -> GcsClient:
    return GcsClient(address=f"127.0.0.1:{gcs_port}")


def test_a_new_head_on_the_same_store_recovers_the_gcs_state(tmp_path: Path) -> None:
    store = tmp_path / "gcs"
    env = _head_env(store)
    first = start_head(num_cpus=1, env=env)
    try:
        gcs = _client(first.ports.gcs)
        assert gcs.internal_kv_put(b"model", b"v7", True, NAMESPACE) == 1
        session = gcs.internal_kv_get(b"session_name", b"session")
    finally:
        first.stop()
    # Ray's marker beside the RocksDB files: read before the new GCS is up.
    assert (store / "session_name").read_bytes() == session
    assert {p.name for p in store.iterdir()} - {"session_name"}  # the store itself

    second = start_head(num_cpus=1, env=env)
    try:
        gcs = _client(second.ports.gcs)
        assert gcs.internal_kv_get(b"model", NAMESPACE) == b"v7"
        assert gcs.internal_kv_get(b"session_name", b"session") == session
    finally:
        second.stop()
