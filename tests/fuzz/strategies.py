"""Inputs for the fuzz tier: the real sample manifests, mutated, and hostile values."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from typing import Any

import yaml
from hypothesis import strategies as st

from e2e import paths

JSON = Any
Path = tuple[str | int, ...]

#: Values that have broken parsers before: quantities Decimal reads but
#: Kubernetes does not, magnitudes past int32/int64, and YAML's special words.
HOSTILE_TEXT = [
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "sNaN",
    "1e1000000",
    "-1e1000000",
    "1e-1000000",
    "9" * 40,
    "16Ei",
    "0.1n",
    "1e99999999999999999999",
    "\uff11",
    "1 Gi",
    "",
    " ",
    "-1",
    "500m",
    "2Gi",
    "1e3",
    "true",
    "2024-01-01",
    "&a [*a]",
    "[" * 100,
]
#: Keys the operator reads, so insertions land where they matter.
KEYS = [
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "nvidia.com/gpu",
    "google.com/tpu",
    "ports",
    "containerPort",
    "env",
    "name",
    "value",
    "command",
    "args",
    "image",
    "metadata",
    "labels",
    "annotations",
    "spec",
    "containers",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "numOfHosts",
    "rayStartParams",
    "headService",
    "serveService",
    "serveConfigV2",
    "suspend",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "gcsFaultToleranceOptions",
    "scaleStrategy",
    "workersToDelete",
    "upgradeStrategy",
    "headServiceAnnotations",
]

FOCUS = frozenset({"template", "headService", "serveService", "serveConfigV2"})

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_TEXT),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


@cache
def sample_docs() -> dict[str, tuple[JSON, ...]]:
    """Every document of the shared sample manifests, by kind."""
    found: dict[str, list[JSON]] = {}
    for file in paths.manifest_files():
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and doc.get("kind"):
                found.setdefault(str(doc["kind"]), []).append(doc)
    return {kind: tuple(docs) for kind, docs in found.items()}


def docs_of(kind: str) -> list[JSON]:
    docs = list(sample_docs().get(kind, ()))
    assert docs, f"no {kind} among the sample manifests"
    return docs


def _paths(value: JSON, at: Path = ()) -> Iterator[Path]:
    yield at
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*at, i))


def _parent(doc: JSON, path: Path) -> JSON:
    for step in path[:-1]:
        doc = doc[step]
    return doc


def _mutate(doc: JSON, path: Path, op: str, key: str, value: JSON) -> JSON:
    if not path:
        return value if op == "replace" else doc
    parent, last = _parent(doc, path), path[-1]
    target = parent[last]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "wrap":
        parent[last] = [target]
    elif op == "stringify":
        parent[last] = str(target)[:200]
    elif op == "insert" and isinstance(target, dict):
        target[key] = value
    elif op == "insert" and isinstance(target, list):
        target.append(value)
    return doc


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> JSON:
    """A sample document of ``kind`` with one to four mutations anywhere in it."""
    doc = copy.deepcopy(draw(st.sampled_from(docs_of(kind))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        everywhere = list(_paths(doc))
        # Half the mutations land in pod templates and Service overrides: open
        # objects the CRD does not type, where the models must judge alone.
        inside = [p for p in everywhere if FOCUS.intersection(str(s) for s in p)]
        focused: bool = draw(st.booleans())
        path = draw(st.sampled_from(inside if inside and focused else everywhere))
        op = draw(st.sampled_from(["replace", "replace", "delete", "wrap", "stringify", "insert"]))
        doc = _mutate(doc, path, op, draw(keys), draw(values))
    return doc


#: Quantities in Kubernetes' grammar, extremes included.
quantity_values = st.one_of(
    st.from_regex(
        r"\A[+-]?([0-9]{1,25}(\.[0-9]{0,12})?|\.[0-9]{1,12})"
        r"(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]{1,19})?\Z"
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
resource_names = st.sampled_from(
    ["cpu", "memory", "nvidia.com/gpu", "nvidia.com/mig-1g.5gb", "amd.com/gpu", "google.com/tpu"]
)
strings = st.one_of(st.text(max_size=30), st.sampled_from(HOSTILE_TEXT))
string_maps = st.dictionaries(st.text(max_size=20), strings, max_size=4)


@st.composite
def containers(draw: st.DrawFn) -> JSON:
    """A container whose read fields have the shapes Kubernetes allows, with any values."""
    container: dict[str, JSON] = {"name": draw(st.text(min_size=1, max_size=20))}
    parts = {
        "image": strings,
        "command": st.lists(strings, max_size=4),
        "args": st.lists(strings, max_size=4),
        "env": st.lists(
            st.fixed_dictionaries({"name": strings}, optional={"value": strings}), max_size=4
        ),
        "ports": st.lists(
            st.fixed_dictionaries(
                {"containerPort": st.integers(min_value=1, max_value=65535)},
                optional={"name": strings, "protocol": strings},
            ),
            max_size=4,
        ),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "limits": st.dictionaries(resource_names, quantity_values, max_size=4),
                "requests": st.dictionaries(resource_names, quantity_values, max_size=4),
            },
        ),
    }
    for key, strategy in parts.items():
        if draw(st.booleans()):
            container[key] = draw(strategy)
    return container


@st.composite
def shaped(draw: st.DrawFn, kind: str) -> JSON:
    """A sample of ``kind`` whose Ray containers are replaced by generated ones."""
    doc = copy.deepcopy(draw(st.sampled_from(docs_of(kind))))
    spec = doc["spec"]["rayClusterConfig"] if kind == "RayService" else doc["spec"]
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    for group in groups:
        template = group["template"]
        template["spec"]["containers"][0] = draw(containers())
        if draw(st.booleans()):
            template["metadata"] = {"labels": draw(string_maps), "annotations": draw(string_maps)}
    if draw(st.booleans()):
        spec["headGroupSpec"]["headService"] = {
            "metadata": {"labels": draw(string_maps), "annotations": draw(string_maps)},
            "spec": draw(st.dictionaries(st.text(max_size=10), values, max_size=3)),
        }
    return doc
