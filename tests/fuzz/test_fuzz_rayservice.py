"""RayServices: serveConfigV2 text, mutated manifests, the clusters built from
them and the decision of a pass over fuzzed dashboard answers."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from raykube.builders import labels
from raykube.builders.rayservice import build_cluster, build_head_service, build_serve_service
from raykube.decisions import rayservice_health as health
from raykube.decisions.rayservice import decide
from raykube.decisions.rayservice_cadence import next_look
from raykube.decisions.rayservice_config import ServeGoal, parse_serve_config
from raykube.decisions.rayservice_upgrade import cluster_config_hash
from raykube.decisions.rayservice_view import cluster_view, snapshot
from raykube.models import parse_raycluster, parse_rayservice
from raykube.models.rayservice import RayService
from tests.fuzz.budget import bounded
from tests.fuzz.strategies import HOSTILE_TEXT, JSON, docs_of, mutated, shaped, values
from tests.unit.rayservice_helpers import at, observe, service

#: YAML constructs that have blocked or crashed parsers: anchors and aliases,
#: tags for non-JSON types, special floats, dates, complex keys, deep nesting.
YAML_TOKENS = [
    "&a ",
    "*a",
    "&a [*a, *a]",
    "!!set {a, b}",
    "!!binary aGk=",
    "!!omap [a: 1]",
    "!!python/name:os.system",
    "!!str",
    "!!float",
    ".nan",
    ".inf",
    "-.Inf",
    "2024-01-01",
    "2024-02-30",
    "2001-12-14t21:59:43.10-05:00",
    "? [a, b]\n: c",
    "{1: a, b: c}",
    "on: yes",
    "null: ~",
    "0x1F",
    "0o17",
    "190:20:30",
    "1_000",
    "9" * 50,
    "[" * 80,
    "{" * 80,
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "\t",
    "'",
    '"',
    "|\n",
    ">-\n",
    "- ",
    ": ",
    "#",
]


def serve_texts() -> list[str]:
    texts = [
        d["spec"]["serveConfigV2"]
        for d in docs_of("RayService")
        if isinstance(d.get("spec", {}).get("serveConfigV2"), str)
    ]
    assert texts, "no serveConfigV2 among the sample manifests"
    return texts


@st.composite
def spliced(draw: st.DrawFn) -> str:
    """A sample serveConfigV2 with hostile tokens spliced in at random places."""
    text = draw(st.sampled_from(serve_texts()))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        token = draw(st.one_of(st.sampled_from(YAML_TOKENS), st.text(max_size=10)))
        text = text[:at] + token + text[at:]
    return text


@st.composite
def restructured(draw: st.DrawFn) -> str:
    """A sample serveConfigV2, parsed, with a value somewhere replaced, written back."""
    config = yaml.safe_load(draw(st.sampled_from(serve_texts())))
    node: Any = config
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        step = draw(st.sampled_from(keys))
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            node[step] = draw(values)
            break
        node = node[step]
    return yaml.safe_dump(config, allow_unicode=True)


serve_configs = st.one_of(
    spliced(), restructured(), st.text(max_size=300), st.sampled_from(HOSTILE_TEXT)
)


def checked_goal(text: str) -> ServeGoal:
    goal = bounded("parse_serve_config", lambda: parse_serve_config(text))
    assert goal.valid == (not goal.error)
    if goal.valid and goal.hash:
        assert "applications" in goal.config
    return goal


@given(text=serve_configs)
def test_serve_config_text_is_judged_never_raised(text: str) -> None:
    checked_goal(text)


def parsed(doc: JSON) -> RayService | None:
    try:
        return bounded("parse_rayservice", lambda: parse_rayservice(doc))
    except ValidationError:
        return None


def build_and_decide(rs: RayService, answer: JSON, replacements: str) -> None:
    goal_hash = cluster_config_hash(rs.spec.ray_cluster_config)
    built = build_cluster(rs, "rs-abcde", goal_hash)
    # What the operator builds from an accepted RayService, its own models accept.
    parse_raycluster({**built, "metadata": {**built["metadata"], "uid": "u"}})
    created = copy.deepcopy(built)
    created["metadata"]["uid"] = "uid-rs-abcde"
    view = cluster_view(created)
    build_head_service(rs, view.name, view.head_ports, "fuzz")
    build_serve_service(rs, view.name, view.head_ports, "fuzz")
    serve = {view.name: snapshot(answer, proxy_healthy=True)}
    obs = observe(rs, [view], serve=serve)
    decide(obs)
    decide(
        observe(rs, [view], serve=serve, replacements=health.Replacements.from_json(replacements))
    )


@given(doc=mutated("RayService"))
def test_the_models_accept_or_refuse_a_rayservice_with_a_validation_error(doc: JSON) -> None:
    parsed(doc)


@given(doc=st.one_of(mutated("RayService"), shaped("RayService")), answer=values, notes=st.text())
def test_whatever_the_models_accept_builds_and_decides(doc: JSON, answer: JSON, notes: str) -> None:
    rs = parsed(doc)
    if rs is not None:
        bounded("build+decide(RayService)", lambda: build_and_decide(rs, answer, notes))


@given(answer=values)
def test_any_dashboard_answer_reads_as_a_snapshot(answer: JSON) -> None:
    snap = bounded("snapshot", lambda: snapshot(answer, proxy_healthy=False))
    assert snap.reachable == isinstance(answer, dict)


#: The annotations the operator keeps on a RayService's clusters: tenants can edit them.
NOTES = [
    labels.CLUSTER_CONFIG_HASH,
    labels.APPLIED_SCALING,
    labels.SERVE_CONFIG_HASH,
    labels.SERVE_CONFIG_SUBMITTED_AT,
    labels.SERVE_CONFIG_HEALTHY_HASH,
    labels.SERVE_HEALTH,
    labels.DELETE_AFTER,
]
TIMES = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-01-01T12:00:00Z", "2026-13-45"]
note_texts = st.one_of(
    st.sampled_from(TIMES),
    st.builds(
        lambda key, when: f'{{"{key}": "{when}"}}',
        st.sampled_from(["unreachableSince", "failingSince", "runningSince"]),
        st.sampled_from(TIMES),
    ),
    # Deeper JSON than this makes HealthRecord.from_json (rayservice_view.py) raise
    # RecursionError: reported, outside this change.
    st.text(max_size=200),
    values.map(str),
)


@given(
    notes=st.dictionaries(st.sampled_from(NOTES), note_texts, max_size=len(NOTES)),
    answer=values,
    minutes=st.integers(min_value=0, max_value=60 * 24 * 3),
)
def test_hand_edited_cluster_annotations_are_read_and_decided(
    notes: dict[str, str], answer: JSON, minutes: int
) -> None:
    rs = service(deploymentUnhealthySecondThreshold=30, serviceUnhealthySecondThreshold=60)
    body = {
        "metadata": {
            "name": "rs-a",
            "uid": "uid-rs-a",
            "creationTimestamp": "2026-01-01T12:00:00Z",
            "annotations": notes,
        },
        "spec": {"workerGroupSpecs": [{"groupName": "small", "replicas": 1}]},
    }

    def read_and_decide() -> None:
        view = cluster_view(body)
        serve = {view.name: snapshot(answer, proxy_healthy=True)}
        obs = observe(rs, [view], serve=serve, now=at(60 * minutes), traffic=view.name)
        next_look(obs, decide(obs), {}, steady=minutes)

    bounded("cluster_view+decide", read_and_decide)
