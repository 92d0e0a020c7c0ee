"""``NewClusterWithIncrementalUpgrade`` without a Gateway, on a real API server
with the operator as its own process and every RayCluster's head a real Ray
head running Serve (``rayservice_heads.HeadMapper``).

Serve's ``target_capacity`` is read back from the heads' dashboards; the
status fields, ``TrafficShifted`` events and the serve Service's Endpoints
are read from the API server. Worker pods run on kwok GPU nodes, one
``nvidia.com/gpu`` each.

Pods on kwok run no Ray, so no Ray autoscaler sizes the worker groups: the
test plays it (``Autoscaler``), from the ``target_capacity`` each real head
reports, as Ray's autoscaler does with in-service autoscaling (KubeRay leaves
the sizing to it too: its new cluster starts at ``minReplicas``): workers for
that share of the full size, rounded up, and on the way down it names its
victims in ``workersToDelete``. It releases before it adds (a fallen capacity
is scaled down, and its pods gone, before a risen one is scaled up), which is
what the GPU budget below rests on; a real autoscaler releases a node only
after its idle timeout (docs/rayservice.md says what that means).
"""

from __future__ import annotations

import itertools
import math
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from localcluster.controlplane import ControlPlane
from raykube.builders import labels
from tests.kubehelpers import OperatorProcess, apply, wait_for

from .rayservice_heads import HeadMapper, mapped_heads
from .test_rayservice_controller import (
    SERVE_TIMEOUT,
    cluster_names,
    condition,
    events,
    rayservice,
    serving,
    status,
)

pytestmark = pytest.mark.controlplane

SURGE, STEP, INTERVAL = 25, 25, 2
FULL = 4  # workers at target_capacity 100, one GPU each
GPU = "nvidia.com/gpu"


