"""Pod templates: full Kubernetes PodTemplateSpecs, kept as plain dicts.

The CRD stores a template as an open object, so any field of any Kubernetes
release survives unpruned and each CRD stays small (KubeRay inlines the whole
PodSpec schema and its CRDs outgrow client-side ``kubectl apply``). Only what
the Ray operator itself depends on is checked at admission: a ``spec`` with at
least one named container, the first being the Ray container. The rest is
validated by the API server when the operator dry-runs the pods it would
create.

Templates are shared with the parsed object: treat them as read-only and
deep-copy before building a pod from one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import WithJsonSchema, field_validator

from raykube.models import shapes
from raykube.models.base import KubeModel

_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

POD_TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "A Kubernetes PodTemplateSpec (metadata and spec), stored as written. The first "
        "container is the Ray container."
    ),
    "required": ["spec"],
    "properties": {
        "metadata": {
            **_PRESERVE,
            "description": "Labels and annotations for the pods; the operator adds its own.",
        },
        "spec": {
            **_PRESERVE,
            "description": "A Kubernetes PodSpec; checked in full when the pods are created.",
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "minItems": 1,
                    "description": "The pod's containers; the first one runs Ray.",
                    "items": {
                        **_PRESERVE,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "description": "Container name."}
                        },
                    },
                }
            },
        },
    },
}

PodTemplate = Annotated[dict[str, Any], WithJsonSchema(POD_TEMPLATE_SCHEMA)]


@dataclass(frozen=True)
class ContainerResources:
    """A container's resource limits and requests, quantities as strings."""

    limits: dict[str, str]
    requests: dict[str, str]

    def limit_or_request(self, name: str) -> str | None:
        """The limit for ``name``, else its request (how Ray sizes a node)."""
        return self.limits.get(name, self.requests.get(name))


def _as_quantities(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): str(v) for k, v in raw.items()}


class TemplatedGroup(KubeModel):
    """A group of Ray pods described by one pod template."""

    template: PodTemplate

    @field_validator("template")
    @classmethod
    def _template_shape(cls, template: dict[str, Any]) -> dict[str, Any]:
        shapes.refuse(shapes.pod_template_problem(template))
        return template

    def pod_spec(self) -> dict[str, Any]:
        """The template's PodSpec (read-only view)."""
        spec = self.template.get("spec")
        return spec if isinstance(spec, dict) else {}

    def ray_container(self) -> dict[str, Any]:
        """``containers[0]``, the container that runs ``ray start``."""
        containers = self.pod_spec().get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("pod template has no containers")
        first = containers[0]
        if not isinstance(first, dict):
            raise ValueError("pod template's first container is not an object")
        return first

    def ray_container_resources(self) -> ContainerResources:
        """Limits and requests of the Ray container (empty when unset)."""
        resources = self.ray_container().get("resources")
        if not isinstance(resources, dict):
            return ContainerResources(limits={}, requests={})
        return ContainerResources(
            limits=_as_quantities(resources.get("limits")),
            requests=_as_quantities(resources.get("requests")),
        )
