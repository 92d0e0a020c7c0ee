"""The samples the parity tier runs, and what KubeRay 1.6.2 is given of them (pure).

Every manifest of ``../shared/manifests`` holding a RayCluster or RayService,
and every one of the project's own ``samples/``. Each runs in a namespace of
its own per operator (``kr-...`` for KubeRay, ``rk-...`` for raykube), so two
samples never see each other's pods and the namespace name is the only thing
that tells the two runs apart (it is normalised away).

A sample KubeRay 1.6.2 refuses (fields of KubeRay 1.7 or raykube extensions
its schema does not know, values its controller refuses) is compared with
those fields removed, for both operators: the fields themselves are shown by
their own tests, and the removed paths are reported per sample.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e import paths

RAY_KINDS = ("RayCluster", "RayService")

#: Values that KubeRay 1.6.2's schema lets through but its controller refuses
#: (the object then never gets a child): (kind, path, value) -> why.
KUBERAY_REFUSES: dict[tuple[str, str, str], str] = {
    ("RayService", "spec.upgradeStrategy.type", "Recreate"): (
        "RayService upgradeStrategy Recreate is a raykube extension; KubeRay 1.6.2's "
        "validation refuses it and creates nothing"
    ),
}

_UNKNOWN_FIELD = re.compile(r'unknown field "([^"]+)"')
# `spec.x.y: Unsupported value: ...` / `Invalid value` from the CRD's schema.
_INVALID_FIELD = re.compile(r"\b(spec(?:\.[\w-]+|\[\d+\])+): (?:Unsupported|Invalid) value")
# `spec.x.y: Required value`: KubeRay 1.6.2 requires y where 1.7 does not (a
# gcsFaultToleranceOptions without redisAddress, backend rocksdb): x goes.
_REQUIRED_FIELD = re.compile(r"\b(spec(?:\.[\w-]+|\[\d+\])+)\.[\w-]+: Required value")


@dataclass(frozen=True)
class Sample:
    origin: str  # "shared" (../shared/manifests) or "project" (samples/)
    path: Path

    @property
    def id(self) -> str:
        return f"{self.origin}/{self.path.name}"

    def namespace(self, operator: str) -> str:
        """``kr-`` or ``rk-``, then s(hared)/p(roject), then the file's stem."""
        stem = re.sub(r"[^a-z0-9]+", "-", self.path.stem.lower()).strip("-")
        return f"{operator}-{self.origin[0]}-{stem}"[:63].rstrip("-")

    def documents(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.path.read_text()) if d]


@dataclass
class Prepared:
    """A sample as both operators are given it."""

    sample: Sample
    documents: list[dict[str, Any]]
    #: ``Kind/name: path (why)`` for each field removed because KubeRay refused it.
    removed: list[str] = field(default_factory=list)

    @property
    def ray_documents(self) -> list[dict[str, Any]]:
        return [d for d in self.documents if d.get("kind") in RAY_KINDS]

    def applied(self) -> set[tuple[str, str]]:
        """(kind, name) of what the sample itself applies: never a child."""
        return {(d["kind"], d["metadata"]["name"]) for d in self.documents}

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.documents, sort_keys=False)


def _holds_ray_objects(path: Path) -> bool:
    return any(d.get("kind") in RAY_KINDS for d in yaml.safe_load_all(path.read_text()) if d)


def discover() -> list[Sample]:
    """Every sample, shared then project, sorted by file name; never empty."""
    found = [Sample("shared", p) for p in paths.manifest_files() if _holds_ray_objects(p)]
    found += [Sample("project", p) for p in paths.sample_files() if _holds_ray_objects(p)]
    return found


def split_path(path: str) -> list[str | int]:
    """``spec.workerGroupSpecs[0].resources`` -> ["spec", "workerGroupSpecs", 0, "resources"]."""
    parts: list[str | int] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return parts


def remove_path(doc: dict[str, Any], path: str) -> bool:
    """Remove ``path`` from ``doc`` in place; False when it was not there."""
    *parents, last = split_path(path)
    node: Any = doc
    for part in parents:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del node[last]
    except (KeyError, IndexError, TypeError):
        return False
    return True


def get_path(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in split_path(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def refused_paths(message: str) -> list[str]:
    """The field paths an API server error names (unknown or invalid fields)."""
    found = (
        _UNKNOWN_FIELD.findall(message)
        + _INVALID_FIELD.findall(message)
        + _REQUIRED_FIELD.findall(message)
    )
    return list(dict.fromkeys(found))


def strip_controller_refusals(prepared: Prepared) -> None:
    """Remove the values KubeRay's controller would refuse (``KUBERAY_REFUSES``)."""
    for doc in prepared.ray_documents:
        for (kind, path, value), why in KUBERAY_REFUSES.items():
            if doc["kind"] == kind and get_path(doc, path) == value and remove_path(doc, path):
                prepared.removed.append(f"{kind}/{doc['metadata']['name']}: {path} ({why})")


def strip_refused(prepared: Prepared, message: str) -> bool:
    """Remove every field the dry-run ``message`` names from the Ray documents;
    False when nothing could be removed (the refusal is about something else)."""
    removed = False
    for path in refused_paths(message):
        for doc in prepared.ray_documents:
            if remove_path(doc, path):
                prepared.removed.append(
                    f"{doc['kind']}/{doc['metadata']['name']}: {path} (unknown to KubeRay 1.6.2)"
                )
                removed = True
    return removed


def prepare(sample: Sample) -> Prepared:
    prepared = Prepared(sample, copy.deepcopy(sample.documents()))
    strip_controller_refusals(prepared)
    return prepared


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _cluster_pods(spec: dict[str, Any]) -> int:
    if spec.get("suspend"):
        return 0
    pods = 1
    for group in spec.get("workerGroupSpecs") or []:
        if group.get("suspend"):
            continue
        low = int(group.get("minReplicas", 0))
        high = int(group.get("maxReplicas", 2**31 - 1))
        replicas = int(group.get("replicas", low))
        pods += _clamp(replicas, low, high) * int(group.get("numOfHosts", 1))
    return pods


def expected_pods(prepared: Prepared) -> int:
    """The Ray pods a KubeRay-compatible operator creates at first for this sample."""
    total = 0
    for doc in prepared.ray_documents:
        spec = doc.get("spec") or {}
        if doc["kind"] == "RayService":
            total += 0 if spec.get("suspend") else _cluster_pods(spec.get("rayClusterConfig") or {})
        else:
            total += _cluster_pods(spec)
    return total


def iter_namespaces(prepared: list[Prepared], operator: str) -> Iterator[tuple[str, Prepared]]:
    for p in prepared:
        yield p.sample.namespace(operator), p
