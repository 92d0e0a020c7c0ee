"""The end-to-end stack: local cluster with a real node, images, operator by Helm.

Shared by ``python -m e2e.demo`` and the e2e test tier, so both run exactly
what a user runs: the Dockerfile's two targets built with buildah and imported
into the node, and ``helm install`` of ``charts/raykube``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import images, node, versions
from localcluster.node import LocalCluster
from localcluster.progress import Progress

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "raykube"
DOCKERFILE = REPO / "Dockerfile"
OPERATOR_NAMESPACE = "raykube-system"
RELEASE = "raykube"
#: A bare tag: images.build appends the input hash, so a changed build is a
#: new reference and the node never keeps serving a stale image by that name.
RUNTIME_TAG = "ray-runtime"
OPERATOR_TAG = "raykube-operator"


@dataclass(frozen=True)
class Images:
    operator: images.Image
    runtime: images.Image


def build_images(progress: Progress | None = None) -> Images:
    """Both targets of the Dockerfile (cached by input hash)."""
    runtime = images.build(
        DOCKERFILE, tag=RUNTIME_TAG, target="ray-runtime", context=REPO, progress=progress
    )
    operator = images.build(
        DOCKERFILE, tag=OPERATOR_TAG, target="operator", context=REPO, progress=progress
    )
    return Images(operator=operator, runtime=runtime)


def cluster_up(state: Path | None, quiet: bool = False) -> LocalCluster:
    """Control plane, kwok nodes (tainted) and the real node; CRDs installed."""
    return node.cluster_up(state, crds=REPO / "crds", quiet=quiet)


def load_images(cluster: LocalCluster, built: Images) -> None:
    for image in (built.runtime, built.operator):
        cluster.load_image(image)


def helm(cluster: LocalCluster, *args: str, timeout: float = 420) -> str:
    proc = subprocess.run(
        [str(versions.bin_dir() / "helm"), *args],
        capture_output=True,
        text=True,
        env=cluster.cp.env(),
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def install_operator(
    cluster: LocalCluster, image: images.Image, namespace: str = OPERATOR_NAMESPACE
) -> float:
    """``helm install --wait`` of the chart with the local image; seconds taken."""
    return _release(cluster, ["install", "--create-namespace"], CHART, image, namespace)


def upgrade_operator(
    cluster: LocalCluster, chart: Path, image: images.Image, namespace: str = OPERATOR_NAMESPACE
) -> float:
    """``helm upgrade --wait`` to ``chart`` and ``image``, with the values that
    ``install_operator`` sets (none kept from before); seconds taken."""
    return _release(cluster, ["upgrade", "--reset-values"], chart, image, namespace)


def _release(
    cluster: LocalCluster, verb: list[str], chart: Path, image: images.Image, namespace: str
) -> float:
    repository, tag = image.ref.rsplit(":", 1)
    started = time.monotonic()
    helm(
        cluster, verb[0], RELEASE, str(chart), "-n", namespace, *verb[1:],
        "--wait", "--timeout=400s", f"--set=image.repository={repository}",
        f"--set=image.tag={tag}", "--set=image.pullPolicy=Never", "--set=logFormat=text",
    )  # fmt: skip
    return time.monotonic() - started


def container_pids(cluster: LocalCluster, pod: dict[str, Any]) -> set[int]:
    """Processes of the pod's first container, found in its cgroup under the
    node's own subtree (so nothing outside this cluster's node is ever hit)."""
    status = pod["status"]["containerStatuses"][0]
    container_id = status["containerID"].split("://", 1)[1]
    root = cluster.node.cgroup_root.lstrip("/")
    pids: set[int] = set()
    for base in Path("/sys/fs/cgroup").glob(f"*/{root}"):
        for procs in base.rglob(f"{container_id}/cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def kill_container(
    cluster: LocalCluster, pod: dict[str, Any], command_contains: str = ""
) -> list[int]:
    """SIGKILL the processes of the pod's first container (only those whose
    command line contains ``command_contains``, when given), from the host: a
    crash, not a deletion; the kubelet restarts the container in the same pod."""
    pids = sorted(pid for pid in container_pids(cluster, pod) if command_contains in _cmdline(pid))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def service_programmed(cluster: LocalCluster, cluster_ip: str, port: int) -> bool:
    """Whether kube-proxy has written the node's DNAT rule for ``cluster_ip:port``.

    Send nothing to a new Service before this: a SYN that reaches the node
    before the rule is forwarded un-translated to the Service range's dead end,
    and its conntrack entry (no NAT, kept 120 s while unanswered) then captures
    any later connection that happens to reuse the same client port, which
    fails after ~3 s with "No route to host" (seen as one failure in several
    thousand requests, up to two minutes after a Service was created)."""
    proc = _in_node(cluster, "iptables-save", "-t", "nat")
    wanted = f"-d {cluster_ip}/32 -p tcp"
    return any(
        wanted in line and f"--dport {port} -j KUBE-SVC-" in line
        for line in proc.stdout.splitlines()
    )


def routes(cluster: LocalCluster, url: str) -> Callable[[], bool]:
    """``service_programmed`` for a ``http://<ClusterIP>:<port>`` URL."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    return lambda: service_programmed(cluster, host, int(port))


def _in_node(
    cluster: LocalCluster, *argv: str, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the node's network namespace (its iptables, its conntrack)."""
    return subprocess.run(
        ["nsenter", f"--net={cluster.node.net.path}", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=check,
    )


@contextlib.contextmanager
def dropped(cluster: LocalCluster, *match: str) -> Iterator[None]:
    """Packets that match ``match`` (iptables arguments) dropped on the node
    while inside: first in its FORWARD chain, which pod-to-pod traffic on the
    bridge passes as well as traffic from the host to pods."""
    rule = ["FORWARD", *match, "-j", "DROP"]
    _in_node(cluster, "iptables", "-w", "-I", *rule, check=True)
    try:
        yield
    finally:
        _in_node(cluster, "iptables", "-w", "-D", *rule, check=True)
