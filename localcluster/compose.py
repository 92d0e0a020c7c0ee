"""The whole local cluster: a control plane with kwok nodes and, optionally, a real node.

Each module below does one part and imports nothing above it (the layers
are checked by import-linter, see pyproject.toml); the order in which the
parts start and stop is decided here.
"""

from __future__ import annotations

from pathlib import Path

from localcluster import controlplane, kwok, node
from localcluster.controlplane import ControlPlane


def up(
    state: Path, *, crds: Path | None, nodes: kwok.NodePlan, real_node: bool = False
) -> ControlPlane:
    """A fresh control plane in ``state``; with ``real_node``, a real node beside it."""
    if real_node:
        return node.cluster_up(state, crds=crds, nodes=nodes).cp
    # A node left attached to this state would outlive the control plane it needs.
    node.node_down(state)
    return controlplane.up(state, crds=crds, nodes=nodes)


def down(state: Path) -> list[str]:
    """Stop everything ``up`` started: the node first (it talks to the apiserver)."""
    return node.node_down(state) + controlplane.down(state)
