"""Differences between KubeRay's children and raykube's, and the reviewed list of
the ones that are deliberate (``allowed.yaml``) (pure)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

ALLOWED_FILE = Path(__file__).with_name("allowed.yaml")


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Difference:
    sample: str
    object: str
    path: str
    kuberay: Any
    raykube: Any

    def text(self, width: int = 400) -> str:
        where = f"{self.object} {self.path}".strip()
        kuberay, raykube = short(self.kuberay, width), short(self.raykube, width)
        return f"{where}: KubeRay {kuberay} | raykube {raykube}"


def short(value: Any, width: int) -> str:
    """``value`` as compact JSON, cut to ``width`` characters."""
    text = repr(value) if value is ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def _join(path: str, key: str) -> str:
    if key.startswith("["):
        return path + key
    return f"{path}.{key}" if path else key


def diff(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, KubeRay's value, raykube's value) for each place the views differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from diff(a.get(key, ABSENT), b.get(key, ABSENT), _join(path, key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a != b:
        if all(isinstance(x, dict | list) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                yield from diff(x, y, f"{path}[{i}]")
        else:
            yield path, a, b
    elif a != b:
        yield path, a, b


def differences(sample: str, kuberay: dict[str, Any], raykube: dict[str, Any]) -> list[Difference]:
    """Every difference between two runs' views (object key -> view)."""
    found = []
    for key in sorted(set(kuberay) | set(raykube)):
        a, b = kuberay.get(key, ABSENT), raykube.get(key, ABSENT)
        if a is ABSENT or b is ABSENT:
            found.append(Difference(sample, key, "", _presence(a), _presence(b)))
            continue
        found += [Difference(sample, key, p, x, y) for p, x, y in diff(a, b)]
    return found


def _presence(value: Any) -> Any:
    return ABSENT if value is ABSENT else "(created)"


@dataclass(frozen=True)
class Allowance:
    """One reviewed, deliberate difference: globs over sample, object and path,
    optionally the exact values on either side, and why."""

    object: str
    path: str
    reason: str
    sample: str = "*"
    kuberay: Any = ABSENT
    raykube: Any = ABSENT

    def matches(self, d: Difference) -> bool:
        return (
            fnmatchcase(d.sample, self.sample)
            and fnmatchcase(d.object, self.object)
            and fnmatchcase(d.path, self.path)
            and _value_matches(self.kuberay, d.kuberay)
            and _value_matches(self.raykube, d.raykube)
        )


def _value_matches(expected: Any, got: Any) -> bool:
    if expected is ABSENT:
        return True
    if expected == "(absent)":
        return got is ABSENT
    return bool(expected == got)


class AllowedFileError(ValueError):
    """``allowed.yaml`` is malformed: the message says which entry and why."""


def load_allowed(path: Path = ALLOWED_FILE) -> list[Allowance]:
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("allowed") or []
    out = []
    for i, entry in enumerate(entries):
        unknown = set(entry) - {"object", "path", "reason", "sample", "kuberay", "raykube"}
        if unknown or not str(entry.get("reason") or "").strip() or "object" not in entry:
            raise AllowedFileError(
                f"{path.name} entry {i}: needs object and a reason "
                f"(unknown keys: {sorted(unknown)})"
            )
        out.append(
            Allowance(
                object=entry["object"],
                path=entry.get("path", "*"),
                reason=" ".join(str(entry["reason"]).split()),
                sample=entry.get("sample", "*"),
                kuberay=entry.get("kuberay", ABSENT),
                raykube=entry.get("raykube", ABSENT),
            )
        )
    return out


def allowance_for(d: Difference, allowed: list[Allowance]) -> Allowance | None:
    return next((a for a in allowed if a.matches(d)), None)


def object_verdicts(
    kuberay: dict[str, Any],
    raykube: dict[str, Any],
    diffs: list[Difference],
    allowed: list[Allowance],
) -> dict[str, str]:
    """object key -> ``identical``, ``allowed-different`` or ``different``."""
    verdicts = dict.fromkeys(set(kuberay) | set(raykube), "identical")
    for d in diffs:
        if allowance_for(d, allowed) is None:
            verdicts[d.object] = "different"
        elif verdicts[d.object] == "identical":
            verdicts[d.object] = "allowed-different"
    return verdicts
