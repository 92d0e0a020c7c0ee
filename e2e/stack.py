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
    repository, tag = image.ref.rsplit(":", 1)
    started = time.monotonic()
    helm(
        cluster, "install", RELEASE, str(CHART), "-n", namespace, "--create-namespace",
        "--wait", "--timeout=400s", f"--set=image.repository={repository}",
        f"--set=image.tag={tag}", "--set=image.pullPolicy=Never", "--set=logFormat=text",
    )  # fmt: skip
    return time.monotonic() - started


def uninstall_operator(cluster: LocalCluster, namespace: str = OPERATOR_NAMESPACE) -> None:
    subprocess.run(
        [str(versions.bin_dir() / "helm"), "uninstall", RELEASE, "-n", namespace, "--wait"],
        env=cluster.cp.env(),
        capture_output=True,
        timeout=120,
    )


def kill_container(cluster: LocalCluster, pod: dict[str, Any]) -> list[int]:
    """SIGKILL every process of the pod's first container, from the host: a crash,
    not a deletion (the kubelet restarts the container in the same pod).

    The processes are found in the container's cgroup under the node's own
    subtree, so nothing outside this cluster's node can be hit."""
    status = pod["status"]["containerStatuses"][0]
    container_id = status["containerID"].split("://", 1)[1]
    root = cluster.node.cgroup_root.lstrip("/")
    pids: set[int] = set()
    for base in Path("/sys/fs/cgroup").glob(f"*/{root}"):
        for procs in base.rglob(f"{container_id}/cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return sorted(pids)
