"""The end-to-end tier: one local cluster and one operator install for all of it.

``e2e_stack`` (session): both images built from the Dockerfile with buildah,
a local cluster of its own (control plane, tainted kwok nodes, a real node)
under ``clusters/e2e-pytest-<pid>``, the images imported into the node and the
operator installed with ``helm install`` as a user does. Anything that cannot
start fails the tier with its reason; nothing skips. At the end the cluster is
taken down and must leave nothing behind.

Load reports of the zero-downtime scenarios are printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import stack
from e2e.kube import Kubectl
from e2e.load import LoadReport
from localcluster import gateway, node, processes, versions
from localcluster.node import LocalCluster

STATE_PREFIX = "e2e-pytest-"
#: Filled by the scenarios, printed by ``pytest_terminal_summary``.
REPORTS: list[LoadReport] = []
FIGURES: dict[str, str] = {}


@dataclass(frozen=True)
class Stack:
    cluster: LocalCluster
    images: stack.Images

    def kubectl(self, namespace: str) -> Kubectl:
        return Kubectl(self.cluster.cp, namespace)


def _reap_stale(root: Path) -> None:
    """Take down e2e clusters of earlier runs whose pytest process is gone."""
    for state in root.glob(f"{STATE_PREFIX}*") if root.is_dir() else []:
        owner = state.name.removeprefix(STATE_PREFIX)
        if owner.isdigit() and processes.alive(int(owner)):
            continue
        node.cluster_down(state)
        shutil.rmtree(state, ignore_errors=True)


def _start(state: Path) -> LocalCluster:
    """One retry: a start-up race in one component should not cost the tier."""
    errors: list[str] = []
    for _ in range(2):
        try:
            return stack.cluster_up(state, quiet=True)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            print(f"local cluster start failed: {errors[-1]}", file=sys.stderr)
            node.cluster_down(state)
            shutil.rmtree(state, ignore_errors=True)
    pytest.fail("local cluster with a real node could not start:\n" + "\n".join(errors))


@pytest.fixture(scope="session")
def e2e_stack() -> Iterator[Stack]:
    try:
        built = stack.build_images()
    except Exception as exc:
        pytest.fail(f"image build failed: {exc}", pytrace=False)
    root = versions.cache_root() / "clusters"
    _reap_stale(root)
    state = root / f"{STATE_PREFIX}{os.getpid()}"
    cluster = _start(state)
    try:
        stack.load_images(cluster, built)
        seconds = stack.install_operator(cluster, built.operator)
        FIGURES["helm install --wait of the operator"] = f"{seconds:.1f} s"
        yield Stack(cluster, built)
    finally:
        slot = cluster.node.slot
        node.cluster_down(state)
        shutil.rmtree(state, ignore_errors=True)
        left = node.leftovers(slot)
        assert not left, f"the real node left things behind: {left}"


@pytest.fixture(scope="session")
def traefik(e2e_stack: Stack) -> Iterator[gateway.Traefik]:
    """Traefik (built by ``localcluster build --gateway``) serving the Gateway API
    for the e2e cluster, on a loopback address of the node's slot, port 80."""
    cp = e2e_stack.cluster.cp
    host = f"127.0.80.{e2e_stack.cluster.node.slot % 250 + 1}"
    try:
        running = gateway.start(cp, host=host)
    except processes.ComponentFailed as exc:
        pytest.fail(f"Traefik (Gateway API) could not start: {exc}", pytrace=False)
    try:
        yield running
    finally:
        gateway.stop(cp)


@pytest.fixture(scope="module")
def e2e_namespace(e2e_stack: Stack) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    cp = e2e_stack.cluster.cp
    cp.kubectl("create", "namespace", name)
    cp.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
    yield name
    cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def load_reports() -> list[LoadReport]:
    """Scenarios append their load reports here; printed at the end of the run."""
    return REPORTS


@pytest.fixture(scope="session")
def figures() -> dict[str, str]:
    """Other measured figures (name -> value), printed at the end of the run."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (REPORTS or FIGURES):
        return
    terminalreporter.section("end to end: live traffic through the serve Service")
    for report in REPORTS:
        terminalreporter.write_line(report.line())
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")


# --- what a failed scenario leaves behind ---------------------------------------------

#: Commands whose output goes with a failed scenario's report: what the operator
#: logged and what it wrote, read before the namespace is torn down.
DIAGNOSTICS = [
    ["logs", f"deploy/{stack.RELEASE}", "-n", stack.OPERATOR_NAMESPACE, "--tail=250"],
    ["get", "rayservices,rayclusters,pods,services", "-A", "-o", "wide"],
    ["get", "rayservices", "-A", "-o", "yaml"],
    ["get", "events", "-A", "--sort-by=.lastTimestamp"],
]


def diagnostics(cluster: LocalCluster) -> str:
    parts = []
    for args in DIAGNOSTICS:
        try:
            proc = cluster.cp.kubectl(*args, check=False, timeout=30)
            text = proc.stdout + proc.stderr
        except Exception as exc:  # a report must not hide the failure it reports
            text = f"{type(exc).__name__}: {exc}"
        lines = text.splitlines()[-250:]
        parts.append(f"$ kubectl {' '.join(args)}\n" + "\n".join(lines))
    return "\n\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    running = getattr(item, "funcargs", {}).get("e2e_stack")
    if report.when == "call" and report.failed and isinstance(running, Stack):
        report.sections.append(
            ("operator and cluster at the failure", diagnostics(running.cluster))
        )
    return report
