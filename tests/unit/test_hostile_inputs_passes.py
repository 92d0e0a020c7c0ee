"""Whole reconcile passes fed hostile input: each ends with a condition saying why
(or a reading that tolerates it), never an exception out of the pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raykube.adapters.kube import RAYCLUSTERS, RAYSERVICES
from raykube.decisions.rayservice_view import snapshot
from tests.unit.harness import NS, Harness, load
from tests.unit.test_serve_config_bounds import alias_bomb, with_user_config

SAMPLE = "ray-service.sample.yaml"


def conditions(h: Harness, name: str) -> dict[str, tuple[str, str, str]]:
    status = h.rayservice(name).get("status") or {}
    return {
        c["type"]: (c["status"], c["reason"], c.get("message", ""))
        for c in status.get("conditions") or []
    }


HOSTILE = {
    "alias bomb": (alias_bomb(9), "anchors and aliases"),
    "recursive": ("&r [*r]", "anchors and aliases"),
    "mixed-type keys": (with_user_config("{1: a, b: c}"), "key 1 is not a string"),
    "date in user_config": (with_user_config("{start: 2024-01-01}"), "user_config.start"),
    "deep nesting": (with_user_config("[" * 200 + "]" * 200), "nested deeper than 64"),
    "impossible date": (with_user_config("{d: 2024-02-30}"), "not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_serve_config_is_reported_not_raised(
    harness: Harness, manifests: Path, case: str
) -> None:
    h = harness
    text, expected = HOSTILE[case]
    doc = load(manifests, SAMPLE, "RayService")
    doc["spec"]["serveConfigV2"] = text
    h.kube.put(doc)
    name = doc["metadata"]["name"]

    await h.service_pass(name)

    status, reason, message = conditions(h, name)["ServeConfigApplied"]
    assert (status, reason) == ("False", "InvalidServeConfig")
    assert expected in message
    await h.events_posted()
    assert any(e.type == "Warning" and expected in e.message for e in h.kube.events)
    # The cluster is still built: only the config is held back.
    assert len(h.kube.all(RAYCLUSTERS, NS)) == 1
    assert h.kube.stored(RAYSERVICES, NS, name) is not None


@pytest.mark.parametrize(
    "answer",
    [[], ["applications"], "RUNNING", 42, None, True],
)
def test_a_dashboard_answer_that_is_not_an_object_counts_as_no_answer(answer: Any) -> None:
    snap = snapshot(answer, proxy_healthy=True)
    assert not snap.reachable
    assert "not a JSON object" in snap.error


def test_wrong_shapes_inside_the_answer_are_skipped() -> None:
    answer = {
        "applications": {
            "good": {"status": "RUNNING", "deployments": {"d": {"status": "HEALTHY"}, "x": 3}},
            "list": ["RUNNING"],
            "odd": {"status": ["RUNNING"], "message": {"a": 1}, "deployments": ["d"]},
        }
    }
    snap = snapshot(answer, proxy_healthy=True)
    assert snap.reachable
    assert set(snap.apps) == {"good", "odd"}
    assert snap.apps["good"].status == "RUNNING" and set(snap.apps["good"].deployments) == {"d"}
    assert snap.apps["odd"].status == "" and snap.apps["odd"].deployments == {}
    assert snapshot({"applications": [1, 2]}, proxy_healthy=True).apps == {}
