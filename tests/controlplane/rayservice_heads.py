"""Real Ray heads behind the RayClusters of a RayService, for the control-plane tier.

Pods on kwok nodes run nothing, so a ``HeadMapper`` plays the part of the
clusters' head pods: for every RayCluster the operator builds for a
RayService, it starts a real ``ray start --head`` on loopback and writes the
head's addresses into the cluster's ``raykube.ray.io/dashboard-url`` and
``serve-url`` annotations (honoured because the test operator runs with
``--dashboard-url-annotations``). When the RayCluster goes away, so does its
head (stopped by PID).

Serve is started on each head before the operator sees it, on the head's own
loopback port (several heads share this machine); the operator's configs carry
no ``http_options``, and Ray keeps a running proxy's address.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import httpx

from localcluster import processes
from localcluster.controlplane import ControlPlane
from raykube.builders import labels
from raykube_serve.localhead import LocalRayHead
from tests.kubehelpers import get_json
from tests.rayheads import start_head


def start_serve(head: LocalRayHead) -> None:
    """Serve with no applications, its proxy on the head's own loopback port."""
    config = {
        "applications": [],
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": head.ports.serve_http},
    }
    url = head.dashboard_url + "/api/serve/applications/"
    processes.wait_until(
        f"Serve to start on {head.dashboard_url}",
        lambda: httpx.put(url, json=config, timeout=60).status_code == 200,
        timeout=120,
        interval=1,
        retry_on=(httpx.HTTPError,),
    )


class HeadMapper:
    """Starts a Ray head for each RayCluster of one RayService, in a thread."""

    def __init__(self, cp: ControlPlane, namespace: str, service: str) -> None:
        self.cp = cp
        self.namespace = namespace
        self.service = service
        self.heads: dict[str, LocalRayHead] = {}
        #: While set, new clusters are left without a head (an upgrade that cannot
        #: become ready).
        self.paused = threading.Event()
        self.errors: list[str] = []
        #: Clusters whose head was stopped on purpose: never given a new one.
        self.retired: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"heads-{service}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _clusters(self) -> set[str]:
        selector = f"{labels.ORIGINATED_FROM_CR}={self.service}"
        items = get_json(self.cp, "rayclusters", "-n", self.namespace, "-l", selector)["items"]
        return {c["metadata"]["name"] for c in items if not c["metadata"].get("deletionTimestamp")}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                live = self._clusters()
                for name in sorted(live - self.heads.keys() - self.retired):
                    if not self.paused.is_set() and not self._stop.is_set():
                        self._attach(name)
                for name in sorted(self.heads.keys() - live):
                    self.detach(name)
            except Exception as exc:  # kept for the test's failure message
                self.errors.append(repr(exc))
            self._stop.wait(1)

    def _attach(self, name: str) -> None:
        head = start_head(num_cpus=2)
        with self._lock:
            self.heads[name] = head
        start_serve(head)
        self.cp.kubectl(
            "annotate", "raycluster", name, "-n", self.namespace, "--overwrite",
            f"{labels.DASHBOARD_URL}={head.dashboard_url}",
            f"{labels.SERVE_URL}={head.serve_url}",
        )  # fmt: skip

    def detach(self, name: str, retire: bool = False) -> None:
        """Stop the head of ``name``; ``retire``: as when its pod dies for good."""
        with self._lock:
            head = self.heads.pop(name, None)
            if retire:
                self.retired.add(name)
        if head is not None:
            head.stop()

    def head(self, name: str) -> LocalRayHead:
        with self._lock:
            return self.heads[name]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=300)
        for name in list(self.heads):
            with suppress(Exception):
                self.detach(name)


@contextmanager
def mapped_heads(cp: ControlPlane, namespace: str, service: str) -> Iterator[HeadMapper]:
    mapper = HeadMapper(cp, namespace, service)
    mapper.start()
    try:
        yield mapper
    finally:
        mapper.stop()
