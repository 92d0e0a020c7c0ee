"""Parts shared by RayCluster and RayService: metadata, conditions, name rules."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import Field

from raykube.models.base import Int64, KubeModel, Time

# DNS-1035 label: what a Service name must be. Both kinds name Services after
# themselves, so their own names must fit the same rule.
DNS1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ObjectMeta(KubeModel):
    """The standard Kubernetes object metadata, as the operator reads it.

    Only the fields the operator uses are typed; everything else (managed
    fields, ...) is kept as extra keys.
    """

    name: str = Field("", description="Name of the object, unique in its namespace.")
    generate_name: str | None = Field(None, description="Prefix for a server-generated name.")
    namespace: str | None = Field(None, description="Namespace of the object.")
    uid: str | None = Field(None, description="Server-assigned unique identifier.")
    resource_version: str | None = Field(
        None, description="Opaque version, for optimistic concurrency."
    )
    generation: int | None = Field(None, description="Increments on every spec change.")
    creation_timestamp: Time | None = Field(None, description="When the object was created.")
    deletion_timestamp: Time | None = Field(
        None, description="Set when deletion was requested and finalizers are pending."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Object labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Object annotations.")
    owner_references: list[dict[str, Any]] = Field(
        default_factory=list, description="Objects this one belongs to."
    )
    finalizers: list[str] = Field(default_factory=list, description="Pending finalizers.")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """One observation about the object, in the shape of metav1.Condition.

    ``lastTransitionTime`` changes only when ``status`` changes.
    """

    type: str = Field(
        description="Kind of condition, in CamelCase (for example Ready).",
        min_length=1,
        max_length=316,
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="Machine-readable CamelCase reason for the last transition.",
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field("", description="Human-readable details.", max_length=32768)
    observed_generation: Int64 | None = Field(
        None, description="The object's metadata.generation this condition was computed from."
    )
    last_transition_time: Time = Field(description="When status last changed.")


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of the given type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def name_rules(kind: str, max_length: int, why: str) -> list[dict[str, str]]:
    """CEL rules, for the root of a CRD schema, that bound ``metadata.name``.

    CEL at the root may read ``metadata.name``; a rule is used instead of a
    plain ``maxLength`` so the message can say why the limit exists.
    """
    return [
        {
            "rule": f"self.metadata.name.size() <= {max_length}",
            "message": (
                f"metadata.name: a {kind} name must be at most {max_length} characters, "
                f"because {why}"
            ),
            "fieldPath": ".metadata.name",
            "reason": "FieldValueInvalid",
        },
        {
            "rule": f"self.metadata.name.matches('{DNS1035_LABEL}')",
            "message": (
                f"metadata.name: a {kind} name must be a DNS-1035 label: lowercase letters, "
                "digits and '-', starting with a letter and ending with a letter or digit"
            ),
            "fieldPath": ".metadata.name",
            "reason": "FieldValueInvalid",
        },
    ]
