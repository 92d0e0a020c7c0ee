"""Fixtures of the parity tier: KubeRay's operator built, a control plane of
the tier's own (KubeRay's CRDs replace raykube's during the run, which the
session's shared control plane must never see), and one run of both
operators over every sample, shared by all the tier's tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import build, controlplane, processes, versions
from tests.parity import run
from tests.parity.compare import load_allowed
from tests.parity.report import Outcome, outcomes
from tests.parity.samples import discover


def _reap_stale(root: Path) -> None:
    """Stop parity control planes left by earlier runs whose pytest is gone."""
    for state in root.glob("parity-*") if root.is_dir() else []:
        owner = state.name.removeprefix("parity-")
        if owner.isdigit() and not processes.alive(int(owner)):
            controlplane.down(state)
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def parity() -> Iterator[tuple[run.ParityRun, dict[str, Outcome]]]:
    try:
        build.build_kuberay()
    except (Exception, SystemExit) as exc:
        pytest.fail(
            f"KubeRay's operator {versions.KUBERAY} could not be built: {exc}", pytrace=False
        )
    root = versions.cache_root() / "clusters"
    _reap_stale(root)
    state = root / f"parity-{os.getpid()}"
    try:
        cp = controlplane.up(state, quiet=True)
    except Exception as exc:
        pytest.fail(f"control plane could not start: {exc}", pytrace=False)
    try:
        result = run.run(cp, run.prepare_all(discover()), state / "logs")
        yield result, {o.sample: o for o in outcomes(result, load_allowed())}
    finally:
        controlplane.down(state)
        shutil.rmtree(state, ignore_errors=True)
