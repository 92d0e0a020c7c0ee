"""``helm upgrade`` of the operator itself while a RayService serves.

The release is first moved to the chart and image of the commit before
(``e2e.previous``: its own Dockerfile and chart, built the same way), the
walkthrough RayService is created and served by that operator, and then,
under continuous load, ``helm upgrade`` brings this tree's chart and image.
The new operator must take the service over as it is: no request fails, no
RayCluster is created, the head pod is the same, and the serve config is not
submitted again; an edit is acknowledged (``status.observedGeneration``), so
the new operator is seen acting. Then a blue-green upgrade runs with the new
operator, under the same load, also without a failed request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e import previous, stack
from e2e.kube import Kubectl, eventually, live, pod_ready
from e2e.load import LoadReport

from .conftest import Stack
from .rayservice import (
    NAME,
    Timeline,
    acknowledged,
    assert_no_failures,
    assert_same_cluster,
    created_clusters,
    finish,
    pods,
    serving_walkthrough,
    submissions,
    watch_until,
    with_env,
)
from .test_crash_points import assert_converged
from .test_failures import DELETION_DELAY

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def earlier(e2e_stack: Stack) -> previous.Previous:
    try:
        built = previous.build()
    except Exception as exc:
        pytest.fail(f"the previous operator could not be built: {exc}", pytrace=False)
    e2e_stack.cluster.load_image(built.image)
    return built


def running(ops: Kubectl, image: str) -> dict[str, Any] | None:
    """The operator's one pod, once it runs ``image`` and is Ready."""
    found = live(ops.items("pods", f"app.kubernetes.io/name={stack.RELEASE}"))
    if len(found) != 1 or not pod_ready(found[0]):
        return None
    pod = found[0]
    return pod if pod["spec"]["containers"][0]["image"].endswith(image) else None


@pytest.fixture
def released_at_the_end(e2e_stack: Stack) -> Iterator[None]:
    """Whatever happens, the release is this tree's again for the next tests."""
    yield
    stack.upgrade_operator(e2e_stack.cluster, stack.CHART, e2e_stack.images.operator)


@pytest.mark.timeout(2400)
def test_helm_upgrade_from_the_previous_operator_under_load(
    earlier: previous.Previous,
    released_at_the_end: None,
    e2e_stack: Stack,
    e2e_namespace: str,
    load_reports: list[LoadReport],
    figures: dict[str, str],
) -> None:
    cluster, current = e2e_stack.cluster, e2e_stack.images.operator
    ops = e2e_stack.kubectl(stack.OPERATOR_NAMESPACE)
    stack.upgrade_operator(cluster, earlier.chart, earlier.image)
    eventually(lambda: running(ops, earlier.image.ref), 300, "the previous operator")
    k, image = e2e_stack.kubectl(e2e_namespace), e2e_stack.images.runtime.ref
    svc = serving_walkthrough(k, image, cluster, DELETION_DELAY)
    served = svc.cluster["name"]
    (head,) = pods(k, served, "head")
    sent, built = submissions(k, served), created_clusters(k)
    load = svc.load("helm upgrade of the operator, then blue-green", accept=(6,))
    timeline = Timeline(old=served)
    try:
        eventually(lambda: load.sent >= 50, 60, "load to start")
        helm_s = stack.upgrade_operator(cluster, stack.CHART, current)
        eventually(lambda: running(ops, current.ref), 300, "the new operator")
        acked = acknowledged(svc, DELETION_DELAY + 1)
        assert_same_cluster(svc)
        assert pods(k, served, "head")[0]["metadata"]["uid"] == head["metadata"]["uid"]
        assert submissions(k, served) == sent, "the new operator submitted the config again"
        assert created_clusters(k) == built
        svc.apply(with_env(svc.doc, "E2E_AFTER_OPERATOR_UPGRADE", "1"))
        timeline.started = time.monotonic()
        watch_until(svc, timeline, lambda t: t.done)
    finally:
        report = finish(load, load_reports)
    line = (
        f"from {earlier.commit[:12]}: helm upgrade --wait {helm_s:.1f} s, the new operator "
        f"acknowledged an edit {acked:.1f} s after; then blue-green: {timeline.text()}"
    )
    print(line)
    figures["operator upgrade under load"] = line
    assert_no_failures(report)
    assert_converged(svc, timeline)
    assert svc.get()["metadata"]["name"] == NAME
