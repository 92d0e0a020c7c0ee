"""Pydantic plumbing shared by every ``ray.io`` model.

One base class fixes how Python names map to the CR's camelCase JSON, and a
few annotated types describe the Kubernetes wire formats that pydantic does not
know (int-or-string quantities, RFC 3339 times, open objects). Each type also
carries its JSON Schema, so the CRD generator never needs to special-case a
field by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from raykube.timefmt import format_time

GROUP = "ray.io"
MAX_INT32 = 2**31 - 1

# The generator turns this key into the CRD's ``default``. Pydantic's own
# ``default`` keys are dropped, so only what a model marks here is defaulted
# by the API server: Python-side convenience defaults never leak into stored
# objects.
SCHEMA_DEFAULT = "x-raykube-default"


class KubeModel(BaseModel):
    """Base for every part of a ray.io object.

    Python names are snake_case and JSON names camelCase; both are accepted
    when validating (``validate_by_name`` + ``validate_by_alias`` is pydantic
    2.11's spelling of ``populate_by_name=True``). Unknown keys are kept
    (``extra="allow"``) so an object written against a newer CRD survives a
    parse/dump round trip through an older operator.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
    )


def dump(model: BaseModel) -> dict[str, Any]:
    """The model as camelCase JSON, holding exactly the fields that were set.

    Fields left at their Python default are omitted: for a parsed object the
    result equals the input, and for a built object (a status, a patch) it
    holds only what the caller assigned, so the API server's schema defaults
    stay the single source of defaults. Assign fields rather than mutating a
    default container in place, or the change is not seen as "set".
    """
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)


def schema_default(value: Any) -> dict[str, Any]:
    """``json_schema_extra`` that makes the API server default a field."""
    return {SCHEMA_DEFAULT: value}


def cel(rules: Iterable[Mapping[str, str]]) -> dict[str, JsonValue]:
    """``json_schema_extra`` carrying CEL ``x-kubernetes-validations`` rules.

    Each rule has ``rule`` and ``message`` and, where useful, ``fieldPath``
    and ``reason``: the API server checks them at admission, no webhook.
    """
    entries: list[JsonValue] = [{key: value for key, value in rule.items()} for rule in rules]
    return {"x-kubernetes-validations": entries}


def _quantity_to_str(value: object) -> object:
    # YAML turns `cpu: 2` into an int; Kubernetes quantities are strings on
    # the way out, so normalise early and keep one Python type.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _time_to_str(value: datetime) -> str:
    # metav1.Time is second precision, always UTC with a "Z" suffix.
    return format_time(value)


Int32 = Annotated[int, Field(ge=-(2**31), le=MAX_INT32, json_schema_extra={"format": "int32"})]
"""A Kubernetes int32."""

Count = Annotated[int, Field(ge=0, le=MAX_INT32, json_schema_extra={"format": "int32"})]
"""A non-negative int32 (replicas, seconds)."""

Int64 = Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})]
"""A non-negative int64 (generations)."""

Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
"""A Kubernetes resource quantity ("500m", "2Gi", 1), kept as a string."""

Time = Annotated[
    datetime,
    PlainSerializer(_time_to_str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A metav1.Time: an aware datetime in Python, RFC 3339 UTC in JSON."""

OpenObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A Kubernetes object kept verbatim (an EnvVar, an Ingress, ...).

The API server stores it without pruning; its own validation happens when
the operator creates the real object from it.
"""

#: The Service types the operator creates. ExternalName is refused: a head
#: Service of that type would be a DNS alias of any host, and the operator
#: sends its dashboard calls (and a RayService's token) to the head Service.
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")

ServiceObject = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "metadata": {
                    "type": "object",
                    "description": "Name, labels and annotations merged into the generated ones.",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {
                        "name": {"type": "string", "description": "The Service's name."}
                    },
                },
                "spec": {
                    "type": "object",
                    "description": "The Service's spec, merged into the generated one.",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {
                        "type": {
                            "type": "string",
                            "description": "ClusterIP, NodePort or LoadBalancer.",
                            "enum": list(SERVICE_TYPES),
                        }
                    },
                },
            },
        }
    ),
]
"""A Service merged into one the operator builds; kept verbatim but for its
``spec.type``, which the API server checks against ``SERVICE_TYPES``."""

StringMap = dict[str, str]


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry of a CRD."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class KindInfo:
    """How a kind is named and shown; the generator builds the CRD from it."""

    kind: str
    plural: str
    singular: str
    max_name_length: int
    printer_columns: tuple[PrinterColumn, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("all",)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


#: Problems listed from one validation error: the rest are summarised.
MAX_LISTED_ERRORS = 5


def _field_path(loc: tuple[int | str, ...]) -> str:
    # A whole object's errors start at spec (or metadata); a spec's own, inside it.
    path = ".".join(str(p) for p in loc)
    return path if loc and loc[0] in ("spec", "metadata", "status") else f"spec.{path}"


def validation_message(err: ValidationError) -> str:
    """The first problems of a spec the models refuse, each named by its field path."""
    errors = err.errors()
    parts = [f"{_field_path(e['loc'])}: {e['msg']}" for e in errors[:MAX_LISTED_ERRORS]]
    if len(errors) > MAX_LISTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_LISTED_ERRORS} more")
    return "; ".join(parts)
