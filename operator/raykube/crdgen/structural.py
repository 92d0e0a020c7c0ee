"""Rewrite pydantic's JSON Schema into a Kubernetes structural schema.

Kubernetes accepts only a subset of OpenAPI v3 for CRDs: every node states its
type, there are no references, and ``anyOf``/``allOf``/``oneOf`` may only
repeat constraints, never introduce types. Pydantic produces ``$ref``s,
``anyOf [X, null]`` for optional fields, ``const`` for one-value literals,
``additionalProperties`` flags and titles. This module inlines and removes
those, keeps descriptions and the ``x-kubernetes-*`` extensions, and turns the
models' explicit ``SCHEMA_DEFAULT`` markers into ``default``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from raykube.models.base import SCHEMA_DEFAULT

Schema = dict[str, Any]

# Keys pydantic writes that a CRD must not carry (or that mean nothing there).
# Pydantic's ``default`` is dropped on purpose: see SCHEMA_DEFAULT.
_DROPPED = frozenset({"title", "default", "$defs", "examples", "discriminator"})
# Lists of CEL rules from a $ref's target and from the referring field add up.
_CONCATENATED = frozenset({"x-kubernetes-validations", "required"})


class NotStructural(ValueError):
    """The models describe something a structural schema cannot express."""


# Keys first in this order, the rest alphabetically: the generated YAML reads
# "type, description, constraints, children" at every level.
_KEY_ORDER = (
    "type",
    "format",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "additionalProperties",
    "items",
)


def to_structural(schema: Schema) -> Schema:
    """The structural equivalent of a pydantic ``model_json_schema()``."""
    return _convert(schema, schema.get("$defs", {}), ())


def _ordered(node: Schema) -> Schema:
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _convert(node: Schema, defs: Schema, seen: tuple[str, ...]) -> Schema:
    node, seen = _flatten(node, defs, seen)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == SCHEMA_DEFAULT:
            out["default"] = value
        elif key == "properties":
            out[key] = {name: _convert(sub, defs, seen) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, seen)
        elif key == "additionalProperties":
            # True/False only say whether pydantic keeps extra keys; a CRD
            # prunes unknown fields anyway and forbids the flag next to
            # ``properties``. A schema value describes a map's values.
            if isinstance(value, dict):
                out[key] = _convert(value, defs, seen)
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    return _ordered(out)


def _flatten(node: Schema, defs: Schema, seen: tuple[str, ...]) -> tuple[Schema, tuple[str, ...]]:
    """Inline ``$ref``/``allOf`` and drop the null branch of ``anyOf``."""
    while True:
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            if name in seen:
                raise NotStructural(f"recursive model {name} cannot be inlined")
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node, seen = _merge(defs[name], siblings), (*seen, name)
        elif "allOf" in node:
            parts = node["allOf"]
            if len(parts) != 1:
                raise NotStructural(f"allOf with {len(parts)} parts: {parts}")
            node = _merge(parts[0], {k: v for k, v in node.items() if k != "allOf"})
        elif "anyOf" in node:
            node = _merge(
                _one_branch(node["anyOf"]), {k: v for k, v in node.items() if k != "anyOf"}
            )
        elif "oneOf" in node:
            raise NotStructural(f"oneOf cannot be structural: {node['oneOf']}")
        else:
            return node, seen


def _one_branch(branches: list[Schema]) -> Schema:
    # Optional fields are "X or null". The API server drops nulls written to
    # fields that are not nullable, which is what an unset optional means.
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) != 1:
        raise NotStructural(f"anyOf with several non-null branches: {kept}")
    return kept[0]


def _merge(base: Schema, override: Schema) -> Schema:
    merged = dict(base)
    for key, value in override.items():
        if key in _CONCATENATED and key in merged:
            merged[key] = [*merged[key], *[v for v in value if v not in merged[key]]]
        else:
            merged[key] = value
    return merged


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path, parents first."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


_FORBIDDEN = ("$ref", "$defs", "anyOf", "allOf", "oneOf", "const", "title")


def problems(schema: Schema) -> list[str]:
    """Why ``schema`` is not structural; empty when it is."""
    found: list[str] = []
    for path, node in walk(schema):
        where = path or "<root>"
        found += [f"{where}: has {key}" for key in _FORBIDDEN if key in node]
        has_type = "type" in node or node.get("x-kubernetes-int-or-string") is True
        if not has_type:
            found.append(f"{where}: no type")
        if "additionalProperties" in node and (
            not isinstance(node["additionalProperties"], dict) or "properties" in node
        ):
            found.append(f"{where}: additionalProperties must be a schema without properties")
        if node.get("x-kubernetes-int-or-string") and "type" in node:
            found.append(f"{where}: int-or-string with a type")
    return found
