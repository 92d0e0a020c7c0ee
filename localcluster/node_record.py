"""A real node's record on disk: ``<cluster state>/node/node.json`` and where its files are.

Kept apart from ``localcluster.node`` (which starts and stops nodes) so that
modules below it, such as ``localcluster.images``, can find a running node
without importing the code that runs one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localcluster import processes, versions
from localcluster.netns import NodeNet
from localcluster.node_config import NodePaths

NODE_DIR = "node"


@dataclass
class Node:
    """One running node; saved as ``<cluster state>/node/node.json``."""

    state: Path
    slot: int
    service_cidr: str
    name: str
    apiserver_port: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def net(self) -> NodeNet:
        return NodeNet(self.slot, self.service_cidr)

    @property
    def paths(self) -> NodePaths:
        return NodePaths(self.state, containerd_root(self.slot))

    @property
    def cgroup_root(self) -> str:
        return f"/raykube-node-{self.slot}"

    def save(self) -> None:
        data = asdict(self)
        data["state"] = str(self.state)
        (self.state / "node.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, state: Path) -> Node:
        data = json.loads((state / "node.json").read_text())
        data["state"] = Path(data["state"])
        return cls(**data)


def containerd_root(slot: int) -> Path:
    """Kept across runs, per slot: imported images survive (warm start)."""
    return versions.cache_root() / "containerd" / f"slot-{slot}"


def node_state(cluster_state: Path) -> Path:
    return cluster_state / NODE_DIR


def running_containerd_socket(cluster_state: Path) -> Path | None:
    """The containerd socket of the node of ``cluster_state``, if that node runs."""
    state = node_state(cluster_state)
    if not (state / "node.json").exists():
        return None
    node = Node.load(state)
    sock = node.paths.containerd_socket
    return sock if sock.exists() and processes.alive(node.pids.get("containerd", 0)) else None