def incremental(name: str) -> dict[str, Any]:
    doc = rayservice(name, rayClusterDeletionDelaySeconds=5)
    spec = doc["spec"]
    spec["upgradeStrategy"] = {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {
            "maxSurgePercent": SURGE,
            "stepSizePercent": STEP,
            "intervalSeconds": INTERVAL,
        },
    }
    config = spec["rayClusterConfig"]
    config["enableInTreeAutoscaling"] = True
    group = config["workerGroupSpecs"][0]
    group.update(replicas=FULL, minReplicas=1, maxReplicas=FULL)
    template = group["template"]["spec"]
    template["tolerations"] = [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    resources = template["containers"][0]["resources"]
    resources["limits"][GPU] = "1"
    resources.setdefault("requests", {})[GPU] = "1"
    return doc


# --- the API server and the heads, read directly (a sample every 0.2 s) ---------------


class Api:
    """GETs on the API server with the admin's certificate (kubectl is too slow
    to sample five times a second on two cores)."""

    def __init__(self, cp: ControlPlane) -> None:
        tls = ssl.create_default_context(cafile=str(cp.pki / "ca.crt"))
        tls.load_cert_chain(str(cp.pki / "admin.crt"), str(cp.pki / "admin.key"))
        self.client = httpx.Client(base_url=cp.server, verify=tls, timeout=10)

    def get(self, path: str) -> Any:
        answer = self.client.get(path)
        answer.raise_for_status()
        return answer.json()

    def close(self) -> None:
        self.client.close()


def target_capacity(head_url: str) -> int | None:
    """Serve's target_capacity as the head's dashboard reports it (None: unset, 100;
    0 before any application was deployed there: it serves nothing)."""
    found = httpx.get(head_url + "/api/serve/applications/", timeout=5).json()
    if not found.get("applications"):
        return 0
    value = found.get("target_capacity")
    return None if value is None else round(value)


def _read_all(heads: HeadMapper) -> dict[str, int | None]:
    """Every live head's target_capacity, the heads asked at once (a dashboard
    takes up to a second to answer on this machine)."""
    live = list(heads.heads.items())

    def one(head_url: str) -> int | str | None:
        try:
            return target_capacity(head_url)
        except (httpx.HTTPError, ValueError):
            return "unknown"  # a head starting or stopping

    with ThreadPoolExecutor(max_workers=max(1, len(live))) as pool:
        values = list(pool.map(one, [h.dashboard_url for _, h in live]))
    return {c: v for (c, _), v in zip(live, values, strict=True) if not isinstance(v, str)}


def capacities(heads: HeadMapper, twice: bool = False) -> dict[str, int | None]:
    """Every live head's target_capacity; ``twice``: read again and returned only
    when both reads agree (no step of the operator between them)."""
    first = _read_all(heads)
    if not twice:
        return first
    return first if _read_all(heads) == first else {}


@dataclass
class Sample:
    at: float
    gpus: int
    #: The serve Service's ready endpoints, by cluster.
    endpoints: dict[str, int]
    #: (cluster, targetCapacity, trafficRoutedPercent, lastTrafficMigratedTime) of
    #: the active and the pending entries of the status.
    active: tuple[str, int, int, str] | None
    pending: tuple[str, int, int, str] | None


def _entry(st: dict[str, Any], key: str) -> tuple[str, int, int, str] | None:
    entry = st.get(key) or {}
    if not entry.get("rayClusterName") or "trafficRoutedPercent" not in entry:
        return None
    return (
        entry["rayClusterName"],
        entry.get("targetCapacity", -1),
        entry["trafficRoutedPercent"],
        entry.get("lastTrafficMigratedTime", ""),
    )


@dataclass
class Sampler:
    api: Api
    heads: HeadMapper
    ns: str
    name: str
    samples: list[Sample] = field(default_factory=list)
    #: Serve's target_capacity reported by each head (100 when unset), sampled
    #: apart: a dashboard answers in tenths of a second, the API server sooner.
    capacity: list[dict[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def gpus(self) -> int:
        pods = self.api.get(f"/api/v1/namespaces/{self.ns}/pods")["items"]
        return sum(
            int((c.get("resources") or {}).get("requests", {}).get(GPU, 0))
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and p["status"].get("phase") not in ("Succeeded", "Failed")
            for c in p["spec"]["containers"]
        )

    def take_capacities(self) -> None:
        found = {c: 100 if v is None else v for c, v in capacities(self.heads).items()}
        if found:
            self.capacity.append(found)

    def endpoints(self) -> dict[str, int]:
        path = f"/api/v1/namespaces/{self.ns}/endpoints/{self.name}-serve-svc"
        try:
            found = self.api.get(path)
        except httpx.HTTPStatusError:
            return {}
        counts: dict[str, int] = {}
        for subset in found.get("subsets") or []:
            for address in subset.get("addresses") or []:
                pod = (address.get("targetRef") or {}).get("name", "")
                cluster = pod[: len(self.name) + 6]  # <rayservice>-<5 chars>-...
                counts[cluster] = counts.get(cluster, 0) + 1
        return counts

    def take(self) -> Sample:
        st = self.api.get(f"/apis/ray.io/v1/namespaces/{self.ns}/rayservices/{self.name}")
        st = st.get("status") or {}
        sample = Sample(
            time.monotonic(),
            self.gpus(),
            self.endpoints(),
            _entry(st, "activeServiceStatus"),
            _entry(st, "pendingServiceStatus"),
        )
        self.samples.append(sample)
        return sample


@dataclass
class Autoscaler:
    """Ray's autoscaler for every cluster of the service, from the target_capacity
    its real head reports (see the module docstring)."""

    api: Api
    cp: ControlPlane
    heads: HeadMapper
    ns: str
    name: str
    errors: list[str] = field(default_factory=list)

    def workers(self, cluster: str) -> list[str]:
        selector = f"{labels.CLUSTER}={cluster},{labels.NODE_TYPE}=worker"
        pods = self.api.get(f"/api/v1/namespaces/{self.ns}/pods?labelSelector={selector}")
        return sorted(
            p["metadata"]["name"]
            for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")
        )

    def wanted(self) -> dict[str, int]:
        """Each cluster's workers for its Serve target_capacity (unset: the size
        the RayCluster was built with, left alone)."""
        return {
            cluster: min(max(math.ceil(FULL * value / 100), 1), FULL)
            for cluster, value in capacities(self.heads, twice=True).items()
            if value is not None
        }

    def resize(self, cluster: str, want: int) -> None:
        have = self.workers(cluster)
        victims = have[want:] if len(have) > want else []
        path = "/spec/workerGroupSpecs/0"
        ops = (
            f'[{{"op":"test","path":"{path}/groupName","value":"small-group"}},'
            f'{{"op":"replace","path":"{path}/replicas","value":{want}}},'
            f'{{"op":"add","path":"{path}/scaleStrategy","value":'
            f'{{"workersToDelete":{list(victims)!r}}}}}]'
        ).replace("'", '"')
        self.cp.kubectl(
            "patch", "raycluster", cluster, "-n", self.ns, "--type=json", "-p", ops, check=False
        )

    def released(self, cluster: str, n: int) -> None:
        def done() -> bool:
            return len(self.workers(cluster)) <= n

        wait_for(done, timeout=60, interval=0.2)

    def tick(self) -> None:
        want = self.wanted()
        downs = {c: n for c, n in want.items() if len(self.workers(c)) > n}
        ups = {c: n for c, n in want.items() if len(self.workers(c)) < n}
        for cluster, n in downs.items():
            self.resize(cluster, n)
        for cluster, n in downs.items():
            # Released before anything is added.
            self.released(cluster, n)
        for cluster, n in ups.items():
            self.resize(cluster, n)


@contextmanager
def every(seconds: float, action: Callable[[], Any], errors: list[str]) -> Iterator[None]:
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                action()
            except Exception as exc:  # kept for the test's failure message
                errors.append(repr(exc))
            stop.wait(seconds)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def set_version(cp: ControlPlane, ns: str, doc: dict[str, Any], version: str) -> None:
    doc["spec"]["rayClusterConfig"]["rayVersion"] = version
    apply(cp, ns, doc)


def moves(values: list[int]) -> list[int]:
    out: list[int] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


def shifted(cp: ControlPlane, ns: str) -> list[str]:
    return [m for _, r, m in events(cp, ns) if r == "TrafficShifted"]


def _upgrade_forward(cp: ControlPlane, ns: str, name: str, sampler: Sampler, first: str) -> str:
    pending = wait_for(
        lambda: (status(cp, ns, name).get("pendingServiceStatus") or {}).get("rayClusterName"),
        timeout=60,
    )
    wait_for(
        lambda: (
            (status(cp, ns, name).get("activeServiceStatus") or {}).get("rayClusterName") == pending
        ),
        timeout=SERVE_TIMEOUT,
        interval=1,
    )
    wait_for(lambda: serving(cp, ns, name), timeout=60)
    window = list(sampler.samples)
    capacity = list(sampler.capacity)
    # Serve's own target_capacity, as the heads report it: up on the new cluster,
    # down on the old one, in steps.
    rising = moves([c[pending] for c in capacity if pending in c])
    falling = moves([c[first] for c in capacity if first in c])
    print(f"target_capacity reported by the new head: {rising}, by the old head: {falling}")
    # (Sampled about once a second: a step may fall between two samples.)
    assert rising == sorted(rising) and rising[-1] == 100 and len(rising) >= 3, rising
    assert falling == sorted(falling, reverse=True) and falling[-1] <= 25, falling
    assert len(falling) >= 3, falling
    # The status: the pending cluster's traffic up step by step, never faster
    # than intervalSeconds (lastTrafficMigratedTime), then promoted.
    entries = [s.pending for s in window if s.pending and s.pending[0] == pending]
    traffic = moves([e[2] for e in entries])
    print(f"pendingServiceStatus.trafficRoutedPercent: {traffic}")
    assert traffic == sorted(traffic) and set(traffic) >= {25, 50, 75}, traffic
    assert all(e[2] <= e[1] for e in entries), "traffic beyond the cluster's capacity"
    _migrations_spaced([e[3] for e in entries])
    # Both clusters' pods behind the one serve Service on the way.
    both = [s.endpoints for s in window if len(s.endpoints) == 2]
    print(f"serve Service endpoints while split (samples): {both[:1]} ... {both[-1:]}")
    assert both, "the serve Service never selected pods of both clusters"
    return str(pending)


def _migrations_spaced(times: list[str]) -> None:
    stamps = sorted({t for t in times if t})
    parsed = [time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) for t in stamps]
    gaps = [b - a for a, b in itertools.pairwise(parsed)]
    assert all(gap >= INTERVAL for gap in gaps), gaps


def test_incremental_upgrade_on_real_serve_within_the_gpu_budget(
    control_plane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp, ns, name = control_plane, namespace, "rs-incremental"
    doc = incremental(name)
    api = Api(cp)
    with mapped_heads(cp, ns, name) as heads:
        apply(cp, ns, doc)
        st = wait_for(lambda: serving(cp, ns, name), timeout=SERVE_TIMEOUT, interval=2)
        first = st["activeServiceStatus"]["rayClusterName"]
        sampler = Sampler(api, heads, ns, name)
        scaler = Autoscaler(api, cp, heads, ns, name)
        wait_for(lambda: sampler.gpus() == FULL, timeout=60)
        with (
            every(0.2, sampler.take, sampler.errors),
            every(0.2, sampler.take_capacities, sampler.errors),
            every(0.5, scaler.tick, scaler.errors),
        ):
            # Forward: A -> B, promoted at the end.
            set_version(cp, ns, doc, "2.100.0")
            second = _upgrade_forward(cp, ns, name, sampler, first)
            wait_for(lambda: cluster_names(cp, ns, name) == [second], timeout=60)
            forward = len(sampler.samples)
            shifted_forward = len(shifted(cp, ns))
            assert shifted_forward >= 4 and "serve endpoint" in shifted(cp, ns)[0]
            # Reverse: B -> C, then back to B half-way: traffic comes back step
            # by step, C is deleted, nothing new is built.
            set_version(cp, ns, doc, "2.101.0")
            third = wait_for(
                lambda: (status(cp, ns, name).get("pendingServiceStatus") or {}).get(
                    "rayClusterName"
                ),
                timeout=60,
            )
            wait_for(
                lambda: ((status(cp, ns, name).get("pendingServiceStatus") or {}).get(
                    "trafficRoutedPercent"
                ) or 0) >= 50,
                timeout=SERVE_TIMEOUT,
                interval=0.5,
            )  # fmt: skip
            created = [r for _, r, _ in events(cp, ns)].count("CreatedRayCluster")
            set_version(cp, ns, doc, "2.100.0")
            wait_for(lambda: cluster_names(cp, ns, name) == [second], timeout=120)
            wait_for(
                condition(cp, ns, name, "UpgradeInProgress", ("False", "NoPendingCluster")),
                timeout=60,
            )
            st = wait_for(lambda: serving(cp, ns, name), timeout=60)
    api.close()
    assert not heads.errors and not sampler.errors and not scaler.errors, (
        heads.errors,
        sampler.errors[:3],
        scaler.errors[:3],
    )
    assert st["activeServiceStatus"]["rayClusterName"] == second
    assert [r for _, r, _ in events(cp, ns)].count("CreatedRayCluster") == created
    back = [s.pending[2] for s in sampler.samples[forward:] if s.pending and s.pending[0] == third]
    values = moves(back)
    print(f"reverted: pendingServiceStatus.trafficRoutedPercent {values}")
    peak = values.index(max(values))
    assert values[peak:] == sorted(values[peak:], reverse=True), values
    assert values[-1] <= 25 and max(values) >= 50, values
    moved_back = [m for m in shifted(cp, ns)[shifted_forward:] if "Moved traffic back" in m]
    assert moved_back, shifted(cp, ns)
    # The GPU budget, sampled throughout both upgrades.
    most = max(s.gpus for s in sampler.samples)
    budget = FULL * (100 + SURGE) / 100
    print(
        f"GPUs requested by both clusters: max {most} of budget {budget:g} "
        f"({len(sampler.samples)} samples, one cluster {FULL})"
    )
    assert most <= budget
    # The status (sampled five times a second): capacities within the surge,
    # nobody's traffic beyond its capacity.
    both = [(s.active, s.pending) for s in sampler.samples if s.active and s.pending]
    most_capacity = max(a[1] + p[1] for a, p in both)
    print(f"status targetCapacity of both clusters together: max {most_capacity}%")
    assert most_capacity <= 100 + SURGE
    assert all(e[2] <= e[1] for pair in both for e in pair), "traffic beyond capacity"
