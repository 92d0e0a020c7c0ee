"""Fixtures of the control-plane tier: the operator as a real process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localcluster.controlplane import ControlPlane
from tests.kubehelpers import OperatorProcess


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane) -> Iterator[OperatorProcess]:
    """One operator for the session; tests that restart it leave it running."""
    # The RayService tests map each RayCluster to a real Ray head they start on
    # loopback, through the head-address annotations this flag honours.
    op = OperatorProcess(control_plane, control_plane.state / "logs", "--dashboard-url-annotations")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(f"operator log: {op.log}")
